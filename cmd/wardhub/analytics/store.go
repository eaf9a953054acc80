// Package analytics owns wardhub's analytics store. It receives the
// de-identified telemetry uploads of gateways (the format is defined in
// package github.com/wardgate/wardgate/gateway/telemetry/wire) and
// deduplicates them on (site, idempotency key). It keeps their aggregate
// cells in badger under the key prefix "an/" and serves them by
// manufacturer, model, software version, device class, metric and period,
// as JSON or CSV.
package analytics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// Key layout under "an/".
var (
	prefixUpload  = []byte("an/u/") // + site \x00 key -> Upload (JSON)
	prefixPayload = []byte("an/p/") // + site \x00 key -> payload bytes
	prefixCell    = []byte("an/c/") // + period(8) \x00 dims... \x00 site -> storedCell (JSON)
	prefixDevice  = []byte("an/d/") // + period(8) \x00 dims... \x00 site \x00 device -> wire.Stats (JSON)
)

// ErrKeyConflict is returned when an idempotency key arrives again with a
// different payload.
var ErrKeyConflict = errors.New("idempotency key already used for a different payload")

// ErrInvalid wraps every rejection of a malformed payload.
var ErrInvalid = errors.New("invalid telemetry payload")

// Options configure a Store. The zero value is usable.
type Options struct {
	// MaxPayloadBytes bounds one upload (default 16 MiB).
	MaxPayloadBytes int
	// Logger (default slog.Default()) and Registerer (none when nil).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the store's clock (default time.Now).
	Now func() time.Time
}

// Store is the hub's analytics store.
type Store struct {
	db   *badger.DB
	opts Options
	log  *slog.Logger
	mu   sync.Mutex // serialises ingest so cell merges never conflict

	ingested *prometheus.CounterVec
}

// Upload is the hub's record of one accepted upload.
type Upload struct {
	Site     string    `json:"site"`
	Key      string    `json:"key"`
	Seq      uint64    `json:"seq"`
	Received time.Time `json:"received"`
	SHA256   string    `json:"sha256"`
	Bytes    int       `json:"bytes"`
	// Events is the number of raw device events the upload accounts for,
	// withheld ones included; WithheldEvents of them are in suppressed cells.
	Events         uint64 `json:"events"`
	WithheldEvents uint64 `json:"withheld_events"`
	Cells          int    `json:"cells"`
	WithheldCells  int    `json:"withheld_cells"`
	DeviceCells    int    `json:"device_cells"`
}

// storedCell is one site's merged cell.
type storedCell struct {
	// Devices is the largest distinct-device count of any one upload for
	// this cell: a gateway that restarted within a period splits it.
	Devices int `json:"devices"`
	wire.Stats
}

// Open opens the store in db; the caller keeps ownership of db.
func Open(db *badger.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("opening analytics store: db is nil")
	}
	if opts.MaxPayloadBytes <= 0 {
		opts.MaxPayloadBytes = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{db: db, opts: opts, log: opts.Logger.With("component", "analytics")}
	s.ingested = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wardhub_analytics_uploads_total", Help: "Telemetry uploads by result (stored, duplicate, invalid, conflict, error).",
	}, []string{"result"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.ingested); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("opening analytics store: %w", err)
			}
			s.ingested = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return s, nil
}

func uploadKey(prefix []byte, site, key string) []byte {
	k := make([]byte, 0, len(prefix)+len(site)+1+len(key))
	k = append(k, prefix...)
	k = append(k, site...)
	k = append(k, 0)
	return append(k, key...)
}

func cellKey(d *wire.Dims, site string) []byte { return dimsKey(prefixCell, d, site) }

func dimsKey(prefix []byte, d *wire.Dims, site string) []byte {
	k := make([]byte, 0, 128)
	k = append(k, prefix...)
	k = binaryTime(k, d.Period)
	for _, s := range []string{d.Manufacturer, d.Model, d.Version, d.DeviceClass, d.Kind, d.Name, site} {
		k = append(k, 0)
		k = append(k, s...)
	}
	return k
}

func binaryTime(b []byte, t time.Time) []byte {
	u := uint64(t.Unix()) ^ 1<<63 // order negative times first
	return append(b, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

func validKey(key string) bool {
	if key == "" || len(key) > 128 {
		return false
	}
	return !strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e })
}

