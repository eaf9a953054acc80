package telemetry_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/telemetry"
)

// snapshot returns every key and value under the queue's and export
// record's prefixes.
func snapshot(t *testing.T, db *badger.DB) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type ingestFixture struct {
	db  *badger.DB
	q   *telemetry.Queue
	srv *httptest.Server
}

func newIngest(t *testing.T, qo telemetry.QueueOptions, io telemetry.IngestOptions) *ingestFixture {
	t.Helper()
	db := openDB(t, t.TempDir())
	qo.Logger = quietLogger()
	q, err := telemetry.OpenQueue(db, qo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	io.Logger = quietLogger()
	srv := httptest.NewServer(telemetry.NewIngestHandler(q, headerIdentify, io))
	t.Cleanup(srv.Close)
	return &ingestFixture{db: db, q: q, srv: srv}
}

type response struct {
	status     int
	retryAfter string
	body       string
}

func (f *ingestFixture) post(t *testing.T, serial, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/telemetry", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if serial != "" {
		req.Header.Set("X-Test-Serial", serial)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
}

func TestIngestRejectsBadInputAndStoresNothing(t *testing.T) {
	f := newIngest(t, telemetry.QueueOptions{}, telemetry.IngestOptions{MaxBodyBytes: 4096, MaxEvents: 5})
	// One accepted batch first, so the device already has a pseudonym and
	// the snapshot below is not trivially empty.
	if a := f.post(t, "SN-000001", "application/json", batchJSON(t, "ok", ev("counter", "c", 1))); a.status != 200 {
		t.Fatalf("valid batch: got %d %s, want 200", a.status, a.body)
	}
	tests := []struct {
		name        string
		serial      string
		contentType string
		body        string
		want        int
	}{
		{"no device identity", "", "application/json", `{"events":[{"kind":"counter","name":"c"}]}`, 401},
		{"wrong content type", "SN-000001", "text/plain", `{"events":[{"kind":"counter","name":"c"}]}`, 415},
		{"malformed json", "SN-000001", "application/json", `{"events":[{"kind":`, 400},
		{"oversized body", "SN-000001", "application/json", `{"events":[{"kind":"counter","name":"c"}],"pad":"` + strings.Repeat("x", 5000) + `"}`, 413},
		{"too many events", "SN-000001", "application/json", `{"events":[` + strings.Repeat(`{"kind":"counter","name":"c"},`, 5) + `{"kind":"counter","name":"c"}]}`, 413},
		{"value out of range", "SN-000001", "application/json", `{"events":[{"kind":"health","name":"battery_pct","value":1000}]}`, 422},
		{"hostile name", "SN-000001", "application/json", `{"events":[{"kind":"counter","name":"x\u0000y"}]}`, 422},
		{"deep nesting", "SN-000001", "application/json", `{"events":[{"kind":"counter","name":"c","value":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}]}`, 400},
		{"new device with bad batch", "SN-000099", "application/json", `{"events":[{"kind":"counter","name":"c","value":-5}]}`, 422},
	}
	before := snapshot(t, f.db)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.post(t, tt.serial, tt.contentType, []byte(tt.body))
			if a.status != tt.want {
				t.Fatalf("got %d %s, want %d", a.status, a.body, tt.want)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
				t.Errorf("response body: got %q, want a JSON error message", a.body)
			}
		})
	}
	if after := snapshot(t, f.db); len(after) != len(before) {
		t.Fatalf("stored keys: got %d after rejected batches, want %d as before", len(after), len(before))
	}
}

