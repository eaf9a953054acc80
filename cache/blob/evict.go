package blob

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// victim is a blob already dropped from memory whose file and record are
// still to be removed.
type victim struct {
	sha        string
	length     int64
	kind       EventKind
	reason     string
	unverified bool // counted in Store.unverified until removed
	done       chan struct{}
}

// space is the store's accounting at one moment, under s.mu.
type space struct {
	boundRoom int64 // room under MaxBytes, before eviction; MaxInt64 if unbounded
	fsRoom    int64 // room on the filesystem, before eviction; MaxInt64 if unknown
	fsFree    int64 // -1 if unknown
	evictable []string
	evictSize int64
	pinned    int64
}

func (s *Store) spaceLocked() space {
	var sp space
	sp.boundRoom = math.MaxInt64
	if s.opts.MaxBytes > 0 {
		sp.boundRoom = s.opts.MaxBytes - s.stored - s.reserved
	}
	sp.fsFree, sp.fsRoom = -1, math.MaxInt64
	if free, err := freeBytes(s.dir); err != nil {
		s.log.Warn("cannot read filesystem free space; relying on the size bound", "err", err)
	} else {
		var outstanding int64
		for _, f := range s.fills {
			f.mu.Lock()
			outstanding += f.d.Length - f.written
			f.mu.Unlock()
		}
		sp.fsFree = free
		sp.fsRoom = free - outstanding - s.opts.MinFree
	}
	for sha, e := range s.blobs {
		switch {
		case len(s.pins[sha]) > 0:
			sp.pinned += e.length
		case e.verified && s.opens[sha] == 0:
			sp.evictable = append(sp.evictable, sha)
			sp.evictSize += e.length
		}
	}
	return sp
}

// makeRoomLocked drops least recently used blobs from memory until need
// more bytes fit under the bound and on the filesystem. It removes nothing
// when that is impossible. The caller removes the victims' files after
// releasing s.mu.
func (s *Store) makeRoomLocked(need int64) ([]victim, error) {
	if s.opts.MaxBytes > 0 && need > s.opts.MaxBytes {
		return nil, fmt.Errorf("%w: blob of %d bytes exceeds the store bound of %d bytes; raise MaxBytes", ErrNoSpace, need, s.opts.MaxBytes)
	}
	sp := s.spaceLocked()
	toFree := max(need-sp.boundRoom, need-sp.fsRoom)
	if toFree <= 0 {
		return nil, nil
	}
	if toFree > sp.evictSize {
		return nil, fmt.Errorf("%w: need %d bytes, %d free under the bound, %d on the filesystem, %d evictable",
			ErrNoSpace, need, max(sp.boundRoom, 0), max(sp.fsRoom, 0), sp.evictSize)
	}
	slices.SortFunc(sp.evictable, func(a, b string) int {
		return cmp.Or(s.blobs[a].lastAccess.Compare(s.blobs[b].lastAccess), cmp.Compare(a, b))
	})
	var victims []victim
	for _, sha := range sp.evictable {
		if toFree <= 0 {
			break
		}
		e := s.blobs[sha]
		toFree -= e.length
		victims = append(victims, s.dropLocked(sha, EventEvicted, "least recently used blob evicted to make room"))
	}
	return victims, nil
}

// dropLocked removes a blob from memory and returns it for removal from
// disk and index.
func (s *Store) dropLocked(sha string, kind EventKind, reason string) victim {
	e := s.blobs[sha]
	delete(s.blobs, sha)
	delete(s.dirty, sha)
	s.stored -= e.length
	if !e.verified && kind != EventVerifyFailed {
		s.markVerifiedLocked()
	}
	s.m.setStored(s.stored, len(s.blobs))
	v := victim{sha: sha, length: e.length, kind: kind, reason: reason, unverified: !e.verified, done: make(chan struct{})}
	s.removing[sha] = v.done
	return v
}

