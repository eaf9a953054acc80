// Package blob owns the gateway's content-addressed blob store. Update
// images and release files are kept as files named by their SHA-256. The
// package also owns the fills that write them while any number of readers
// follow, the badger index of stored blobs, re-verification after an
// unclean shutdown, the scrub that re-verifies committed blobs in the
// background, pins, and least-recently-used eviction under a size bound.
//
// Committed blobs are hashed again in two cases. After an unclean
// shutdown, each one is re-verified before it is served. While Run runs,
// the scrub re-hashes every blob once per Options.ScrubInterval, or more
// slowly when Options.ScrubRate does not allow that. Both remove a blob
// whose file no longer has its length and hashes, so that the next
// request fetches it again from upstream.
//
// A blob becomes visible (Has, Open) only after its length and every
// expected hash match and the file is fsynced, renamed into place and its
// folder fsynced. Readers that follow a running fill receive bytes as soon
// as they are written, but never a clean end of file for bytes that failed
// their hash: they get an error instead.
//
// Layout of the store's folder (Open's dir):
//
//	sha256/ab/abcdef…   committed blobs, fanned out by the first two hex digits
//	tmp/                temp files of running fills, removed at Open
//	clean-shutdown      marker written by Close, removed by Open
//	LOCK                held with flock while the store is open
package blob

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by the store. They are wrapped with context; test with
// errors.Is.
var (
	// ErrNotFound: no committed blob has that SHA-256.
	ErrNotFound = errors.New("blob not found")
	// ErrNotReady: the blob is stored but has not been re-verified since an
	// unclean shutdown. Ask the client to retry later; Run verifies it soon.
	ErrNotReady = errors.New("blob not verified yet")
	// ErrExists: Begin was asked for a blob that is already committed.
	ErrExists = errors.New("blob already stored")
	// ErrDigestConflict: Begin was given a length or SHA-512 that differs
	// from the running fill or the stored blob with the same SHA-256.
	ErrDigestConflict = errors.New("digest conflicts with the stored or running blob")
	// ErrInvalid: an argument is malformed (the message names it).
	ErrInvalid = errors.New("invalid argument")
	// ErrNoSpace: the blob cannot fit under the size bound or on the
	// filesystem even after evicting every evictable blob.
	ErrNoSpace = errors.New("not enough space for blob")
	// ErrHashMismatch: the bytes written do not have the expected hash.
	ErrHashMismatch = errors.New("blob hash mismatch")
	// ErrLength: more or fewer bytes were written than the expected length.
	ErrLength = errors.New("blob length mismatch")
	// ErrAborted: the fill was aborted; the cause is wrapped alongside.
	ErrAborted = errors.New("fill aborted")
	// ErrRestarted: a fill restarted from zero, its new bytes differ from
	// bytes this reader had already returned, so the reader cannot go on.
	ErrRestarted = errors.New("fill restarted with different bytes")
	// ErrClosed: the store or the reader is closed.
	ErrClosed = errors.New("blob store closed")
)

// Options configures a Store. The zero value is usable: no size bound
// other than the filesystem, logs and metrics discarded.
type Options struct {
	// MaxBytes bounds the sum of committed blobs and running fills. Zero
	// means no bound other than the filesystem's free space.
	MaxBytes int64
	// MinFree is the filesystem space, in bytes, that fills leave free.
	MinFree int64
	// Logger receives warnings about removed leftovers and failed
	// verifications. Nil discards.
	Logger *slog.Logger
	// Registerer receives the store's metrics. Nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock used for access times. Nil means time.Now.
	Now func() time.Time
	// AccessFlushInterval is how often Run writes changed access times to
	// the index. Zero means one minute. Access times are also written by
	// Close; after a crash the LRU order of at most one interval is lost.
	AccessFlushInterval time.Duration
	// OnEvent, when set, is called for each Event, without store locks
	// held, so that the gateway can audit removals. It must not block long.
	OnEvent func(Event)
	// ScrubRate is the maximum rate, in bytes per second, at which Run
	// reads committed blobs to re-hash them, so that files damaged on disk
	// after their commit are found. Zero means 32 MiB/s. A negative value
	// turns the scrub off.
	ScrubRate int64
	// ScrubInterval is the time from the start of one scrub pass over all
	// committed blobs to the start of the next. Zero means 24 hours, and
	// other values must be at least one second. A pass spreads its reads
	// over the interval: it reads at its bytes divided by the interval,
	// but at least 1 MiB/s and at most ScrubRate. When a pass needs longer
	// than the interval, the next one starts as soon as it ends. Progress
	// is kept in the index, so a restart resumes the pass instead of
	// starting it over. Passes are timed by the system clock, not Now.
	ScrubInterval time.Duration
}

// EventKind names what happened to a blob.
type EventKind string

