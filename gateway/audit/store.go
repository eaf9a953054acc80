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

// keyPrefix is the badger prefix of audit entries; the suffix is the
// sequence number as 8 big-endian bytes, so keys sort in append order.
const keyPrefix = "audit/"

// Entry is a stored record with its place in the chain.
type Entry struct {
	Seq    uint64 `json:"seq"`
	Record Record `json:"record"`
	// Prev is the hash of the previous entry, hex; empty for the first.
	Prev string `json:"prev"`
	// Hash is SHA-256 over Prev and the canonical JSON of Seq and Record.
	Hash string `json:"hash"`
}

// Store is the append-only, hash-chained audit log in badger. It is safe
// for concurrent use.
type Store struct {
	db  *badger.DB
	now func() time.Time

	mu   sync.Mutex
	next uint64
	head string
}

var _ Recorder = (*Store)(nil)

// Open loads the chain head from db.
func Open(db *badger.DB) (*Store, error) {
	s := &Store{db: db, now: time.Now, next: 1}
	err := db.View(func(txn *badger.Txn) error {
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
	return s, nil
}

// Record appends r to the chain and returns once it is durable.
func (s *Store) Record(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	r.Time = r.Time.UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := Entry{Seq: s.next, Record: r, Prev: s.head}
	e.Hash = entryHash(e)
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(seqKey(e.Seq), data) }); err != nil {
		return fmt.Errorf("storing audit record %d: %w", e.Seq, err)
	}
	s.next, s.head = e.Seq+1, e.Hash
	return nil
}

// Scan calls fn for every entry in append order until fn returns false.
func (s *Store) Scan(ctx context.Context, fn func(Entry) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
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

// Verify walks the chain and returns an error naming the first entry that
// was changed, reordered or follows a deleted one. It returns the number
// of entries checked.
func (s *Store) Verify(ctx context.Context) (int, error) {
	var (
		n      int
		prev   string
		want   uint64 = 1
		broken error
	)
	err := s.Scan(ctx, func(e Entry) bool {
		switch {
		case e.Seq != want:
			broken = fmt.Errorf("%w at entry %d: expected entry %d (entries missing or reordered)", ErrBroken, e.Seq, want)
		case e.Prev != prev:
			broken = fmt.Errorf("%w at entry %d: it does not link to the entry before it", ErrBroken, e.Seq)
		case entryHash(e) != e.Hash:
			broken = fmt.Errorf("%w at entry %d: its content does not match its hash", ErrBroken, e.Seq)
		}
		if broken != nil {
			return false
		}
		n++
		prev, want = e.Hash, e.Seq+1
		return true
	})
	if err != nil {
		return n, err
	}
	return n, broken
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