// removeVictims deletes the files and records of dropped blobs.
func (s *Store) removeVictims(victims []victim) {
	for _, v := range victims {
		path := s.blobPath(v.sha)
		err := os.Remove(path)
		if err == nil {
			err = syncDir(filepath.Dir(path))
		} else if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		if derr := s.deleteRecord(v.sha); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			s.log.Error("removing blob", "sha256", v.sha, "reason", v.reason, "err", err)
		}
		switch v.kind {
		case EventEvicted:
			s.m.evictions.Inc()
			s.log.Info("evicted blob", "sha256", v.sha, "bytes", v.length)
		}
		s.mu.Lock()
		delete(s.removing, v.sha)
		close(v.done)
		if v.kind == EventVerifyFailed {
			s.m.verifyFailures.Inc()
		}
		if v.kind == EventVerifyFailed && v.unverified {
			// Counted as verified only now, so that Ready means removed.
			s.markVerifiedLocked()
		}
		s.mu.Unlock()
		s.emit(Event{Kind: v.kind, SHA256: v.sha, Length: v.length, Reason: v.reason})
	}
}

// waitRemoved blocks while an earlier copy of sha is being removed, so
// that a new commit is not deleted by it.
func (s *Store) waitRemoved(sha string) {
	s.mu.Lock()
	ch := s.removing[sha]
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Pin keeps a blob from eviction until every reason given for it has been
// unpinned. The blob need not be stored yet: a pin taken before the fill
// protects it from the moment it commits. Pins are durable.
func (s *Store) Pin(sha256hex, reason string) error {
	if err := checkHex(sha256hex); err != nil {
		return fmt.Errorf("pinning blob: %w", err)
	}
	if err := checkReason(reason); err != nil {
		return fmt.Errorf("pinning blob %s: %w", sha256hex, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(pinKey(sha256hex, reason), nil)
	}); err != nil {
		return fmt.Errorf("pinning blob %s: writing index: %w", sha256hex, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pins[sha256hex] == nil {
		s.pins[sha256hex] = map[string]struct{}{}
	}
	s.pins[sha256hex][reason] = struct{}{}
	return nil
}

// Unpin removes one reason for keeping a blob. Removing a pin that does
// not exist is not an error.
func (s *Store) Unpin(sha256hex, reason string) error {
	if err := checkHex(sha256hex); err != nil {
		return fmt.Errorf("unpinning blob: %w", err)
	}
	if err := checkReason(reason); err != nil {
		return fmt.Errorf("unpinning blob %s: %w", sha256hex, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(pinKey(sha256hex, reason))
	}); err != nil {
		return fmt.Errorf("unpinning blob %s: writing index: %w", sha256hex, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pins[sha256hex], reason)
	if len(s.pins[sha256hex]) == 0 {
		delete(s.pins, sha256hex)
	}
	return nil
}

// Pins returns the reasons a blob is pinned, sorted.
func (s *Store) Pins(sha256hex string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	reasons := make([]string, 0, len(s.pins[sha256hex]))
	for r := range s.pins[sha256hex] {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	return reasons
}

// Usage is the store's space accounting at one moment.
type Usage struct {
	StoredBytes    int64 // bytes of committed blobs
	Blobs          int   // committed blobs
	FillingBytes   int64 // expected bytes of running fills, reserved
	Fills          int   // running fills
	PinnedBytes    int64 // committed blobs with at least one pin
	EvictableBytes int64 // committed blobs that are verified, unpinned and not open
	MaxBytes       int64 // the size bound; 0 means none
	FilesystemFree int64 // bytes free on the filesystem; -1 if unknown
	// Available is the largest blob that Begin would accept now, evicting
	// as needed. A fill larger than this gets ErrNoSpace.
	Available int64
}

// Usage reports stored, reserved and available space, so that the gateway
// can refuse a fill that cannot fit before asking upstream for it.
func (s *Store) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.spaceLocked()
	avail := min(sp.boundRoom, sp.fsRoom)
	if avail < math.MaxInt64-sp.evictSize {
		avail += sp.evictSize
	}
	if s.opts.MaxBytes > 0 {
		avail = min(avail, s.opts.MaxBytes)
	}
	return Usage{
		StoredBytes:    s.stored,
		Blobs:          len(s.blobs),
		FillingBytes:   s.reserved,
		Fills:          len(s.fills),
		PinnedBytes:    sp.pinned,
		EvictableBytes: sp.evictSize,
		MaxBytes:       s.opts.MaxBytes,
		FilesystemFree: sp.fsFree,
		Available:      max(avail, 0),
	}
}
