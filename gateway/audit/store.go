package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key layout. Entries live under "audit/" followed by the sequence number
// as 8 big-endian bytes, so keys sort in append order. The chain's
// bookkeeping lives under "auditm/", which does not share that prefix:
//
//	auditm/head            the last entry's seq and hash, written with it
//	auditm/anchor          seq and hash of the last pruned entry
//	auditm/cursor/NAME     how far a forwarder has delivered
const (
	keyPrefix    = "audit/"
	metaPrefix   = "auditm/"
	headKey      = metaPrefix + "head"
	anchorKey    = metaPrefix + "anchor"
	cursorPrefix = metaPrefix + "cursor/"
)

// Entry is a stored record with its place in the chain.
type Entry struct {
	Seq    uint64 `json:"seq"`
	Record Record `json:"record"`
	// Prev is the hash of the previous entry, hex; empty for the first.
	Prev string `json:"prev"`
	// Hash is SHA-256 over Prev and the canonical JSON of Seq and Record.
	Hash string `json:"hash"`
}

// Link names one entry of the chain by its sequence number and hash. The
// head and the anchor of pruned entries are links.
type Link struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time,omitzero"`
}

// Store is the append-only, hash-chained audit log in badger. It is safe
// for concurrent use. Concurrent appends share one synced commit (group
// commit): each caller's entry is chained in memory at once, and the
// first caller to reach the commit writes every entry waiting.
type Store struct {
	db  *badger.DB
	now func() time.Time

	mu     sync.Mutex
	next   uint64 // next sequence number to hand out
	head   string // hash of the last entry handed out
	queue  []*pendingEntry
	done   Link          // last committed entry
	waitCh chan struct{} // closed and replaced on every commit
	m      storeCounters

	commitMu sync.Mutex // held while one batch is written
}

// pendingEntry is an entry chained in memory and waiting for its commit.
type pendingEntry struct {
	link Link
	data []byte
	err  error
	done chan struct{}
}

// maxBatch bounds the entries of one commit, well inside badger's
// transaction limits.
const maxBatch = 512

var _ Recorder = (*Store)(nil)

// Open loads the chain head from db.
func Open(db *badger.DB) (*Store, error) {
	s := &Store{db: db, now: time.Now, next: 1, waitCh: make(chan struct{})}
	err := db.View(func(txn *badger.Txn) error {
		if a, ok, err := getLink(txn, anchorKey); err != nil {
			return err
		} else if ok {
			s.next, s.head = a.Seq+1, a.Hash
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), Reverse: true})
		defer it.Close()
		it.Seek(append([]byte(keyPrefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if !it.Valid() {
			return nil
		}
		var e Entry
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
			return err
		}
		s.next, s.head = e.Seq+1, e.Hash
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading audit chain head: %w", err)
	}
	s.done = Link{Seq: s.next - 1, Hash: s.head}
	return s, nil
}

// Record appends r to the chain and returns once it is durable. When the
// commit fails, the record and every record chained after it in memory
// fail with the error, and the chain continues from the last durable
// entry.
func (s *Store) Record(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	r.Time = r.Time.UTC()

	s.mu.Lock()
	e := Entry{Seq: s.next, Record: r, Prev: s.head}
	e.Hash = entryHash(e)
	data, err := json.Marshal(e)
	if err != nil {
		s.mu.Unlock()
		s.m.writeErrors.Add(1)
		return fmt.Errorf("encoding audit record: %w", err)
	}
	p := &pendingEntry{link: Link{Seq: e.Seq, Hash: e.Hash, Time: r.Time}, data: data, done: make(chan struct{})}
	s.queue = append(s.queue, p)
	s.next, s.head = e.Seq+1, e.Hash
	s.mu.Unlock()

	for {
		s.commitMu.Lock()
		select {
		case <-p.done:
			s.commitMu.Unlock()
			return p.err
		default:
		}
		s.commitBatch()
		s.commitMu.Unlock()
	}
}

// commitBatch writes up to maxBatch waiting entries in one transaction.
// The caller holds commitMu.
func (s *Store) commitBatch() {
	s.mu.Lock()
	n := min(len(s.queue), maxBatch)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	last := batch[len(batch)-1].link
	head, _ := json.Marshal(last)
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, p := range batch {
			if err := txn.Set(seqKey(p.link.Seq), p.data); err != nil {
				return err
			}
		}
		return txn.Set([]byte(headKey), head)
	})
	s.mu.Lock()
	if err != nil {
		// Entries chained after the failed ones cannot be stored either:
		// fail them all and continue from the last durable entry.
		failed := append(batch, s.queue...)
		s.queue = nil
		s.next, s.head = s.done.Seq+1, s.done.Hash
		s.mu.Unlock()
		s.m.writeErrors.Add(uint64(len(failed)))
		for _, p := range failed {
			p.err = fmt.Errorf("storing audit record %d: %w", p.link.Seq, err)
			close(p.done)
		}
		return
	}
	s.done = last
	close(s.waitCh)
	s.waitCh = make(chan struct{})
	s.mu.Unlock()
	s.m.records.Add(uint64(len(batch)))
	for _, p := range batch {
		close(p.done)
	}
}

// Head returns the newest durable entry's link; Seq is 0 for an empty
// chain.
func (s *Store) Head() Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Link{Seq: s.done.Seq, Hash: s.done.Hash}
}

// Appended returns a channel that is closed at the next append.
func (s *Store) Appended() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitCh
}

// Anchor returns the link of the last pruned entry, if any entries were
// pruned.
func (s *Store) Anchor() (Link, bool, error) {
	var (
		a  Link
		ok bool
	)
	err := s.db.View(func(txn *badger.Txn) (err error) {
		a, ok, err = getLink(txn, anchorKey)
		return err
	})
	return a, ok, err
}

