package blob

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sync"
)

// Digest is the expected length and hashes of a blob, normally taken from
// verified TUF target metadata.
type Digest struct {
	// Length is the exact size in bytes.
	Length int64
	// SHA256 is the 32-byte SHA-256; it names the blob.
	SHA256 []byte
	// SHA512 is the optional 64-byte SHA-512, checked when present.
	SHA512 []byte
}

// Hex returns the lowercase hex SHA-256 that names the blob.
func (d Digest) Hex() string { return hexOf(d.SHA256) }

func (d Digest) validate() error {
	if len(d.SHA256) != sha256.Size {
		return fmt.Errorf("%w: SHA-256 of %d bytes, want %d", ErrInvalid, len(d.SHA256), sha256.Size)
	}
	if d.SHA512 != nil && len(d.SHA512) != sha512.Size {
		return fmt.Errorf("%w: SHA-512 of %d bytes, want %d or none", ErrInvalid, len(d.SHA512), sha512.Size)
	}
	if d.Length < 0 {
		return fmt.Errorf("%w: length %d is negative", ErrInvalid, d.Length)
	}
	return nil
}

type fillState int

const (
	stateWriting   fillState = iota
	stateVerified            // all bytes written and hashes match; readers may end
	stateCommitted           // durable and visible through Store.Open
	stateFailed
)

// Fill is a blob being written by one producer while readers follow it.
//
// The producer calls Write, Written, Restart and finally Commit from one
// goroutine; Abort may be called from any goroutine and is a no-op after
// Commit succeeded, so `defer f.Abort(err)` is safe. Every fill must end in
// Commit or Abort. NewReader, Done and Err are safe for concurrent use.
type Fill struct {
	s       *Store
	d       Digest
	sha     string
	tmpPath string
	done    chan struct{} // closed when the fill is committed or failed

	// Producer-only state.
	pos     int64 // bytes hashed by the producer in this attempt
	h256    hash.Hash
	h512    hash.Hash
	scratch []byte

	mu      sync.Mutex
	file    *os.File // nil once every holder released it
	refs    int      // producer plus open readers
	written int64    // bytes readers may read
	gen     uint64   // bumped when bytes below written change
	state   fillState
	err     error
	notify  chan struct{} // closed and replaced when written or state changes
	readers map[*Reader]struct{}
}

// Begin starts a fill for d, or returns the fill already running for the
// same SHA-256, so that concurrent requests coalesce into one producer.
// Only the caller that created the fill may produce it, and BeginOrJoin
// reports which caller that is. Begin evicts least recently used blobs to
// make room. Errors: ErrInvalid, ErrExists when the blob is already
// committed (Open it), ErrDigestConflict, ErrNoSpace, ErrClosed.
func (s *Store) Begin(d Digest) (*Fill, error) {
	f, _, err := s.BeginOrJoin(d)
	return f, err
}

// BeginOrJoin is Begin that also reports whether this call created the
// fill. The creator must produce it with Write and end it with Commit or
// Abort. Other callers only read from it.
func (s *Store) BeginOrJoin(d Digest) (f *Fill, producer bool, err error) {
	if err := d.validate(); err != nil {
		return nil, false, fmt.Errorf("beginning fill: %w", err)
	}
	sha := d.Hex()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, fmt.Errorf("beginning fill %s: %w", sha, ErrClosed)
	}
	if f := s.fills[sha]; f != nil {
		s.mu.Unlock()
		if err := sameDigest(f.d, d); err != nil {
			return nil, false, fmt.Errorf("joining fill %s: %w", sha, err)
		}
		return f, false, nil
	}
	if e := s.blobs[sha]; e != nil {
		s.mu.Unlock()
		if err := sameDigest(Digest{Length: e.length, SHA256: d.SHA256, SHA512: e.sha512}, d); err != nil {
			return nil, false, fmt.Errorf("beginning fill %s: %w", sha, err)
		}
		return nil, false, fmt.Errorf("beginning fill %s: %w", sha, ErrExists)
	}
	victims, err := s.makeRoomLocked(d.Length)
	if err != nil {
		s.mu.Unlock()
		return nil, false, fmt.Errorf("beginning fill %s: %w", sha, err)
	}
	tmp, err := createTemp(s.tmpDir, sha)
	if err != nil {
		s.mu.Unlock()
		s.removeVictims(victims)
		return nil, false, fmt.Errorf("beginning fill %s: %w", sha, err)
	}
	f = &Fill{
		s:       s,
		d:       Digest{Length: d.Length, SHA256: bytes.Clone(d.SHA256), SHA512: bytes.Clone(d.SHA512)},
		sha:     sha,
		tmpPath: tmp.Name(),
		done:    make(chan struct{}),
		file:    tmp,
		refs:    1,
		notify:  make(chan struct{}),
		readers: map[*Reader]struct{}{},
	}
	f.resetHash()
	s.fills[sha] = f
	s.reserved += d.Length
	s.m.fills.Inc()
	s.mu.Unlock()
	s.removeVictims(victims)
	return f, true, nil
}

