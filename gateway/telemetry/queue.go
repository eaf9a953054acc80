package telemetry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Key layout under the queue's "tq/" prefix.
var (
	prefixEntry  = []byte("tq/e/") // + seq (8 bytes big-endian) -> record
	prefixDevice = []byte("tq/d/") // + sha256(manufacturer, serial)[:16] -> pseudonym (8 bytes)
	prefixDedup  = []byte("tq/b/") // + pseudonym + batch id -> seq, with TTL
	keySealed    = []byte("tq/m/sealed")
)

// Errors Append returns; the ingest handler responds to them with 503 and
// Retry-After.
var (
	// ErrQueueFull means the queue holds its MaxBytes of unexported data.
	ErrQueueFull = errors.New("telemetry queue is full")
	// ErrNoSpace means the data directory has less free space than
	// MinFreeBytes, or a write failed for lack of space.
	ErrNoSpace = errors.New("no space left for the telemetry queue")
	// ErrClosed means the queue was closed.
	ErrClosed = errors.New("telemetry queue is closed")
)

// QueueOptions configure a Queue. The zero value is usable.
type QueueOptions struct {
	// MaxBytes bounds the unexported data (default 256 MiB): queued batches
	// plus sealed payloads not yet delivered. A batch that does not fit
	// gets ErrQueueFull.
	MaxBytes int64
	// Dir is the badger data directory; when set, Append rejects batches with
	// ErrNoSpace while the file system has less than MinFreeBytes free.
	// badger writes through memory-mapped, sparsely allocated files, so
	// writing into a file system with no room left would fault the whole
	// process: keep MinFreeBytes above a few memtables.
	Dir string
	// MinFreeBytes is the free-space reserve on Dir (default 64 MiB).
	MinFreeBytes int64
	// DedupWindow is how long (device, batch id) pairs are remembered so a
	// retried batch counts once (default 24h).
	DedupWindow time.Duration
	// MaxGroup bounds how many batches share one commit (default 256).
	MaxGroup int
	// OnFull, if set, is called when the queue starts rejecting batches
	// (full=true, with the reason) and when it accepts again. Use it to
	// raise and clear an alert. It must not block.
	OnFull func(full bool, reason error)
	// Logger receives state changes (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the queue's metrics (none when nil).
	Registerer prometheus.Registerer
	// Now is the clock that stamps received batches (default time.Now).
	Now func() time.Time
}

// AppendResult describes a stored batch.
type AppendResult struct {
	// Seq is the queue sequence number of the batch (of the first copy,
	// for a duplicate).
	Seq uint64
	// Duplicate is true when the device already sent this batch id within
	// the dedup window; nothing new was stored.
	Duplicate bool
}

// Queue is the durable telemetry queue: acknowledged device batches in
// badger, in arrival order, until the relay has sealed them into an export.
// Append batches concurrent callers into one badger commit (group commit),
// and returns only after that commit is synced to disk.
type Queue struct {
	db   *badger.DB
	opts QueueOptions
	log  *slog.Logger
	m    *queueMetrics

	reqs    chan *appendReq
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	pmu   sync.Mutex
	pseud map[[16]byte][8]byte

	// mu guards the fields below; next and sealed change only in the
	// writer and relay.
	mu      sync.Mutex
	next    uint64 // next sequence number to assign
	sealed  uint64 // highest sequence number sealed into an export
	bytes   int64  // stored bytes of unsealed entries
	entries int64
	// exportBytes counts sealed payloads not yet delivered: they share the
	// MaxBytes bound, so a long tunnel outage cannot fill the disk.
	exportBytes int64
	full        error // non-nil while rejecting
}

type appendReq struct {
	pseudo  [8]byte
	batchID string
	body    []byte
	events  int
	res     AppendResult
	err     error
	done    chan struct{}
}

