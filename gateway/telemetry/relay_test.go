package telemetry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

func httpBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func TestEndToEndFlushDeliversEveryEventOnce(t *testing.T) {
	h := newHub(t)
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	srv := httptest.NewServer(telemetry.NewIngestHandler(q, headerIdentify, telemetry.IngestOptions{Logger: quietLogger()}))
	t.Cleanup(srv.Close)
	r, err := telemetry.NewRelay(q, h.uploader(testSite), telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 3, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for i := range 5 {
		body := batchJSON(t, fmt.Sprintf("b%d", i), ev("counter", "power_cycles", 2), ev("health", "battery_pct", float64(50+i)))
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("X-Test-Serial", fmt.Sprintf("SN-%06d", i))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST batch %d: got %d %s, want 200", i, resp.StatusCode, msg)
		}
		sent += 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	_, events, withheld := h.totals(t)
	if events != uint64(sent) || withheld != 0 {
		t.Fatalf("hub totals: got events %d withheld %d, want %d and 0", events, withheld, sent)
	}
	rows, err := h.store.Query(ctx, analytics.Query{Kind: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Sum != 10 || rows[0].Devices != 5 {
		t.Fatalf("counter rows: got %+v, want one row with sum 10 over 5 devices", rows)
	}
}

// recordingUploader fails the first failures attempts, then passes uploads
// to next, and remembers every attempt.
type recordingUploader struct {
	mu       sync.Mutex
	failures int
	next     telemetry.Uploader
	keys     []string
	bodies   [][]byte
	ok       []string
}

func (u *recordingUploader) Upload(ctx context.Context, key string, body []byte) error {
	u.mu.Lock()
	u.keys = append(u.keys, key)
	u.bodies = append(u.bodies, append([]byte(nil), body...))
	fail := u.failures > 0
	if fail {
		u.failures--
	}
	u.mu.Unlock()
	if fail || u.next == nil {
		return errors.New("tunnel down")
	}
	if err := u.next.Upload(ctx, key, body); err != nil {
		return err
	}
	u.mu.Lock()
	u.ok = append(u.ok, key)
	u.mu.Unlock()
	return nil
}

type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memAudit) Record(_ context.Context, r audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return nil
}

func (m *memAudit) actions() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, r.Action)
	}
	return out
}

func appendN(t *testing.T, q *telemetry.Queue, dev telemetry.DeviceIdentity, n int) {
	t.Helper()
	evs := make([]telemetry.Event, n)
	for i := range evs {
		evs[i] = telemetry.Event{Kind: telemetry.KindCounter, Name: "c", Value: 1}
	}
	if _, err := q.Append(context.Background(), dev, telemetry.Batch{Events: evs}); err != nil {
		t.Fatal(err)
	}
}

func TestRelayKeyAndBytesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(dbOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	down := &recordingUploader{failures: 1 << 30}
	r, err := telemetry.NewRelay(q, down, telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, device(1), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush with the tunnel down: got nil, want an error")
	}
	cancel()
	appendN(t, q, device(2), 4)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	_ = r.Flush(ctx)
	cancel()
	q.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if len(down.keys) < 2 {
		t.Fatalf("attempts while down: got %d, want several", len(down.keys))
	}
	firstKey, firstBody := down.keys[0], down.bodies[0]
	for i, k := range down.keys {
		if k == firstKey && !bytes.Equal(down.bodies[i], firstBody) {
			t.Fatalf("attempt %d with key %s sent different bytes", i, k)
		}
	}

	// Restart: the same unsent payloads go with the same keys and bytes.
	db = openDB(t, dir)
	q, err = telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := newHub(t)
	up := &recordingUploader{next: h.uploader(testSite)}
	r, err = telemetry.NewRelay(q, up, telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{testSite + ":1", testSite + ":2"}; !slices.Equal(up.ok, want) {
		t.Fatalf("delivered keys: got %v, want %v", up.ok, want)
	}
	if up.keys[0] != firstKey || !bytes.Equal(up.bodies[0], firstBody) {
		t.Fatalf("after restart: got key %s (%d bytes), want %s with the bytes sent before", up.keys[0], len(up.bodies[0]), firstKey)
	}
	recs, err := r.Exports(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Delivered.IsZero() || recs[0].Events != 3 || recs[1].Events != 4 {
		t.Fatalf("export records: got %+v, want 2 delivered with 3 and 4 events", recs)
	}
	sum := sha256.Sum256(firstBody)
	if recs[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("export record hash: got %s, want the SHA-256 of the uploaded bytes", recs[0].SHA256)
	}
	if body, err := r.ExportPayload(context.Background(), 1); err != nil || !bytes.Equal(body, firstBody) {
		t.Errorf("ExportPayload(1): got %d bytes, %v; want the uploaded bytes", len(body), err)
	}
}

func TestRelayRetriesInOrderUntilDelivered(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := newHub(t)
	up := &recordingUploader{failures: 7, next: h.uploader(testSite)}
	r, err := telemetry.NewRelay(q, up, telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		appendN(t, q, device(i), i+1)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
		_ = r.Flush(ctx)
		cancel()
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{testSite + ":1", testSite + ":2", testSite + ":3"}
	if !slices.Equal(up.ok, want) {
		t.Fatalf("delivered: got %v, want %v in order", up.ok, want)
	}
	for i := 1; i < len(up.keys); i++ {
		if up.keys[i] < up.keys[i-1] {
			t.Fatalf("attempts out of order: %v", up.keys)
		}
	}
	if _, events, _ := h.totals(t); events != 6 {
		t.Fatalf("hub events: got %d, want 6", events)
	}
	if n, b := r.Pending(); n != 0 || b != 0 {
		t.Fatalf("pending: got %d uploads and %d batches, want none", n, b)
	}
}

func TestRunSealsClosedPeriods(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := newHub(t)
	r, err := telemetry.NewRelay(q, h.uploader(testSite), telemetry.RelayOptions{SiteID: testSite, Period: time.Second, MinCellDevices: 1, SealDelay: 10 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	appendN(t, q, device(1), 5)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, events, _ := h.totals(t); events == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not deliver the closed period within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run after Close: got %v, want nil", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPerDeviceForwardingIsAudited(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := newHub(t)
	aud := &memAudit{}
	r, err := telemetry.NewRelay(q, h.uploader(testSite), telemetry.RelayOptions{
		SiteID: testSite, MinCellDevices: 1, PerDeviceManufacturers: []string{"Acme Medical"}, Audit: aud, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	other := device(9)
	other.Manufacturer = "Globex"
	appendN(t, q, device(1), 2)
	appendN(t, q, other, 2)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	body := h.bodies()[0]
	var p wire.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.DeviceCells) != 1 || p.DeviceCells[0].Manufacturer != "Acme Medical" || len(p.DeviceCells[0].Device) != 16 {
		t.Fatalf("device cells: got %+v, want one for Acme Medical under a pseudonym", p.DeviceCells)
	}
	if bytes.Contains(body, []byte("SN-")) {
		t.Fatal("payload holds a serial number")
	}
	if got, want := aud.actions(), []string{"telemetry.per_device", "telemetry.export"}; !slices.Equal(got, want) {
		t.Fatalf("audit actions: got %v, want %v", got, want)
	}
}

func TestNewRelayRejectsBadOptions(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	tests := []struct {
		name string
		opts telemetry.RelayOptions
	}{
		{"no site", telemetry.RelayOptions{}},
		{"site with a dot", telemetry.RelayOptions{SiteID: "site.example.org"}},
		{"sub-second period", telemetry.RelayOptions{SiteID: testSite, Period: 1500 * time.Millisecond}},
		{"negative threshold", telemetry.RelayOptions{SiteID: testSite, MinCellDevices: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := telemetry.NewRelay(q, &recordingUploader{}, tt.opts); err == nil {
				t.Fatal("got nil error, want the option rejected")
			}
		})
	}
}

func TestSealSplitsLongBacklog(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := newHub(t)
	r, err := telemetry.NewRelay(q, h.uploader(testSite), telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, MaxSealBatches: 2, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		appendN(t, q, device(i), 1)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	uploads, events, _ := h.totals(t)
	if uploads != 3 {
		t.Errorf("uploads: got %d, want 3 (2+2+1 batches)", uploads)
	}
	if events != 5 {
		t.Errorf("events: got %d, want 5", events)
	}
}

// hangingUploader blocks every upload until its context ends.
type hangingUploader struct{ entered chan struct{} }

func (h *hangingUploader) Upload(ctx context.Context, _ string, _ []byte) error {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestFlushHonoursContextWhileRunUploads(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	up := &hangingUploader{entered: make(chan struct{}, 1)}
	r, err := telemetry.NewRelay(q, up, telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, device(1), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_ = r.Flush(ctx) // seals, and the hanging attempt times out
	cancel()
	<-up.entered // that attempt's signal
	go r.Run(context.Background())
	t.Cleanup(func() { r.Close() })
	<-up.entered // Run now holds the upload stream

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done <- r.Flush(ctx)
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Flush with a hanging tunnel: got nil, want an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Flush did not return after its context ended")
	}
}