// Running returns the fill in progress for this SHA-256 (lowercase hex),
// or nil when there is none.
func (s *Store) Running(sha256hex string) *Fill {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fills[sha256hex]
}

func sameDigest(have, want Digest) error {
	if have.Length != want.Length {
		return fmt.Errorf("%w: length %d, have %d", ErrDigestConflict, want.Length, have.Length)
	}
	if have.SHA512 != nil && want.SHA512 != nil && !bytes.Equal(have.SHA512, want.SHA512) {
		return fmt.Errorf("%w: SHA-512 %x, have %x", ErrDigestConflict, want.SHA512, have.SHA512)
	}
	return nil
}

func createTemp(dir, sha string) (*os.File, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	path := filepath.Join(dir, fmt.Sprintf("%s.%x.tmp", sha, rnd))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("creating temp file: %w", err)
	}
	return f, nil
}

func (f *Fill) resetHash() {
	f.pos = 0
	f.h256 = sha256.New()
	f.h512 = nil
	if f.d.SHA512 != nil {
		f.h512 = sha512.New()
	}
}

// Digest returns what the fill expects.
func (f *Fill) Digest() Digest { return f.d }

// Done is closed when the fill has been committed or has failed.
func (f *Fill) Done() <-chan struct{} { return f.done }

// Err returns nil while the fill runs or after it committed, and the
// failure otherwise.
func (f *Fill) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Written returns how many bytes the producer has delivered in the current
// attempt: the offset at which to resume with an upstream Range request.
// Only the producer may call it.
func (f *Fill) Written() int64 { return f.pos }

// Restart resets the producer to byte zero, for example because upstream
// ignored a Range request. Bytes already written stay readable, and new
// bytes are compared with them as they arrive. Where they differ, the fill
// is cut back to the first differing byte, and readers that had already
// returned bytes past that point fail with ErrRestarted.
func (f *Fill) Restart() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != stateWriting {
		return f.finishedErrLocked("restarting fill")
	}
	f.resetHash()
	return nil
}

// Write appends p to the blob. Writing past the expected length aborts the
// fill with ErrLength.
func (f *Fill) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.state != stateWriting {
		err := f.finishedErrLocked("writing fill")
		f.mu.Unlock()
		return 0, err
	}
	written, file := f.written, f.file
	f.mu.Unlock()
	if int64(len(p)) > f.d.Length-f.pos {
		err := fmt.Errorf("%w: more than the expected %d bytes", ErrLength, f.d.Length)
		f.fail(err)
		return 0, fmt.Errorf("writing fill %s: %w", f.sha, err)
	}
	n := 0
	if f.pos < written {
		// Replaying bytes already present after Restart: compare.
		m := min(int64(len(p)), written-f.pos)
		same, err := f.compare(file, p[:m])
		if err != nil {
			f.fail(err)
			return 0, fmt.Errorf("writing fill %s: %w", f.sha, err)
		}
		f.hashBytes(p[:same])
		f.pos += int64(same)
		n = same
		if int64(same) < m {
			f.cut(f.pos)
		}
	}
	if n == len(p) {
		return n, nil
	}
	if _, err := file.WriteAt(p[n:], f.pos); err != nil {
		err = fmt.Errorf("writing temp file: %w", err)
		f.fail(err)
		return n, fmt.Errorf("writing fill %s: %w", f.sha, err)
	}
	f.hashBytes(p[n:])
	f.pos += int64(len(p) - n)
	f.mu.Lock()
	if f.state == stateWriting {
		f.written = f.pos
		f.broadcastLocked()
	}
	f.mu.Unlock()
	f.s.at("write")
	return len(p), nil
}

func (f *Fill) hashBytes(p []byte) {
	f.h256.Write(p)
	if f.h512 != nil {
		f.h512.Write(p)
	}
}

// compare returns how many leading bytes of p equal the file at f.pos.
func (f *Fill) compare(file *os.File, p []byte) (int, error) {
	if want := min(len(p), 1<<20); cap(f.scratch) < want {
		f.scratch = make([]byte, want)
	}
	same := 0
	for same < len(p) {
		buf := f.scratch[:min(len(p)-same, cap(f.scratch))]
		if _, err := file.ReadAt(buf, f.pos+int64(same)); err != nil {
			return same, fmt.Errorf("reading temp file to compare: %w", err)
		}
		for i := range buf {
			if buf[i] != p[same+i] {
				return same + i, nil
			}
		}
		same += len(buf)
	}
	return same, nil
}

