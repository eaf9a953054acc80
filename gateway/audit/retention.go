package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// PruneResult describes what Prune removed.
type PruneResult struct {
	// Removed is the number of entries deleted; First and Last are their
	// sequence numbers.
	Removed     int
	First, Last uint64
	// HeldBack is the number of entries old enough to prune that were
	// kept because a forwarder has not delivered them yet.
	HeldBack int
}

// maxPruneTxn bounds the deletes of one badger transaction.
const maxPruneTxn = 1000

// Prune deletes the oldest entries whose time is before cutoff and whose
// sequence number is at most limit (NoLimit for none), such as the
// position a syslog forwarder has delivered up to. Nothing is dropped
// silently: the last pruned entry becomes the anchor that Verify starts
// from, and an "audit.prune" record naming the range and its last hash
// is appended to the chain. A chain with nothing to prune is left
// unchanged.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, limit uint64) (PruneResult, error) {
	var res PruneResult
	var last Entry
	var keys [][]byte
	prev, hadAnchor, err := s.Anchor()
	if err != nil {
		return res, fmt.Errorf("reading the audit anchor: %w", err)
	}
	err = s.Scan(ctx, func(e Entry) bool {
		if hadAnchor && e.Seq <= prev.Seq {
			// Left over from a prune that stopped part-way.
			keys = append(keys, seqKey(e.Seq))
			return true
		}
		if !e.Record.Time.Before(cutoff) {
			return false
		}
		if e.Seq > limit {
			res.HeldBack++
			return true
		}
		if res.HeldBack > 0 {
			return false
		}
		if res.Removed == 0 {
			res.First = e.Seq
		}
		res.Removed++
		res.Last = e.Seq
		last = e
		keys = append(keys, seqKey(e.Seq))
		return true
	})
	if err != nil {
		return res, fmt.Errorf("finding audit entries to prune: %w", err)
	}
	if res.HeldBack > 0 {
		// Count every held-back entry, not only those scanned so far.
		res.HeldBack = 0
		_ = s.ScanFrom(ctx, limit+1, func(e Entry) bool {
			if !e.Record.Time.Before(cutoff) {
				return false
			}
			res.HeldBack++
			return true
		})
		s.m.heldBack.Store(int64(res.HeldBack))
	} else {
		s.m.heldBack.Store(0)
	}
	if res.Removed == 0 {
		if len(keys) > 0 {
			err := s.db.Update(func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return res, fmt.Errorf("removing audit entries left by an interrupted prune: %w", err)
			}
		}
		return res, nil
	}
	anchor, _ := json.Marshal(Link{Seq: last.Seq, Hash: last.Hash, Time: last.Record.Time})
	// The anchor is written with the first batch of deletes, so a crash
	// part-way leaves a chain that verifies from its new start, because
	// Verify skips entries up to the anchor and the next prune removes
	// them. NOTE: such a crash also loses the audit.prune record.
	for i := 0; i < len(keys); i += maxPruneTxn {
		batch := keys[i:min(i+maxPruneTxn, len(keys))]
		err := s.db.Update(func(txn *badger.Txn) error {
			if i == 0 {
				if err := txn.Set([]byte(anchorKey), anchor); err != nil {
					return err
				}
			}
			for _, k := range batch {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("pruning audit entries %d to %d: %w", res.First, res.Last, err)
		}
	}
	s.m.pruned.Add(uint64(res.Removed))
	err = s.Record(ctx, Record{
		Actor:   "gateway",
		Action:  "audit.prune",
		Subject: "audit",
		Details: map[string]string{
			"first":     strconv.FormatUint(res.First, 10),
			"last":      strconv.FormatUint(res.Last, 10),
			"removed":   strconv.Itoa(res.Removed),
			"last_hash": last.Hash,
			"cutoff":    cutoff.UTC().Format(time.RFC3339),
		},
	})
	return res, err
}

// Cursor returns how far the named forwarder has delivered: the sequence
// number of the last entry it confirmed, or 0.
func (s *Store) Cursor(name string) (uint64, error) {
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(cursorPrefix + name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			seq, err = strconv.ParseUint(string(v), 10, 64)
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("reading audit cursor %s: %w", name, err)
	}
	return seq, nil
}

// SetCursor records that the named forwarder has delivered every entry up
// to seq.
func (s *Store) SetCursor(name string, seq uint64) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(cursorPrefix+name), []byte(strconv.FormatUint(seq, 10)))
	})
	if err != nil {
		return fmt.Errorf("storing audit cursor %s: %w", name, err)
	}
	return nil
}

// NoLimit is Prune's limit when no forwarder holds entries back.
const NoLimit = ^uint64(0)

// Retain runs Prune at start and then once a day with a cutoff of keep
// before now, holding back entries beyond limit() (nil means NoLimit).
// It returns when ctx ends. report, when not nil, receives each result.
func (s *Store) Retain(ctx context.Context, keep time.Duration, limit func() uint64, report func(PruneResult, error)) {
	if keep <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lim := NoLimit
		if limit != nil {
			lim = limit()
		}
		res, err := s.Prune(ctx, s.now().Add(-keep), lim)
		if report != nil {
			report(res, err)
		}
		t.Reset(24 * time.Hour)
	}
}