// OpenQueue opens the queue stored in db under "tq/", removing entries
// already sealed into an export by an earlier run, and starts its writer.
// Close stops it; the caller keeps ownership of db.
func OpenQueue(db *badger.DB, opts QueueOptions) (*Queue, error) {
	if db == nil {
		return nil, errors.New("opening telemetry queue: db is nil")
	}

	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 256 << 20
	}

	if opts.MinFreeBytes <= 0 {
		opts.MinFreeBytes = 64 << 20
	}

	if opts.DedupWindow <= 0 {
		opts.DedupWindow = 24 * time.Hour
	}

	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 256
	}

	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	if opts.Now == nil {
		opts.Now = time.Now
	}

	m, err := newQueueMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("opening telemetry queue: %w", err)
	}

	q := &Queue{
		db: db, opts: opts, log: opts.Logger.With("component", "telemetry.queue"), m: m,
		reqs: make(chan *appendReq), closing: make(chan struct{}), done: make(chan struct{}),
		pseud: make(map[[16]byte][8]byte),
	}

	if err := q.load(); err != nil {
		return nil, fmt.Errorf("opening telemetry queue: %w", err)
	}

	m.limit.Set(float64(opts.MaxBytes))
	q.publish()
	go q.writer()
	return q, nil
}

func entryKey(seq uint64) []byte {
	k := make([]byte, len(prefixEntry)+8)
	copy(k, prefixEntry)
	binary.BigEndian.PutUint64(k[len(prefixEntry):], seq)
	return k
}

func dedupKey(pseudo [8]byte, batchID string) []byte {
	k := make([]byte, 0, len(prefixDedup)+8+len(batchID))
	k = append(k, prefixDedup...)
	k = append(k, pseudo[:]...)
	return append(k, batchID...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// load reads the seal watermark, counts unsealed entries and deletes sealed
// leftovers (their deletion after an earlier seal may have been cut short).
func (q *Queue) load() error {
	var stale [][]byte
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keySealed)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("reading seal watermark: %w", err)
		default:
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("seal watermark has %d bytes, want 8", len(v))
				}
				q.sealed = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		}
		q.next = q.sealed + 1
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			seq := binary.BigEndian.Uint64(item.Key()[len(prefixEntry):])
			if seq <= q.sealed {
				stale = append(stale, item.KeyCopy(nil))
				continue
			}
			q.bytes += item.EstimatedSize()
			q.entries++
			if seq >= q.next {
				q.next = seq + 1
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return q.deleteKeys(stale)
}

func (q *Queue) deleteKeys(keys [][]byte) error {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		err := q.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys[:n] {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("deleting exported queue entries: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// Close stops the writer; Appends in flight finish first and later ones
// get ErrClosed. It is safe to call more than once.
func (q *Queue) Close() error {
	q.once.Do(func() { close(q.closing) })
	<-q.done
	return nil
}

// Append stores one device batch and returns once it is synced to disk.
// ctx bounds the wait; when it ends first the batch may still be stored, so
// a device that retries should resend the same batch id.
func (q *Queue) Append(ctx context.Context, dev DeviceIdentity, b Batch) (AppendResult, error) {
	if len(b.Events) == 0 {
		return AppendResult{}, errors.New("appending telemetry batch: no events")
	}

	if err := dev.validate(); err != nil {
		return AppendResult{}, fmt.Errorf("appending telemetry batch: %w", err)
	}

	for _, e := range b.Events {
		if kindCodes[e.Kind] == 0 {
			return AppendResult{}, fmt.Errorf("appending telemetry batch: event kind %q is unknown", e.Kind)
		}
	}

	if err := q.rejecting(); err != nil {
		return AppendResult{}, err
	}

	pseudo, err := q.pseudonym(ctx, dev)
	if err != nil {
		return AppendResult{}, err
	}

	req := &appendReq{
		pseudo: pseudo, batchID: b.BatchID, events: len(b.Events), done: make(chan struct{}),
		body: encodeBody(deviceRef{Manufacturer: dev.Manufacturer, Model: dev.Model, Version: dev.SoftwareVersion, Class: dev.DeviceClass, Pseudonym: pseudo}, b.Events),
	}

	select {
	case q.reqs <- req:
	case <-q.closing:
		return AppendResult{}, ErrClosed
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}

	select {
	case <-req.done:
		return req.res, req.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

// rejecting returns the current rejection reason when the queue is known
// full, so a full queue rejects quickly. The writer re-checks every group.
func (q *Queue) rejecting() error {
	q.recheck()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.full
}

// pseudonym returns the device's random pseudonym, creating it on first use.
func (q *Queue) pseudonym(ctx context.Context, dev DeviceIdentity) ([8]byte, error) {
	h := sha256.Sum256([]byte(dev.Manufacturer + "\x00" + dev.Serial))
	var id [16]byte
	copy(id[:], h[:16])
	q.pmu.Lock()
	defer q.pmu.Unlock()
	if p, ok := q.pseud[id]; ok {
		return p, nil
	}

	key := append(append([]byte{}, prefixDevice...), id[:]...)
	var p [8]byte
	found := false
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("device pseudonym has %d bytes, want 8", len(v))
			}
			copy(p[:], v)
			found = true
			return nil
		})
	})
	if err != nil {
		return p, fmt.Errorf("reading device pseudonym: %w", err)
	}

	if !found {
		if err := q.spaceOK(); err != nil {
			return p, err
		}
		if _, err := rand.Read(p[:]); err != nil {
			return p, fmt.Errorf("creating device pseudonym: %w", err)
		}
		if err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(key, p[:]) }); err != nil {
			return p, fmt.Errorf("storing device pseudonym: %w", classify(err))
		}
	}

	if len(q.pseud) >= 1<<17 {
		clear(q.pseud)
	}

	q.pseud[id] = p
	return p, ctx.Err()
}