// Event kinds passed to Options.OnEvent.
const (
	EventCommitted    EventKind = "committed"     // a fill became visible
	EventEvicted      EventKind = "evicted"       // removed to make room
	EventVerifyFailed EventKind = "verify-failed" // failed re-verification or the scrub; removed
	EventAdopted      EventKind = "adopted"       // file without index record re-hashed and indexed
	EventRemoved      EventKind = "removed"       // index and file disagreed; both removed
)

// Event describes one change to the set of stored blobs.
type Event struct {
	Kind   EventKind
	SHA256 string
	Length int64
	// Reason is the cause of a removal, in words fit for an audit record.
	Reason string
}

// entry is the in-memory state of one committed blob.
type entry struct {
	length     int64
	sha512     []byte
	created    time.Time
	lastAccess time.Time
	verified   bool // hashed in this process, or the last shutdown was clean
	indexed    bool // has a record in badger
}

// Store is a content-addressed blob store. All methods are safe for
// concurrent use.
type Store struct {
	dir, blobDir, tmpDir string
	db                   *badger.DB
	opts                 Options
	log                  *slog.Logger
	now                  func() time.Time
	m                    *metrics
	lock                 *os.File

	mu         sync.Mutex
	blobs      map[string]*entry
	fills      map[string]*Fill
	opens      map[string]int
	pins       map[string]map[string]struct{}
	dirty      map[string]struct{}
	removing   map[string]chan struct{} // closed when the removal is done
	queue      []string                 // blobs to re-verify
	stored     int64                    // bytes of committed blobs
	reserved   int64                    // expected bytes of running fills
	unverified int
	ready      chan struct{} // closed when unverified reaches zero
	prio       chan string   // blobs a reader waits for, verified first
	wake       chan struct{} // signals Run that there is work
	running    bool
	closed     bool
	stop       chan struct{}
	wg         sync.WaitGroup // Run
	commits    sync.WaitGroup // commits past their hash check
	closeOnce  sync.Once
	closeErr   error

	// hook, when set by tests, is called at named points of a fill.
	hook func(point string)
	// scrubHook, when set by tests, is called at named points of the
	// scrub, and scrubTicks replaces the ticker that paces its reads.
	scrubHook  func(point string)
	scrubTicks <-chan time.Time
}

// Open opens or creates the blob store in dir (a folder of the gateway's
// data directory, such as DATA/blobs) with its index in db under the key
// prefix "blob/". The caller owns db and closes it after Close.
//
// Open removes temp files left by interrupted fills and reconciles the
// index with the files. If the previous process did not Close the store,
// every blob is marked unverified: Open of such a blob returns ErrNotReady
// until Run has re-hashed it, and a blob that fails is removed and logged.
// Blobs already verified are served while Run works. Run also scrubs
// committed blobs in the background (see Options.ScrubInterval).
func Open(dir string, db *badger.DB, opts Options) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("opening blob store: %w: empty dir; pass a folder of the data directory", ErrInvalid)
	}
	if db == nil {
		return nil, fmt.Errorf("opening blob store: %w: nil badger DB", ErrInvalid)
	}
	if opts.MaxBytes < 0 || opts.MinFree < 0 {
		return nil, fmt.Errorf("opening blob store: %w: MaxBytes %d and MinFree %d must not be negative", ErrInvalid, opts.MaxBytes, opts.MinFree)
	}
	if opts.ScrubInterval != 0 && opts.ScrubInterval < time.Second {
		return nil, fmt.Errorf("opening blob store: %w: ScrubInterval %v must be at least 1s, or 0 for the default of %v", ErrInvalid, opts.ScrubInterval, defaultScrubInterval)
	}
	if opts.AccessFlushInterval <= 0 {
		opts.AccessFlushInterval = time.Minute
	}
	if opts.ScrubRate == 0 {
		opts.ScrubRate = defaultScrubRate
	}
	if opts.ScrubInterval == 0 {
		opts.ScrubInterval = defaultScrubInterval
	}
	s := &Store{
		dir:      dir,
		blobDir:  filepath.Join(dir, "sha256"),
		tmpDir:   filepath.Join(dir, "tmp"),
		db:       db,
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		blobs:    map[string]*entry{},
		fills:    map[string]*Fill{},
		opens:    map[string]int{},
		pins:     map[string]map[string]struct{}{},
		dirty:    map[string]struct{}{},
		removing: map[string]chan struct{}{},
		ready:    make(chan struct{}),
		prio:     make(chan string, 64),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("opening blob store: registering metrics: %w", err)
	}
	s.m = m
	for _, d := range []string{dir, s.blobDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("opening blob store: creating %s: %w", d, err)
		}
	}
	if s.lock, err = lockDir(dir); err != nil {
		return nil, fmt.Errorf("opening blob store: %w", err)
	}
	if err := s.recover(); err != nil {
		s.lock.Close()
		s.m.unregister()
		return nil, fmt.Errorf("opening blob store %s: %w", dir, err)
	}
	return s, nil
}