// cut drops the readable bytes from off on, after a restart produced
// different bytes there, and fails the readers that already returned them.
func (f *Fill) cut(off int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = off
	f.gen++
	for r := range f.readers {
		if r.maxEnd > off && r.failed == nil {
			r.failed = fmt.Errorf("reading fill %s: %w at byte %d", f.sha, ErrRestarted, off)
		}
	}
	f.broadcastLocked()
}

// Commit checks the length and hashes, makes the blob durable and visible,
// and lets readers reach the end. On a mismatch the fill fails with
// ErrLength or ErrHashMismatch, nothing becomes visible, and readers get
// that error instead of the end of the blob.
func (f *Fill) Commit() error {
	f.mu.Lock()
	if f.state != stateWriting {
		err := f.finishedErrLocked("committing fill")
		f.mu.Unlock()
		return err
	}
	f.mu.Unlock()
	var err error
	switch {
	case f.pos != f.d.Length:
		err = fmt.Errorf("%w: got %d bytes, want %d", ErrLength, f.pos, f.d.Length)
	case !bytes.Equal(f.h256.Sum(nil), f.d.SHA256):
		err = fmt.Errorf("%w: SHA-256 %x, want %x", ErrHashMismatch, f.h256.Sum(nil), f.d.SHA256)
	case f.h512 != nil && !bytes.Equal(f.h512.Sum(nil), f.d.SHA512):
		err = fmt.Errorf("%w: SHA-512 %x, want %x", ErrHashMismatch, f.h512.Sum(nil), f.d.SHA512)
	}
	if err != nil {
		f.fail(err)
		return fmt.Errorf("committing fill %s: %w", f.sha, err)
	}
	// Close waits for commits that got past this point.
	s := f.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.fail(ErrClosed)
		return fmt.Errorf("committing fill %s: %w", f.sha, ErrClosed)
	}
	s.commits.Add(1)
	s.mu.Unlock()
	defer s.commits.Done()

	f.mu.Lock()
	if f.state != stateWriting {
		err := f.finishedErrLocked("committing fill")
		f.mu.Unlock()
		return err
	}
	f.state = stateVerified
	f.written = f.d.Length
	file := f.file
	f.broadcastLocked()
	f.mu.Unlock()
	f.s.at("verified")
	if err := f.s.commit(f, file); err != nil {
		f.failFinal(err)
		return fmt.Errorf("committing fill %s: %w", f.sha, err)
	}
	f.mu.Lock()
	f.state = stateCommitted
	f.broadcastLocked()
	close(f.done)
	f.releaseLocked()
	f.mu.Unlock()
	f.s.at("committed")
	return nil
}

// Abort ends the fill: the temp file is removed and readers fail with an
// error that wraps ErrAborted and cause. It is a no-op once the fill has
// committed or failed.
func (f *Fill) Abort(cause error) {
	if cause == nil {
		cause = errors.New("no cause given")
	}
	f.fail(cause)
}

// fail ends a fill that is still writing.
func (f *Fill) fail(cause error) {
	f.mu.Lock()
	if f.state != stateWriting {
		f.mu.Unlock()
		return
	}
	f.failLocked(cause)
}

// failFinal ends a fill whose bytes were verified but could not be made
// durable.
func (f *Fill) failFinal(cause error) {
	f.mu.Lock()
	if f.state != stateVerified {
		f.mu.Unlock()
		return
	}
	f.failLocked(cause)
}

// failLocked is called with f.mu held and releases it.
func (f *Fill) failLocked(cause error) {
	f.state = stateFailed
	f.err = fmt.Errorf("fill %s: %w: %w", f.sha, ErrAborted, cause)
	f.broadcastLocked()
	close(f.done)
	f.releaseLocked()
	f.mu.Unlock()
	if err := os.Remove(f.tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.s.log.Warn("removing temp file of failed fill", "path", f.tmpPath, "err", err)
	}
	f.s.endFill(f)
	f.s.at("failed")
}

func (f *Fill) finishedErrLocked(doing string) error {
	if f.err != nil {
		return fmt.Errorf("%s: %w", doing, f.err)
	}
	return fmt.Errorf("%s %s: already committed", doing, f.sha)
}

func (f *Fill) broadcastLocked() {
	close(f.notify)
	f.notify = make(chan struct{})
}

// releaseLocked drops one hold on the file and closes it after the last.
func (f *Fill) releaseLocked() {
	f.refs--
	if f.refs == 0 && f.file != nil {
		f.file.Close()
		f.file = nil
	}
}

// endFill removes a failed fill from the store's running fills.
func (s *Store) endFill(f *Fill) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fills[f.sha] == f {
		delete(s.fills, f.sha)
		s.reserved -= f.d.Length
		s.m.fills.Dec()
	}
}
