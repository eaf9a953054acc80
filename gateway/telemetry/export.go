package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key layout under the export record's "tx/" prefix.
var (
	prefixExport  = []byte("tx/r/") // + seq -> ExportRecord (JSON)
	prefixPayload = []byte("tx/p/") // + seq -> payload bytes as uploaded
	keyNextExport = []byte("tx/m/next")
	keyDelivered  = []byte("tx/m/delivered")
)

// ExportRecord is the gateway's local record of one upload: when it was
// sealed and delivered, what it holds, and the SHA-256 of the exact bytes
// sent. Records are kept for good; payload bytes for RelayOptions.KeepPayloads.
type ExportRecord struct {
	Seq uint64 `json:"seq"`
	// Key is the idempotency key sent with every attempt.
	Key    string    `json:"key"`
	Sealed time.Time `json:"sealed"`
	// Delivered is when the hub acknowledged the upload; zero while pending.
	Delivered time.Time `json:"delivered,omitzero"`
	SHA256    string    `json:"sha256"`
	Bytes     int       `json:"bytes"`
	// Events is the number of device events the upload accounts for,
	// withheld ones included.
	Events         uint64 `json:"events"`
	WithheldEvents uint64 `json:"withheld_events"`
	Cells          int    `json:"cells"`
	WithheldCells  int    `json:"withheld_cells"`
	DeviceCells    int    `json:"device_cells"`
	// PerDevice names the manufacturers whose per-device cells it carries.
	PerDevice []string `json:"per_device,omitempty"`
	// PeriodFrom and PeriodTo are the first and last period starts covered.
	PeriodFrom time.Time `json:"period_from"`
	PeriodTo   time.Time `json:"period_to"`
	// QueueFrom and QueueTo are the queue sequence numbers sealed into it,
	// and Batches the number of device batches.
	QueueFrom uint64 `json:"queue_from"`
	QueueTo   uint64 `json:"queue_to"`
	Batches   int    `json:"batches"`
}

func seqKey(prefix []byte, seq uint64) []byte {
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], seq)
	return k
}

func getU64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("key %s holds %d bytes, want 8", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

func getRecord(txn *badger.Txn, seq uint64) (ExportRecord, error) {
	var rec ExportRecord
	item, err := txn.Get(seqKey(prefixExport, seq))
	if err != nil {
		return rec, err
	}
	err = item.Value(func(b []byte) error { return json.Unmarshal(b, &rec) })
	return rec, err
}

// Exports returns up to limit export records with sequence numbers from
// fromSeq on, oldest first.
func (r *Relay) Exports(ctx context.Context, fromSeq uint64, limit int) ([]ExportRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []ExportRecord
	err := r.q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixExport, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Seek(seqKey(prefixExport, fromSeq)); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec ExportRecord
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &rec) }); err != nil {
				return fmt.Errorf("reading export record %x: %w", it.Item().Key(), err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing telemetry exports: %w", err)
	}
	return out, nil
}

// ExportPayload returns the exact bytes uploaded (or to be uploaded) for an
// export, or an error wrapping badger.ErrKeyNotFound once they are pruned.
func (r *Relay) ExportPayload(ctx context.Context, seq uint64) ([]byte, error) {
	var out []byte
	err := r.q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(seqKey(prefixPayload, seq))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading telemetry export %d: %w", seq, err)
	}
	return out, ctx.Err()
}

// prune deletes payload bytes of delivered exports older than keep.
func (r *Relay) prune(now time.Time) error {
	if r.opts.KeepPayloads < 0 {
		return nil
	}
	cutoff := now.Add(-r.opts.KeepPayloads)
	var del [][]byte
	err := r.q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPayload})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(del) < 1000; it.Next() {
			seq := binary.BigEndian.Uint64(it.Item().Key()[len(prefixPayload):])
			if seq > r.delivered.Load() {
				break
			}
			rec, err := getRecord(txn, seq)
			if err != nil {
				return err
			}
			if rec.Delivered.IsZero() || rec.Delivered.After(cutoff) {
				break
			}
			del = append(del, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pruning telemetry export payloads: %w", err)
	}
	return r.q.deleteKeys(del)
}
