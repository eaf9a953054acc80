package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/gateway/telemetry"
)

const testSite = "site-0123456789abcdef"

// openDB opens a real badger DB in dir with the appliance's bounded-memory
// shape.
func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(dbOptions(dir))
	if err != nil {
		t.Fatalf("opening badger in %s: %v", dir, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dbOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithMemTableSize(8 << 20).
		WithBaseTableSize(2 << 20).
		WithValueLogFileSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// device is a simulated device identity.
func device(i int) telemetry.DeviceIdentity {
	return telemetry.DeviceIdentity{
		Manufacturer: "Acme Medical", Serial: fmt.Sprintf("SN-%06d", i), Model: "InfuseRite 3",
		SoftwareVersion: "2.1.0", DeviceClass: "infusion-pump",
	}
}

// headerIdentify maps the X-Test-Serial header to a device, standing in
// for the client-certificate lookup.
func headerIdentify(r *http.Request) (telemetry.DeviceIdentity, bool) {
	s := r.Header.Get("X-Test-Serial")
	if s == "" {
		return telemetry.DeviceIdentity{}, false
	}
	var i int
	if _, err := fmt.Sscanf(s, "SN-%d", &i); err != nil {
		return telemetry.DeviceIdentity{}, false
	}
	return device(i), true
}

// hub is a real analytics store behind a loopback HTTP server.
type hub struct {
	store *analytics.Store
	srv   *httptest.Server
	mu    sync.Mutex
	bods  [][]byte
}

func newHub(t testing.TB) *hub {
	t.Helper()
	h := &hub{}
	st, err := analytics.Open(openDB(t, t.TempDir()), analytics.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("opening analytics store: %v", err)
	}
	h.store = st
	ing := st.IngestHandler(func(r *http.Request) (string, bool) { return r.Header.Get("X-Test-Site"), true })
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		h.mu.Lock()
		h.bods = append(h.bods, buf.Bytes())
		h.mu.Unlock()
		r.Body = httpBody(buf.Bytes())
		ing.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hub) bodies() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bods...)
}

// siteTransport adds the site header the test hub reads.
type siteTransport struct{ site string }

func (s siteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Site", s.site)
	return http.DefaultTransport.RoundTrip(r)
}

func (h *hub) uploader(site string) telemetry.Uploader {
	return &telemetry.HTTPUploader{Client: &http.Client{Transport: siteTransport{site}, Timeout: 10 * time.Second}, URL: h.srv.URL + "/v1/telemetry"}
}

func (h *hub) totals(t testing.TB) (uploads int, events, withheld uint64) {
	t.Helper()
	u, e, w, err := h.store.Totals(context.Background(), "")
	if err != nil {
		t.Fatalf("hub totals: %v", err)
	}
	return u, e, w
}

func batchJSON(t testing.TB, id string, events ...map[string]any) []byte {
	t.Helper()
	m := map[string]any{"schema": 1, "events": events}
	if id != "" {
		m["batch_id"] = id
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ev(kind, name string, value float64) map[string]any {
	return map[string]any{"kind": kind, "name": name, "value": value}
}