// Scan calls fn for every entry in append order until fn returns false.
func (s *Store) Scan(ctx context.Context, fn func(Entry) bool) error {
	return s.ScanFrom(ctx, 0, fn)
}

// ScanFrom calls fn for every entry with a sequence number of at least
// from, in append order, until fn returns false.
func (s *Store) ScanFrom(ctx context.Context, from uint64, fn func(Entry) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(seqKey(from)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("audit entry at key %x is unreadable: %w", it.Item().Key(), err)
			}
			if !fn(e) {
				return nil
			}
		}
		return nil
	})
}

// ScanBack calls fn for every entry with a sequence number of at most
// before (0 means from the newest), newest first, until fn returns false.
func (s *Store) ScanBack(ctx context.Context, before uint64, fn func(Entry) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 64, Reverse: true})
		defer it.Close()
		start := append(seqKey(before), 0xff)
		if before == 0 {
			start = append([]byte(keyPrefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("audit entry at key %x is unreadable: %w", it.Item().Key(), err)
			}
			if !fn(e) {
				return nil
			}
		}
		return nil
	})
}

// ErrBroken is wrapped by Verify's error for a chain that was altered.
var ErrBroken = errors.New("audit chain broken")

// BrokenError names the first entry at which the chain does not hold.
// It wraps ErrBroken.
type BrokenError struct {
	// Seq is the position of the first broken entry: the sequence number
	// in its key. For entries deleted at the end of the chain it
	// is the first missing one.
	Seq uint64
	// Problem describes what is wrong with it.
	Problem string
	// Entry is the stored entry when it could be read.
	Entry *Entry
}

func (e *BrokenError) Error() string {
	what := ""
	if e.Entry != nil {
		r := e.Entry.Record
		what = fmt.Sprintf(" (%s %s %s by %s)", r.Time.Format(time.RFC3339), r.Action, r.Subject, r.Actor)
	}
	return fmt.Sprintf("%v at entry %d%s: %s", ErrBroken, e.Seq, what, e.Problem)
}

func (e *BrokenError) Unwrap() error { return ErrBroken }

// Verify walks the chain and returns an error naming the first entry that
// was changed, moved or follows deleted ones, or the first entry missing
// from the end of the chain. It returns the number of entries checked.
// The chain's first entry must link to the anchor left by pruning.
func (s *Store) Verify(ctx context.Context) (int, error) {
	var (
		n      int
		broken *BrokenError
	)
	err := s.db.View(func(txn *badger.Txn) error {
		want, prev := uint64(1), ""
		anchor, ok, err := getLink(txn, anchorKey)
		if err != nil {
			return err
		}
		if ok {
			want, prev = anchor.Seq+1, anchor.Hash
		}
		head, hasHead, err := getLink(txn, headKey)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			key := it.Item().Key()
			if len(key) != len(keyPrefix)+8 {
				broken = &BrokenError{Seq: want, Problem: fmt.Sprintf("a foreign key %q sits among the entries", key)}
				return nil
			}
			pos := binary.BigEndian.Uint64(key[len(keyPrefix):])
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				broken = &BrokenError{Seq: pos, Problem: "it is unreadable: " + err.Error()}
				return nil
			}
			if ok && pos <= anchor.Seq {
				// Left over from a prune that stopped part-way: the chain
				// starts after the anchor, and the next prune removes it.
				continue
			}
			switch {
			case e.Seq != pos:
				broken = &BrokenError{Seq: pos, Entry: &e, Problem: fmt.Sprintf("it is entry %d stored in place of entry %d (entries reordered)", e.Seq, pos)}
			case pos > want:
				broken = &BrokenError{Seq: pos, Entry: &e, Problem: fmt.Sprintf("entries %s before it are missing (deleted)", seqRange(want, pos-1))}
			case e.Prev != prev:
				broken = &BrokenError{Seq: pos, Entry: &e, Problem: "it does not link to the entry before it (changed, or inserted)"}
			case entryHash(e) != e.Hash:
				broken = &BrokenError{Seq: pos, Entry: &e, Problem: "its content does not match its hash (changed)"}
			}
			if broken != nil {
				return nil
			}
			n++
			prev, want = e.Hash, e.Seq+1
		}
		if hasHead {
			switch {
			case head.Seq >= want:
				broken = &BrokenError{Seq: want, Problem: fmt.Sprintf("the chain ends at entry %d but its head records entry %d: entries %s were deleted", want-1, head.Seq, seqRange(want, head.Seq))}
			case head.Seq == want-1 && head.Hash != prev:
				broken = &BrokenError{Seq: head.Seq, Problem: "the last entry differs from the head recorded with it (changed)"}
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("verifying audit chain: %w", err)
	}
	if broken != nil {
		return n, broken
	}
	return n, nil
}

func seqRange(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("%d", a)
	}
	return fmt.Sprintf("%d to %d", a, b)
}

func getLink(txn *badger.Txn, key string) (Link, bool, error) {
	var l Link
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &l) }); err != nil {
		return l, false, fmt.Errorf("reading %s: %w", key, err)
	}
	return l, true, nil
}

func entryHash(e Entry) string {
	body, _ := json.Marshal(struct {
		Seq    uint64 `json:"seq"`
		Record Record `json:"record"`
	}{e.Seq, e.Record})
	h := sha256.New()
	h.Write([]byte(e.Prev))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func seqKey(seq uint64) []byte {
	k := make([]byte, len(keyPrefix)+8)
	copy(k, keyPrefix)
	binary.BigEndian.PutUint64(k[len(keyPrefix):], seq)
	return k
}
