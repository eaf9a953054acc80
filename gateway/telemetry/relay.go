package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// RelayOptions configure a Relay.
type RelayOptions struct {
	// SiteID is the random site id issued at enrolment: the only name of
	// the site that goes upstream. Required.
	SiteID string
	// Period is the aggregation period (default 1h): whole seconds, at
	// least one.
	Period time.Duration
	// MinCellDevices is the small-cell threshold (default 11): a cell
	// covering fewer distinct devices is withheld.
	MinCellDevices int
	// PerDeviceManufacturers lists manufacturers for which the site's
	// config enables per-device forwarding: their devices' cells also go
	// upstream one device at a time, under random pseudonyms, and every
	// such upload is audited.
	PerDeviceManufacturers []string
	// Audit, if set, receives a "telemetry.export" record for every
	// delivered upload and a "telemetry.per_device" record for every
	// sealed upload that carries per-device cells.
	Audit audit.Recorder
	// RetryMin and RetryMax bound the upload retry backoff (defaults 1s
	// and 5m); retries never stop.
	RetryMin, RetryMax time.Duration
	// SealDelay is how long after a period ends the relay seals it, so
	// batches acknowledged at the boundary make it in (default 2s).
	SealDelay time.Duration
	// KeepPayloads is how long delivered payload bytes are kept next to
	// their export record (default 30 days; negative keeps them forever).
	KeepPayloads time.Duration
	// MaxSealBatches bounds the device batches folded into one upload
	// (default 1,000,000); a longer backlog is sealed into several.
	MaxSealBatches int
	// Logger (default slog.Default()) and Registerer (none when nil).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the relay's clock (default time.Now).
	Now func() time.Time
}

// Relay turns queued device batches into de-identified uploads: it seals
// closed periods into payloads that are persisted, with their idempotency
// keys, before the first attempt, and uploads them one at a time in
// sequence order until the hub acknowledges each.
type Relay struct {
	q    *Queue
	up   Uploader
	opts RelayOptions
	log  *slog.Logger
	m    *relayMetrics
	perD map[string]bool

	sealMu    sync.Mutex    // one seal at a time
	upSem     chan struct{} // one upload stream at a time; waiting honours ctx
	next      uint64        // next export sequence number (under sealMu)
	delivered atomic.Uint64 // last delivered export (written holding upSem)
	attempts  int           // attempts at the current head (under upSem)

	runMu    sync.Mutex
	cancel   context.CancelFunc
	runDone  chan struct{}
	closed   bool
	lastPrun time.Time
}

// NewRelay loads the export state from the queue's database.
func NewRelay(q *Queue, up Uploader, opts RelayOptions) (*Relay, error) {
	if q == nil || up == nil {
		return nil, errors.New("creating telemetry relay: queue and uploader are required")
	}

	if err := wire.ValidSite(opts.SiteID); err != nil {
		return nil, fmt.Errorf("creating telemetry relay: %w (set the enrolment site id)", err)
	}

	if opts.Period == 0 {
		opts.Period = time.Hour
	}

	if opts.Period < time.Second || opts.Period%time.Second != 0 {
		return nil, fmt.Errorf("creating telemetry relay: period %v: want whole seconds, at least 1s", opts.Period)
	}

	if opts.MinCellDevices == 0 {
		opts.MinCellDevices = 11
	}

	if opts.MinCellDevices < 1 {
		return nil, fmt.Errorf("creating telemetry relay: min cell devices %d: want at least 1", opts.MinCellDevices)
	}

	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}

	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Minute
	}

	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	if opts.SealDelay <= 0 {
		opts.SealDelay = 2 * time.Second
	}

	if opts.KeepPayloads == 0 {
		opts.KeepPayloads = 30 * 24 * time.Hour
	}

	if opts.MaxSealBatches <= 0 {
		opts.MaxSealBatches = 1_000_000
	}

	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	if opts.Now == nil {
		opts.Now = time.Now
	}

	m, err := newRelayMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("creating telemetry relay: %w", err)
	}

	r := &Relay{
		q: q, up: up, opts: opts, m: m, perD: make(map[string]bool), upSem: make(chan struct{}, 1),
		log: opts.Logger.With("component", "telemetry.relay"),
	}

	for _, mf := range opts.PerDeviceManufacturers {
		if !wire.ValidDim(mf) {
			return nil, fmt.Errorf("creating telemetry relay: per-device manufacturer %q is not a valid name", mf)
		}
		r.perD[mf] = true
	}

	err = q.db.View(func(txn *badger.Txn) error {
		var err error
		if r.next, err = getU64(txn, keyNextExport); err != nil {
			return err
		}
		d, err := getU64(txn, keyDelivered)
		r.delivered.Store(d)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating telemetry relay: reading export state: %w", err)
	}

	if r.next == 0 {
		r.next = 1
	}

	var pendingBytes int64
	err = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPayload})
		defer it.Close()
		for it.Seek(seqKey(prefixPayload, r.delivered.Load()+1)); it.Valid(); it.Next() {
			pendingBytes += it.Item().ValueSize()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("creating telemetry relay: reading pending uploads: %w", err)
	}

	q.mu.Lock()
	q.exportBytes = pendingBytes
	q.mu.Unlock()
	r.m.pending.Set(float64(r.next - 1 - r.delivered.Load()))
	return r, nil
}