func TestIngestMethodAndForbidden(t *testing.T) {
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := telemetry.NewIngestHandler(q, func(*http.Request) (telemetry.DeviceIdentity, bool) { return telemetry.DeviceIdentity{}, false }, telemetry.IngestOptions{Logger: quietLogger()})
	tests := []struct {
		name   string
		method string
		tls    bool
		want   int
	}{
		{"GET", http.MethodGet, false, 405},
		{"no certificate", http.MethodPost, false, 401},
		{"unknown certificate", http.MethodPost, true, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/v1/telemetry", strings.NewReader(`{"events":[{"kind":"counter","name":"c"}]}`))
			if tt.tls {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("got %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestIngestDuplicateBatchCountsOnce(t *testing.T) {
	f := newIngest(t, telemetry.QueueOptions{}, telemetry.IngestOptions{})
	body := batchJSON(t, "dev-batch-7", ev("counter", "c", 1), ev("counter", "c", 2))
	for i, wantDup := range []bool{false, true, true} {
		a := f.post(t, "SN-000001", "application/json", body)
		var r telemetry.IngestResponse
		if err := json.Unmarshal([]byte(a.body), &r); err != nil || a.status != 200 {
			t.Fatalf("post %d: got %d %s, want 200", i, a.status, a.body)
		}
		if r.Duplicate != wantDup {
			t.Errorf("post %d: got duplicate %v, want %v", i, r.Duplicate, wantDup)
		}
	}
	// Another device may use the same batch id.
	if a := f.post(t, "SN-000002", "application/json", body); !strings.Contains(a.body, `"duplicate":false`) {
		t.Errorf("same batch id from another device: got %s, want a new batch", a.body)
	}
	if got := f.q.Stats().Batches; got != 2 {
		t.Fatalf("queued batches: got %d, want 2", got)
	}
}

func TestIngestRateLimit(t *testing.T) {
	f := newIngest(t, telemetry.QueueOptions{}, telemetry.IngestOptions{RatePerDevice: 0.001, Burst: 3, MaxEvents: 3})
	batch := batchJSON(t, "", ev("counter", "c", 1), ev("counter", "c", 1))
	if a := f.post(t, "SN-000001", "application/json", batch); a.status != 200 {
		t.Fatalf("first batch: got %d %s, want 200", a.status, a.body)
	}
	a := f.post(t, "SN-000001", "application/json", batch)
	if a.status != 429 || a.retryAfter == "" {
		t.Fatalf("second batch: got %d with Retry-After %q, want 429 with Retry-After", a.status, a.retryAfter)
	}
	if a := f.post(t, "SN-000002", "application/json", batch); a.status != 200 {
		t.Fatalf("other device: got %d %s, want 200 (limits are per device)", a.status, a.body)
	}
}

func TestIngestQueueFull503AndRecovers(t *testing.T) {
	var alerts []bool
	f := newIngest(t, telemetry.QueueOptions{MaxBytes: 2000, OnFull: func(full bool, _ error) { alerts = append(alerts, full) }}, telemetry.IngestOptions{})
	big := make([]map[string]any, 40)
	for i := range big {
		big[i] = ev("counter", "counter_with_a_long_name", 1)
	}
	accepted := 0
	var a response
	for range 20 {
		a = f.post(t, "SN-000001", "application/json", batchJSON(t, "", big...))
		if a.status != 200 {
			break
		}
		accepted++
	}
	if a.status != 503 || a.retryAfter == "" || accepted == 0 {
		t.Fatalf("filling the queue: got %d with Retry-After %q after %d batches, want 503 with Retry-After after some", a.status, a.retryAfter, accepted)
	}
	if len(alerts) == 0 || !alerts[0] {
		t.Fatalf("alerts: got %v, want a raised alert", alerts)
	}
	// The relay seals and exports the queue, which makes room again.
	h := newHub(t)
	r, err := telemetry.NewRelay(f.q, h.uploader(testSite), telemetry.RelayOptions{SiteID: testSite, MinCellDevices: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := f.post(t, "SN-000001", "application/json", batchJSON(t, "", big...)); a.status != 200 {
		t.Fatalf("after export: got %d %s, want 200", a.status, a.body)
	}
	if alerts[len(alerts)-1] {
		t.Errorf("alerts: got %v, want the alert cleared last", alerts)
	}
	if _, events, _ := h.totals(t); events != uint64(accepted*len(big)) {
		t.Errorf("hub events: got %d, want %d", events, accepted*len(big))
	}
}