// classify maps a storage error caused by a full file system to ErrNoSpace.
func classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// spaceOK checks the free-space reserve of the data directory before
// device data is stored.
func (q *Queue) spaceOK() error { return q.spaceAtLeast(q.opts.MinFreeBytes) }

// relaySpaceOK checks half the reserve: the relay's writes are small and
// are what lets the queue drain, so they may use the other half.
func (q *Queue) relaySpaceOK() error { return q.spaceAtLeast(q.opts.MinFreeBytes / 2) }

func (q *Queue) spaceAtLeast(reserve int64) error {
	if q.opts.Dir == "" {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(q.opts.Dir, &st); err != nil {
		return fmt.Errorf("checking free space of %s: %w", q.opts.Dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < reserve {
		return fmt.Errorf("%w: %s has %d bytes free, the reserve is %d", ErrNoSpace, q.opts.Dir, free, reserve)
	}
	return nil
}

func (q *Queue) writer() {
	defer close(q.done)
	for {
		var first *appendReq
		select {
		case first = <-q.reqs:
		case <-q.closing:
			return
		}
		group := []*appendReq{first}
	collect:
		for len(group) < q.opts.MaxGroup {
			select {
			case r := <-q.reqs:
				group = append(group, r)
			default:
				break collect
			}
		}
		q.commitGroup(group)
		for _, r := range group {
			close(r.done)
		}
	}
}

// commitGroup stores as many requests of the group as fit, in one synced
// commit where badger allows (halving the group when a transaction would be
// too big).
func (q *Queue) commitGroup(group []*appendReq) {
	if err := q.spaceOK(); err != nil {
		q.setFull(err)
		for _, r := range group {
			r.err = err
		}
		return
	}

	q.mu.Lock()
	room := q.opts.MaxBytes - q.bytes - q.exportBytes
	q.mu.Unlock()
	var fit []*appendReq
	for _, r := range group {
		sz := int64(len(r.body) + 48)
		if sz > room {
			r.err = fmt.Errorf("%w: %d of %d bytes used", ErrQueueFull, q.opts.MaxBytes-room, q.opts.MaxBytes)
			continue
		}
		room -= sz
		fit = append(fit, r)
	}

	if len(fit) < len(group) {
		q.setFull(fmt.Errorf("%w: limit %d bytes", ErrQueueFull, q.opts.MaxBytes))
	}

	if len(fit) == 0 {
		return
	}

	start := time.Now()
	if err := q.commit(fit); err != nil {
		err = classify(err)
		if errors.Is(err, ErrNoSpace) {
			q.setFull(err)
		}
		q.log.Error("storing telemetry batches failed", "batches", len(fit), "err", err)
	}

	q.m.commitSeconds.Observe(time.Since(start).Seconds())
	q.m.groupSize.Observe(float64(len(fit)))
	if len(fit) == len(group) {
		q.setFull(nil)
	}

	q.publish()
}

// commit writes reqs in one transaction, splitting on ErrTxnTooBig.
func (q *Queue) commit(reqs []*appendReq) error {
	now := q.opts.Now().UnixNano()
	txn := q.db.NewTransaction(true)
	defer txn.Discard()
	seq := q.next
	var added int64
	var stored int64
	seen := make(map[string]uint64)
	type pending struct {
		r   *appendReq
		res AppendResult
	}

	results := make([]pending, 0, len(reqs))
	for _, r := range reqs {
		if r.batchID != "" {
			dk := dedupKey(r.pseudo, r.batchID)
			if s, ok := seen[string(dk)]; ok {
				results = append(results, pending{r, AppendResult{Seq: s, Duplicate: true}})
				continue
			}
			item, err := txn.Get(dk)
			if err == nil {
				var old uint64
				if err := item.Value(func(v []byte) error {
					if len(v) == 8 {
						old = binary.BigEndian.Uint64(v)
					}
					return nil
				}); err != nil {
					return q.failAll(reqs, err)
				}
				results = append(results, pending{r, AppendResult{Seq: old, Duplicate: true}})
				continue
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return q.failAll(reqs, err)
			}
			seen[string(dk)] = seq
			if err := txn.SetEntry(badger.NewEntry(dk, u64(seq)).WithTTL(q.opts.DedupWindow)); err != nil {
				return q.split(reqs, err)
			}
		}
		key := entryKey(seq)
		val := encodeRecord(now, r.body)
		if err := txn.Set(key, val); err != nil {
			return q.split(reqs, err)
		}
		added += int64(len(key) + len(val))
		stored++
		results = append(results, pending{r, AppendResult{Seq: seq}})
		seq++
	}

	if err := txn.Commit(); err != nil {
		if errors.Is(err, badger.ErrTxnTooBig) {
			return q.split(reqs, err)
		}
		return q.failAll(reqs, err)
	}

	q.mu.Lock()
	q.next = seq
	q.bytes += added
	q.entries += stored
	q.mu.Unlock()
	events := 0
	for _, p := range results {
		p.r.res = p.res
		if !p.res.Duplicate {
			events += p.r.events
		}
	}

	q.m.events.Add(float64(events))
	return nil
}

func (q *Queue) split(reqs []*appendReq, err error) error {
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return q.failAll(reqs, err)
	}
	if len(reqs) == 1 {
		return q.failAll(reqs, fmt.Errorf("batch of %d bytes does not fit one badger transaction: %w", len(reqs[0].body), err))
	}
	h := len(reqs) / 2
	err1 := q.commit(reqs[:h])
	err2 := q.commit(reqs[h:])
	return errors.Join(err1, err2)
}

func (q *Queue) failAll(reqs []*appendReq, err error) error {
	err = fmt.Errorf("storing telemetry batch: %w", classify(err))
	for _, r := range reqs {
		r.err = err
	}
	return err
}

// setFull records whether the queue rejects batches, logging and alerting
// on each change.
func (q *Queue) setFull(reason error) {
	q.mu.Lock()
	was := q.full
	q.full = reason
	q.mu.Unlock()
	switch {
	case reason != nil && was == nil:
		q.m.full.Set(1)
		q.log.Error("telemetry queue rejecting device batches", "err", reason)
		if q.opts.OnFull != nil {
			q.opts.OnFull(true, reason)
		}
	case reason == nil && was != nil:
		q.m.full.Set(0)
		q.log.Info("telemetry queue accepting device batches again")
		if q.opts.OnFull != nil {
			q.opts.OnFull(false, nil)
		}
	}
}

// recheck clears a rejection once room has returned. The relay calls it
// after releasing entries, and Append before storing.
func (q *Queue) recheck() {
	q.mu.Lock()
	full, room := q.full, q.bytes+q.exportBytes < q.opts.MaxBytes
	q.mu.Unlock()
	if full == nil {
		return
	}
	if errors.Is(full, ErrNoSpace) {
		if q.spaceOK() != nil {
			return
		}
	} else if !room {
		return
	}
	q.setFull(nil)
}

func (q *Queue) publish() {
	q.mu.Lock()
	b, n := q.bytes, q.entries
	q.mu.Unlock()
	q.m.bytes.Set(float64(b))
	q.m.entries.Set(float64(n))
}

// QueueStats is a snapshot of the queue's state.
type QueueStats struct {
	// Batches and Bytes count stored batches not yet sealed into an export.
	Batches int64
	Bytes   int64
	// ExportBytes counts sealed payloads not yet delivered.
	ExportBytes int64
	// MaxBytes is the configured bound.
	MaxBytes int64
	// Rejecting is the reason new batches are rejected, nil while they are
	// accepted.
	Rejecting error
}

// Stats returns a snapshot of the queue's state.
func (q *Queue) Stats() QueueStats {
	q.recheck()
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueStats{Batches: q.entries, Bytes: q.bytes, ExportBytes: q.exportBytes, MaxBytes: q.opts.MaxBytes, Rejecting: q.full}
}