// Run seals each period once it has closed and uploads pending payloads,
// retrying failed uploads forever with jittered exponential backoff. It
// returns nil when ctx ends or Close is called.
func (r *Relay) Run(ctx context.Context) error {
	r.runMu.Lock()
	if r.closed || r.cancel != nil {
		r.runMu.Unlock()
		return errors.New("running telemetry relay: already running or closed")
	}

	ctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.runDone = make(chan struct{})
	r.runMu.Unlock()
	defer close(r.runDone)
	defer cancel()

	backoff := r.opts.RetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		now := r.opts.Now()
		sealErr := r.seal(ctx, false)
		err := r.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil || sealErr != nil {
			wait = backoff/2 + rand.N(backoff/2+1)
			if sealErr != nil {
				r.log.Error("sealing telemetry upload failed; retrying", "err", sealErr, "retry_in", wait)
			}
			if err != nil {
				r.log.Warn("telemetry upload failed; retrying", "err", err, "retry_in", wait)
			}
			backoff = min(2*backoff, r.opts.RetryMax)
		} else {
			backoff = r.opts.RetryMin
			end := time.Unix(periodStart(now.UnixNano(), r.opts.Period), 0).Add(r.opts.Period)
			wait = end.Add(r.opts.SealDelay).Sub(now)
			if now.Sub(r.lastPrun) > time.Hour {
				if err := r.prune(now); err != nil {
					r.log.Warn("pruning telemetry payloads failed", "err", err)
				}
				r.lastPrun = now
			}
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// Close stops Run and waits for it to return. It is safe to call more than
// once; it does not close the queue.
func (r *Relay) Close() error {
	r.runMu.Lock()
	r.closed = true
	cancel, done := r.cancel, r.runDone
	r.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Flush seals everything queued now, the current partial period included,
// and uploads all pending payloads, retrying until they are delivered or
// ctx ends. When ctx ends first, Flush returns the last error. Nothing is
// lost: what is left goes after the next start.
func (r *Relay) Flush(ctx context.Context) error {
	if err := r.seal(ctx, true); err != nil {
		return fmt.Errorf("flushing telemetry: %w", err)
	}
	backoff := r.opts.RetryMin
	for {
		err := r.drain(ctx)
		if err == nil {
			return nil
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, r.opts.RetryMax)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("flushing telemetry: %w (pending uploads stay queued)", err)
		case <-t.C:
		}
	}
}

// Pending returns the number of sealed uploads not yet delivered and the
// number of queued batches not yet sealed.
func (r *Relay) Pending() (uploads uint64, batches int64) {
	r.sealMu.Lock()
	next := r.next
	r.sealMu.Unlock()
	return next - 1 - r.delivered.Load(), r.q.Stats().Batches
}

// seal folds unsealed queue entries into one payload per call round (all of
// them when flushing, else those of closed periods) and persists it
// together with the advanced seal watermark, so a batch is in exactly one
// upload.
func (r *Relay) seal(ctx context.Context, all bool) error {
	r.sealMu.Lock()
	defer r.sealMu.Unlock()
	limit := r.opts.MaxSealBatches
	for {
		n, err := r.sealOnce(ctx, all, limit)
		if errors.Is(err, badger.ErrTxnTooBig) && limit > 1 {
			// The payload does not fit one badger transaction: seal the
			// backlog in smaller uploads.
			limit /= 2
			continue
		}
		if err != nil || n < limit {
			return err
		}
	}
}

func (r *Relay) sealOnce(ctx context.Context, all bool, limit int) (int, error) {
	now := r.opts.Now()
	r.q.mu.Lock()
	sealed := r.q.sealed
	r.q.mu.Unlock()
	agg := newAggregator(r.opts.Period, r.perD)
	var keys [][]byte
	var bytes int64
	first, last := uint64(0), sealed
	err := r.q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Seek(entryKey(sealed + 1)); it.Valid() && agg.batches < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			seq := binary.BigEndian.Uint64(item.Key()[len(prefixEntry):])
			var rec record
			if err := item.Value(func(v []byte) error {
				var err error
				rec, err = decodeRecord(seq, v)
				return err
			}); err != nil {
				return err
			}
			if !all {
				end := time.Unix(periodStart(rec.Received, r.opts.Period), 0).Add(r.opts.Period)
				if end.After(now) {
					break
				}
			}
			agg.add(rec)
			keys = append(keys, item.KeyCopy(nil))
			bytes += item.EstimatedSize()
			if first == 0 {
				first = seq
			}
			last = seq
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading queued batches: %w", err)
	}

	if agg.batches == 0 {
		return 0, nil
	}

	if err := r.q.relaySpaceOK(); err != nil {
		return 0, err
	}

	seq := r.next
	p := agg.build(r.opts.SiteID, seq, r.opts.MinCellDevices)
	body, err := wire.Encode(p)
	if err != nil {
		return 0, err
	}

	sum := sha256.Sum256(body)
	rec := ExportRecord{
		Seq: seq, Key: wire.Key(p.Site, seq), Sealed: now.UTC(), SHA256: hex.EncodeToString(sum[:]), Bytes: len(body),
		Events: p.Events, WithheldEvents: p.WithheldEvents, Cells: len(p.Cells), WithheldCells: p.WithheldCells,
		DeviceCells: len(p.DeviceCells), PeriodFrom: time.Unix(agg.minPeriod, 0).UTC(), PeriodTo: time.Unix(agg.maxPeriod, 0).UTC(),
		QueueFrom: first, QueueTo: last, Batches: agg.batches,
	}

	for mf := range r.perD {
		for _, d := range p.DeviceCells {
			if d.Manufacturer == mf {
				rec.PerDevice = append(rec.PerDevice, mf)
				break
			}
		}
	}

	slices.Sort(rec.PerDevice)
	meta, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encoding export record: %w", err)
	}

	err = r.q.db.Update(func(txn *badger.Txn) error {
		for _, kv := range []struct{ k, v []byte }{
			{seqKey(prefixPayload, seq), body}, {seqKey(prefixExport, seq), meta},
			{keyNextExport, u64(seq + 1)}, {keySealed, u64(last)},
		} {
			if err := txn.Set(kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storing telemetry upload %d: %w", seq, classify(err))
	}

	r.next = seq + 1
	r.q.mu.Lock()
	r.q.sealed = last
	r.q.bytes -= bytes
	r.q.exportBytes += int64(len(body))
	r.q.entries -= int64(agg.batches)
	r.q.mu.Unlock()
	r.m.pending.Inc()
	r.m.lastSeal.Set(float64(now.Unix()))
	r.m.withheldCells.Add(float64(p.WithheldCells))
	r.m.deviceCells.Add(float64(len(p.DeviceCells)))
	r.log.Info("sealed telemetry upload", "seq", seq, "batches", agg.batches, "events", p.Events, "cells", len(p.Cells), "withheld_cells", p.WithheldCells)
	if len(rec.PerDevice) > 0 && r.opts.Audit != nil {
		ar := audit.Record{
			Time: now.UTC(), Actor: "gateway", Action: "telemetry.per_device", Subject: rec.Key,
			Details: map[string]string{"manufacturers": fmt.Sprint(rec.PerDevice), "device_cells": strconv.Itoa(rec.DeviceCells), "sha256": rec.SHA256},
		}
		if err := r.opts.Audit.Record(ctx, ar); err != nil {
			r.log.Error("auditing per-device telemetry failed", "key", rec.Key, "err", err)
		}
	}

	if err := r.q.deleteKeys(keys); err != nil {
		r.log.Warn("deleting sealed queue entries failed; they are removed at the next start", "err", err)
	}

	r.q.recheck()
	r.q.publish()
	return agg.batches, nil
}

// drain uploads pending payloads in sequence order until none is left or
// one fails.
func (r *Relay) drain(ctx context.Context) error {
	select {
	case r.upSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.upSem }()
	for {
		r.sealMu.Lock()
		next := r.next
		r.sealMu.Unlock()
		seq := r.delivered.Load() + 1
		if seq >= next {
			return nil
		}
		var rec ExportRecord
		var body []byte
		err := r.q.db.View(func(txn *badger.Txn) error {
			var err error
			if rec, err = getRecord(txn, seq); err != nil {
				return err
			}
			item, err := txn.Get(seqKey(prefixPayload, seq))
			if err != nil {
				return err
			}
			body, err = item.ValueCopy(nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("reading telemetry upload %d: %w", seq, err)
		}
		r.attempts++
		if err := r.up.Upload(ctx, rec.Key, body); err != nil {
			r.m.uploads.WithLabelValues("error").Inc()
			return fmt.Errorf("attempt %d: %w", r.attempts, err)
		}
		r.m.uploads.WithLabelValues("ok").Inc()
		if err := r.q.relaySpaceOK(); err != nil {
			return fmt.Errorf("recording delivery of %s: %w", rec.Key, err)
		}
		now := r.opts.Now().UTC()
		rec.Delivered = now
		meta, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding export record: %w", err)
		}
		err = r.q.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(seqKey(prefixExport, seq), meta); err != nil {
				return err
			}
			return txn.Set(keyDelivered, u64(seq))
		})
		if err != nil {
			return fmt.Errorf("recording delivery of %s: %w", rec.Key, classify(err))
		}
		r.delivered.Store(seq)
		r.q.mu.Lock()
		r.q.exportBytes -= int64(len(body))
		r.q.mu.Unlock()
		r.q.recheck()
		r.log.Info("delivered telemetry upload", "key", rec.Key, "attempts", r.attempts, "events", rec.Events, "sha256", rec.SHA256)
		r.attempts = 0
		r.m.exports.Inc()
		r.m.exportedEvents.Add(float64(rec.Events))
		r.m.pending.Dec()
		r.m.lastExport.Set(float64(now.Unix()))
		if r.opts.Audit != nil {
			ar := audit.Record{
				Time: now, Actor: "gateway", Action: "telemetry.export", Subject: rec.Key,
				Details: map[string]string{
					"sha256": rec.SHA256, "bytes": strconv.Itoa(rec.Bytes), "events": strconv.FormatUint(rec.Events, 10),
					"cells": strconv.Itoa(rec.Cells), "withheld_cells": strconv.Itoa(rec.WithheldCells),
					"device_cells": strconv.Itoa(rec.DeviceCells),
					"period_from":  rec.PeriodFrom.Format(time.RFC3339), "period_to": rec.PeriodTo.Format(time.RFC3339),
				},
			}
			if err := r.opts.Audit.Record(ctx, ar); err != nil {
				r.log.Error("auditing telemetry export failed", "key", rec.Key, "err", err)
			}
		}
	}
}