// Ingest stores one upload from siteID under its idempotency key and
// returns once it is durable. An upload already stored under the same
// (siteID, key) with the same bytes is a duplicate: nothing changes and
// duplicate is true. The same key with different bytes gets ErrKeyConflict,
// and a malformed payload, or one naming another site or sequence number
// than its key, gets an error wrapping ErrInvalid.
//
// NOTE: an upload is stored in one badger transaction, so its cells must
// fit badger's batch limit (15% of the memtable size). With a 64 MiB
// memtable that is roughly 20,000 cells (an estimate at about 450 bytes a
// cell); a larger upload fails every retry.
func (s *Store) Ingest(ctx context.Context, siteID, idempotencyKey string, body []byte) (duplicate bool, err error) {
	result := "error"
	defer func() { s.ingested.WithLabelValues(result).Inc() }()
	if err := wire.ValidSite(siteID); err != nil {
		result = "invalid"
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	if !validKey(idempotencyKey) {
		result = "invalid"
		return false, fmt.Errorf("%w: idempotency key %q: want 1 to 128 printable ASCII characters", ErrInvalid, idempotencyKey)
	}

	if len(body) > s.opts.MaxPayloadBytes {
		result = "invalid"
		return false, fmt.Errorf("%w: %d bytes exceed the limit of %d", ErrInvalid, len(body), s.opts.MaxPayloadBytes)
	}

	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return false, err
	}

	ukey := uploadKey(prefixUpload, siteID, idempotencyKey)
	var prior *Upload
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(ukey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		prior = &Upload{}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, prior) })
	})
	if err != nil {
		return false, fmt.Errorf("checking idempotency key %q: %w", idempotencyKey, err)
	}

	if prior != nil {
		if prior.SHA256 != digest {
			result = "conflict"
			return false, fmt.Errorf("site %s key %q: %w", siteID, idempotencyKey, ErrKeyConflict)
		}
		result = "duplicate"
		return true, nil
	}

	p, err := wire.Decode(body)
	if err != nil {
		result = "invalid"
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	if p.Site != siteID {
		result = "invalid"
		return false, fmt.Errorf("%w: payload names site %q but arrived from site %q", ErrInvalid, p.Site, siteID)
	}

	if want := wire.Key(p.Site, p.Seq); want != idempotencyKey {
		result = "invalid"
		return false, fmt.Errorf("%w: idempotency key %q does not match the payload's %q", ErrInvalid, idempotencyKey, want)
	}

	up := Upload{
		Site: siteID, Key: idempotencyKey, Seq: p.Seq, Received: s.opts.Now().UTC(), SHA256: digest, Bytes: len(body),
		Events: p.Events, WithheldEvents: p.WithheldEvents, Cells: len(p.Cells), WithheldCells: p.WithheldCells,
		DeviceCells: len(p.DeviceCells),
	}

	meta, err := json.Marshal(up)
	if err != nil {
		return false, fmt.Errorf("encoding upload record: %w", err)
	}

	err = s.db.Update(func(txn *badger.Txn) error {
		for i := range p.Cells {
			c := &p.Cells[i]
			k := cellKey(&c.Dims, siteID)
			cur, err := getCell(txn, k)
			if err != nil {
				return err
			}
			if cur == nil {
				cur = &storedCell{Devices: c.Devices, Stats: wire.Stats{Bounds: c.Bounds, Counts: make([]uint64, len(c.Counts))}}
			}
			if err := cur.Merge(&c.Stats); err != nil {
				return fmt.Errorf("cell %d: %w", i, err)
			}
			cur.Devices = max(cur.Devices, c.Devices)
			v, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			if err := txn.Set(k, v); err != nil {
				return err
			}
		}
		for i := range p.DeviceCells {
			d := &p.DeviceCells[i]
			k := append(dimsKey(prefixDevice, &d.Dims, siteID), 0)
			k = append(k, d.Device...)
			cur, err := getCell(txn, k)
			if err != nil {
				return err
			}
			if cur == nil {
				cur = &storedCell{Stats: wire.Stats{Bounds: d.Bounds, Counts: make([]uint64, len(d.Counts))}}
			}
			if err := cur.Merge(&d.Stats); err != nil {
				return fmt.Errorf("device cell %d: %w", i, err)
			}
			v, err := json.Marshal(cur.Stats)
			if err != nil {
				return err
			}
			if err := txn.Set(k, v); err != nil {
				return err
			}
		}
		if err := txn.Set(uploadKey(prefixPayload, siteID, idempotencyKey), body); err != nil {
			return err
		}
		return txn.Set(ukey, meta)
	})
	if err != nil {
		return false, fmt.Errorf("storing upload %q from site %s: %w", idempotencyKey, siteID, err)
	}

	result = "stored"
	s.log.Info("stored telemetry upload", "site", siteID, "key", idempotencyKey, "events", p.Events, "cells", len(p.Cells))
	return false, nil
}

func getCell(txn *badger.Txn, k []byte) (*storedCell, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c storedCell
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
		return nil, fmt.Errorf("decoding stored cell: %w", err)
	}
	return &c, nil
}

// Uploads returns the accepted uploads of a site ("" for all sites), in
// key order.
func (s *Store) Uploads(ctx context.Context, siteID string) ([]Upload, error) {
	prefix := prefixUpload
	if siteID != "" {
		prefix = uploadKey(prefixUpload, siteID, "")
	}
	var out []Upload
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var u Upload
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &u) }); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing uploads: %w", err)
	}
	return out, nil
}

// Totals sums the accepted uploads of a site ("" for all sites): the raw
// device events they account for and how many of those were withheld.
func (s *Store) Totals(ctx context.Context, siteID string) (uploads int, events, withheld uint64, err error) {
	ups, err := s.Uploads(ctx, siteID)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, u := range ups {
		events += u.Events
		withheld += u.WithheldEvents
	}
	return len(ups), events, withheld, nil
}