// Close aborts running fills, waits for commits already past their hash
// check and for Run to return, and writes changed access times. When every
// blob has been verified, it also writes the clean-shutdown marker. Files and readers already handed out stay usable. Close does not
// close the badger DB. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		fills := make([]*Fill, 0, len(s.fills))
		for _, f := range s.fills {
			fills = append(fills, f)
		}
		s.mu.Unlock()
		close(s.stop)
		for _, f := range fills {
			f.Abort(ErrClosed)
		}
		s.commits.Wait()
		s.wg.Wait()
		var errs []error
		if err := s.flushAccess(); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		allVerified := s.unverified == 0
		s.mu.Unlock()
		if allVerified && len(errs) == 0 {
			if err := writeMarker(s.dir); err != nil {
				errs = append(errs, err)
			}
		}
		s.m.unregister()
		if err := s.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("releasing lock: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("closing blob store %s: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// Has reports whether a committed blob with this SHA-256 (lowercase hex)
// is stored, including one still waiting for re-verification (for which
// Open returns ErrNotReady). It is false for running fills and malformed
// input.
func (s *Store) Has(sha256hex string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[sha256hex]
	return ok
}

// Info describes a committed blob.
type Info struct {
	Digest     Digest    // length, SHA-256 and, when it was given, SHA-512
	Created    time.Time // when it was committed or adopted
	LastAccess time.Time // last Open or fill reader, for LRU eviction
	Verified   bool      // false while it awaits re-verification
	Pins       []string  // reasons it is pinned, sorted
	Open       int       // readers holding it open
}

// Stat describes the committed blob with this SHA-256 (lowercase hex).
// Errors: ErrInvalid, ErrNotFound.
func (s *Store) Stat(sha256hex string) (Info, error) {
	if err := checkHex(sha256hex); err != nil {
		return Info{}, fmt.Errorf("describing blob: %w", err)
	}
	raw, _ := hex.DecodeString(sha256hex)
	pins := s.Pins(sha256hex)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.blobs[sha256hex]
	if !ok {
		return Info{}, fmt.Errorf("describing blob %s: %w", sha256hex, ErrNotFound)
	}
	return Info{
		Digest:     Digest{Length: e.length, SHA256: raw, SHA512: bytes.Clone(e.sha512)},
		Created:    e.created,
		LastAccess: e.lastAccess,
		Verified:   e.verified,
		Pins:       pins,
		Open:       s.opens[sha256hex],
	}, nil
}

// File is a committed blob opened for reading. It embeds the *os.File, so
// http.ServeContent and io.Copy can use sendfile; Close releases the
// store's hold that keeps the blob from eviction.
type File struct {
	*os.File
	once    sync.Once
	release func()
}

// Close closes the file and lets the store evict the blob again. It is
// safe to call more than once.
func (f *File) Close() error {
	err := os.ErrClosed
	f.once.Do(func() {
		err = f.File.Close()
		f.release()
	})
	return err
}

// Open opens the committed blob with this SHA-256 (lowercase hex) for
// reading and returns it with its length. The blob is not evicted until
// the File is closed. Errors: ErrInvalid for malformed input, ErrNotFound,
// ErrNotReady while it awaits re-verification (Run verifies it next),
// ErrClosed.
func (s *Store) Open(sha256hex string) (*File, int64, error) {
	if err := checkHex(sha256hex); err != nil {
		return nil, 0, fmt.Errorf("opening blob: %w", err)
	}
	s.mu.Lock()
	e, ok := s.blobs[sha256hex]
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("opening blob %s: %w", sha256hex, ErrClosed)
	case !ok:
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("opening blob %s: %w", sha256hex, ErrNotFound)
	case !e.verified:
		s.mu.Unlock()
		select {
		case s.prio <- sha256hex:
		default:
		}
		return nil, 0, fmt.Errorf("opening blob %s: %w", sha256hex, ErrNotReady)
	}
	s.opens[sha256hex]++
	s.touchLocked(sha256hex, e)
	length := e.length
	s.mu.Unlock()
	release := func() { s.release(sha256hex) }
	f, err := os.Open(s.blobPath(sha256hex))
	if err != nil {
		release()
		return nil, 0, fmt.Errorf("opening blob %s: %w", sha256hex, err)
	}
	return &File{File: f, release: release}, length, nil
}

// release drops one hold taken by Open or a fill reader.
func (s *Store) release(sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opens[sha]--; s.opens[sha] <= 0 {
		delete(s.opens, sha)
	}
}

// touchLocked records an access for LRU ordering. s.mu must be held.
func (s *Store) touchLocked(sha string, e *entry) {
	e.lastAccess = s.now()
	if e.indexed {
		s.dirty[sha] = struct{}{}
	}
}

func (s *Store) blobPath(sha string) string {
	return filepath.Join(s.blobDir, sha[:2], sha)
}

func (s *Store) emit(ev Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

func (s *Store) at(point string) {
	if s.hook != nil {
		s.hook(point)
	}
}
