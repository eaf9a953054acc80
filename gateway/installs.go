package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/gateway/audit"
)

// A device's report "installed" only makes an install pending: it counts
// as a success when the device checks in again running the new version.
// Pending installs are stored under "inst/DEVICE\x00TARGET".
const pendingPrefix = "inst/"

type pendingInstall struct {
	Target     string    `json:"target"`
	Version    string    `json:"version"`
	ReportedAt time.Time `json:"reported_at"`
}

func pendingKey(dev deviceIdentity, target string) []byte {
	return []byte(pendingPrefix + dev.key() + "\x00" + target)
}

func (g *Gateway) markPending(ctx context.Context, dev deviceIdentity, t cache.Target) error {
	p := pendingInstall{Target: t.Path, Version: t.Meta.Version, ReportedAt: time.Now().UTC()}
	data, _ := json.Marshal(p)
	return g.db.Update(func(txn *badger.Txn) error { return txn.Set(pendingKey(dev, t.Path), data) })
}

// confirmInstalls turns the device's pending installs of version into
// successes and queues their outcomes for the hub.
func (g *Gateway) confirmInstalls(ctx context.Context, dev deviceIdentity, version string) {
	prefix := []byte(pendingPrefix + dev.key() + "\x00")
	var done []pendingInstall
	err := g.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			var p pendingInstall
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				continue
			}
			if p.Version == version {
				done = append(done, p)
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		g.log.Error("confirming installs failed", "device", dev.key(), "err", err)
		return
	}
	for _, p := range done {
		g.recordAudit(ctx, audit.Record{Actor: "device:" + dev.key(), Action: "install.confirmed", Subject: dev.key(), Details: map[string]string{"target": p.Target, "version": p.Version}})
		g.outbox.enqueue(ctx, installResult{Site: g.siteID, Target: p.Target, Version: p.Version, Outcome: "succeeded"}, dev.key()+"/"+p.Target+"/succeeded")
	}
}

// installResult is the de-identified install outcome sent to the hub:
// it names the release and the outcome, never the device.
type installResult struct {
	Site    string `json:"site"`
	Target  string `json:"target"`
	Version string `json:"version"`
	Model   string `json:"model,omitempty"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// outbox is a durable queue of install outcomes for the hub, stored under
// "out/SEQ". Each entry keeps its idempotency key, so a resend after a
// lost answer is deduplicated by the hub.
type outbox struct {
	db     *badger.DB
	client *http.Client
	log    *slog.Logger
	wake   chan struct{}

	mu  sync.Mutex
	seq uint64
}

const outboxPrefix = "out/"

type outboxEntry struct {
	Key  string          `json:"key"`
	Body json.RawMessage `json:"body"`
}

func newOutbox(db *badger.DB, client *http.Client, log *slog.Logger) *outbox {
	o := &outbox{db: db, client: client, log: log.With("component", "outbox"), wake: make(chan struct{}, 1)}
	_ = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(outboxPrefix), Reverse: true})
		defer it.Close()
		it.Seek([]byte(outboxPrefix + "~"))
		if it.Valid() {
			o.seq, _ = strconv.ParseUint(string(it.Item().Key()[len(outboxPrefix):]), 10, 64)
		}
		return nil
	})
	return o
}

// enqueue stores an outcome durably. The key derives from the device and
// release, so a device that reports the same outcome twice is counted
// once by the hub. The device part is hashed so the hub never sees it.
func (o *outbox) enqueue(ctx context.Context, res installResult, dedup string) {
	body, _ := json.Marshal(res)
	e := outboxEntry{Key: hashKey(res.Site, dedup), Body: body}
	data, _ := json.Marshal(e)
	o.mu.Lock()
	o.seq++
	key := fmt.Sprintf("%s%020d", outboxPrefix, o.seq)
	o.mu.Unlock()
	if err := o.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), data) }); err != nil {
		o.log.Error("queueing install result failed", "err", err)
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		o.send(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.wake:
		}
	}
}

func (o *outbox) flush(ctx context.Context) { o.send(ctx) }

func (o *outbox) send(ctx context.Context) {
	type item struct {
		key []byte
		e   outboxEntry
	}
	var items []item
	_ = o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(outboxPrefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(items) < 100; it.Next() {
			var e outboxEntry
			if it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }) == nil {
				items = append(items, item{it.Item().KeyCopy(nil), e})
			}
		}
		return nil
	})
	for _, it := range items {
		if err := o.post(ctx, it.e); err != nil {
			if ctx.Err() == nil {
				o.log.Warn("sending install result failed; will retry", "err", err)
			}
			return
		}
		if err := o.db.Update(func(txn *badger.Txn) error { return txn.Delete(it.key) }); err != nil {
			o.log.Error("removing sent install result failed", "err", err)
			return
		}
	}
}

func (o *outbox) post(ctx context.Context, e outboxEntry) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://wardhub/v1/install-results", bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", e.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("hub returned " + resp.Status)
	}
	return nil
}
