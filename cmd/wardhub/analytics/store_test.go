package analytics

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

const site = "site-0123456789abcdef"

func openStore(t testing.TB) (*Store, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithMemTableSize(8 << 20).WithValueThreshold(64 << 10).
		WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := Open(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

var hour = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func cell(period time.Time, model, version string, devices int, values ...float64) wire.Cell {
	c := wire.Cell{
		Dims:    wire.Dims{Period: period, Manufacturer: "Acme", Model: model, Version: version, DeviceClass: "pump", Kind: "counter", Name: "c"},
		Devices: devices,
		Stats:   wire.Stats{Bounds: []float64{1, 10}, Counts: make([]uint64, 3)},
	}
	for i, v := range values {
		if i == 0 {
			c.Min, c.Max = v, v
		}
		c.Min, c.Max = min(c.Min, v), max(c.Max, v)
		c.Events++
		c.Sum += v
		switch {
		case v <= 1:
			c.Counts[0]++
		case v <= 10:
			c.Counts[1]++
		default:
			c.Counts[2]++
		}
	}
	return c
}

func payload(t testing.TB, seq uint64, cells ...wire.Cell) []byte {
	t.Helper()
	p := &wire.Payload{Format: wire.Format, Version: wire.Version, Site: site, Seq: seq, PeriodSeconds: 3600, MinCellDevices: 1, Cells: cells}
	for _, c := range cells {
		p.Events += c.Events
	}
	b, err := wire.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIngestDeduplicates(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	body := payload(t, 1, cell(hour, "M1", "1.0", 3, 1, 2, 3))
	for i, want := range []bool{false, true, true} {
		dup, err := s.Ingest(ctx, site, wire.Key(site, 1), body)
		if err != nil || dup != want {
			t.Fatalf("ingest %d: got duplicate %v, %v; want %v", i, dup, err, want)
		}
	}
	other := payload(t, 1, cell(hour, "M1", "1.0", 3, 5))
	if _, err := s.Ingest(ctx, site, wire.Key(site, 1), other); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("same key, other bytes: got %v, want ErrKeyConflict", err)
	}
	n, events, _, err := s.Totals(ctx, site)
	if err != nil || n != 1 || events != 3 {
		t.Fatalf("totals: got %d uploads, %d events, %v; want 1 and 3", n, events, err)
	}
	rows, err := s.Query(ctx, Query{})
	if err != nil || len(rows) != 1 || rows[0].Sum != 6 || rows[0].Events != 3 {
		t.Fatalf("rows: got %+v, %v; want one row with sum 6 over 3 events", rows, err)
	}
}

func TestIngestRejectsInvalidAndStoresNothing(t *testing.T) {
	s, db := openStore(t)
	ctx := context.Background()
	good := cell(hour, "M1", "1.0", 3, 1)
	mutate := func(f func(p *wire.Payload)) []byte {
		p := &wire.Payload{Format: wire.Format, Version: wire.Version, Site: site, Seq: 1, PeriodSeconds: 3600, MinCellDevices: 1, Events: 1, Cells: []wire.Cell{good}}
		f(p)
		b, _ := json.Marshal(p)
		return b
	}
	tests := []struct {
		name string
		site string
		key  string
		body []byte
	}{
		{"not json", site, wire.Key(site, 1), []byte("{")},
		{"unknown field", site, wire.Key(site, 1), []byte(strings.Replace(string(mutate(func(*wire.Payload) {})), `"format"`, `"serial":"SN1","format"`, 1))},
		{"wrong format", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Format = "other" })},
		{"future version", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Version = 2 })},
		{"other site in payload", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Site = "site-ffffffffffff" })},
		{"key for another seq", site, wire.Key(site, 2), mutate(func(*wire.Payload) {})},
		{"bad site id", "a b", "a b:1", mutate(func(*wire.Payload) {})},
		{"empty key", site, "", mutate(func(*wire.Payload) {})},
		{"events do not add up", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Events = 5 })},
		{"cell below threshold", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.MinCellDevices = 11 })},
		{"histogram does not add up", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Cells[0].Counts = []uint64{0, 0, 0} })},
		{"period not aligned", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Cells[0].Period = hour.Add(time.Minute) })},
		{"control character", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Cells[0].Model = "M\x001" })},
		{"min above max", site, wire.Key(site, 1), mutate(func(p *wire.Payload) { p.Cells[0].Min = 9 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Ingest(ctx, tt.site, tt.key, tt.body); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	n := 0
	_ = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("an/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if n != 0 {
		t.Fatalf("stored keys after invalid uploads: got %d, want 0", n)
	}
}

func seed(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	uploads := [][]byte{
		payload(t, 1, cell(hour, "M1", "1.0", 12, 1, 2), cell(hour, "M1", "2.0", 11, 20), cell(hour, "M2", "1.0", 15, 4)),
		// The same period again (a gateway restart split it): devices take the larger count.
		payload(t, 2, cell(hour, "M1", "1.0", 5, 3)),
		payload(t, 3, cell(hour.Add(time.Hour), "M1", "1.0", 12, 7)),
	}
	for i, b := range uploads {
		if _, err := s.Ingest(ctx, site, wire.Key(site, uint64(i+1)), b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQuery(t *testing.T) {
	s, _ := openStore(t)
	seed(t, s)
	tests := []struct {
		name    string
		q       Query
		want    int // rows
		events  uint64
		sum     float64
		devices int
	}{
		{"everything", Query{}, 4, 6, 37, 12 + 11 + 15 + 12},
		{"by model", Query{Model: "M1"}, 3, 5, 33, 12 + 11 + 12},
		{"by version", Query{Model: "M1", Version: "1.0"}, 2, 4, 13, 24},
		{"by period", Query{From: hour, To: hour.Add(time.Hour)}, 3, 5, 30, 38},
		{"later period", Query{From: hour.Add(time.Hour)}, 1, 1, 7, 12},
		{"roll up versions", Query{Model: "M1", GroupBy: []string{DimPeriod, DimModel}}, 2, 5, 33, 35},
		{"by manufacturer only", Query{GroupBy: []string{DimManufacturer}}, 1, 6, 37, 50},
		{"no match", Query{Manufacturer: "Globex"}, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.Query(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var events uint64
			var sum float64
			devices := 0
			for _, r := range rows {
				events += r.Events
				sum += r.Sum
				devices += r.Devices
			}
			if len(rows) != tt.want || events != tt.events || sum != tt.sum || devices != tt.devices {
				t.Fatalf("got %d rows, %d events, sum %v, %d devices; want %d, %d, %v, %d\n%+v", len(rows), events, sum, devices, tt.want, tt.events, tt.sum, tt.devices, rows)
			}
		})
	}
	rows, _ := s.Query(context.Background(), Query{Model: "M1", Version: "1.0", To: hour.Add(time.Hour)})
	if r := rows[0]; r.Min != 1 || r.Max != 3 || r.Mean != 2 || r.Counts[0] != 1 || r.Counts[1] != 2 {
		t.Errorf("merged row: got %+v, want min 1, max 3, mean 2, histogram [1 2 0]", r)
	}
	if _, err := s.Query(context.Background(), Query{GroupBy: []string{"serial"}}); err == nil {
		t.Error("group by an unknown dimension: got nil error")
	}
}

func TestHandler(t *testing.T) {
	s, _ := openStore(t)
	seed(t, s)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	get := func(path string, accept string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	code, ct, body := get("/v1/analytics/cells?model=M1&version=1.0", "")
	var out struct{ Rows []Row }
	if err := json.Unmarshal([]byte(body), &out); code != 200 || !strings.HasPrefix(ct, "application/json") || err != nil || len(out.Rows) != 2 {
		t.Fatalf("JSON query: got %d %s %s, want 200 with 2 rows", code, ct, body)
	}
	code, ct, body = get("/v1/analytics/cells?model=M2&format=csv", "")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || !strings.HasPrefix(ct, "text/csv") || err != nil || len(recs) != 2 || recs[0][0] != "period" || recs[1][2] != "M2" {
		t.Fatalf("CSV query: got %d %s %q, want a header and one M2 row", code, ct, body)
	}
	if code, _, body := get("/v1/analytics/cells?from=2026-12-04T11:00:00Z", "text/csv"); code != 200 || strings.Count(body, "\n") != 2 {
		t.Fatalf("CSV by Accept: got %d %q, want a header and one row", code, body)
	}
	for _, bad := range []string{"?from=yesterday", "?format=xml", "?group=serial", "?from=2026-12-05&to=2026-12-04"} {
		if code, _, body := get("/v1/analytics/cells"+bad, ""); code != 400 || !strings.Contains(body, "error") {
			t.Errorf("GET cells%s: got %d %s, want 400 with an error", bad, code, body)
		}
	}
	code, _, body = get("/v1/analytics/uploads?site="+site, "")
	if code != 200 || strings.Count(body, `"key"`) != 3 {
		t.Fatalf("uploads: got %d %s, want 3 uploads", code, body)
	}
}

func TestWriteReport(t *testing.T) {
	s, _ := openStore(t)
	seed(t, s)
	for _, format := range []string{"table", "csv", "json"} {
		var buf bytes.Buffer
		if err := s.WriteReport(&buf, Query{Model: "M2"}, format); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if !strings.Contains(buf.String(), "M2") || strings.Contains(buf.String(), "M1") {
			t.Errorf("%s report: got %q, want only the M2 row", format, buf.String())
		}
	}
	if err := s.WriteReport(io.Discard, Query{}, "pdf"); err == nil {
		t.Error("unknown format: got nil error")
	}
}

func TestIngestHandler(t *testing.T) {
	s, _ := openStore(t)
	h := s.IngestHandler(func(r *http.Request) (string, bool) {
		v := r.Header.Get("X-Site")
		return v, v != ""
	})
	body := payload(t, 1, cell(hour, "M1", "1.0", 3, 1))
	tests := []struct {
		name   string
		method string
		site   string
		key    string
		body   []byte
		want   int
		dup    string
	}{
		{"stored", http.MethodPost, site, wire.Key(site, 1), body, 200, `"duplicate":false`},
		{"duplicate", http.MethodPost, site, wire.Key(site, 1), body, 200, `"duplicate":true`},
		{"conflict", http.MethodPost, site, wire.Key(site, 1), payload(t, 1, cell(hour, "M1", "1.0", 3, 2)), 409, ""},
		{"malformed", http.MethodPost, site, wire.Key(site, 2), []byte("{}"), 400, ""},
		{"no key", http.MethodPost, site, "", body, 400, ""},
		{"unknown gateway", http.MethodPost, "", wire.Key(site, 1), body, 401, ""},
		{"GET", http.MethodGet, site, wire.Key(site, 1), nil, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/v1/telemetry", bytes.NewReader(tt.body))
			if tt.site != "" {
				r.Header.Set("X-Site", tt.site)
			}
			if tt.key != "" {
				r.Header.Set("Idempotency-Key", tt.key)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.dup) {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, tt.want, tt.dup)
			}
		})
	}
}

// FuzzIngest checks that the hub never panics on a hostile upload, and that
// an accepted one is a duplicate the second time and adds up.
func FuzzIngest(f *testing.F) {
	f.Add(payload(f, 1, cell(hour, "M1", "1.0", 3, 1, 2)))
	f.Add(payload(f, 1, cell(hour, "M1", "1.0", 3, 1), cell(hour, "M2", "2.0", 4, 50)))
	f.Add([]byte(`{"format":"wardgate-telemetry","version":1,"site":"site-0123456789abcdef","seq":1,"period_seconds":3600,"min_cell_devices":1,"events":0,"withheld_events":0,"withheld_cells":0,"cells":[]}`))
	f.Add([]byte(`{}`))
	s, _ := openStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, derr := wire.Decode(body)
		key := wire.Key(site, 1)
		if derr == nil {
			key = wire.Key(p.Site, p.Seq)
		}
		dup, err := s.Ingest(context.Background(), site, key, body)
		if err != nil {
			if derr == nil && p.Site == site {
				if errors.Is(err, ErrKeyConflict) {
					return // an earlier input used the key
				}
				t.Fatalf("valid payload rejected: %v", err)
			}
			return
		}
		if derr != nil {
			t.Fatalf("accepted a payload the decoder rejects: %v", derr)
		}
		if again, err := s.Ingest(context.Background(), site, key, body); err != nil || !again {
			t.Fatalf("second ingest: got duplicate %v, %v; want true", again, err)
		}
		_ = dup
	})
}

func TestDeviceRows(t *testing.T) {
	s, _ := openStore(t)
	c := cell(hour, "M1", "1.0", 1, 4, 6)
	p := &wire.Payload{Format: wire.Format, Version: wire.Version, Site: site, Seq: 1, PeriodSeconds: 3600, MinCellDevices: 1,
		Events: 2, Cells: []wire.Cell{c}, DeviceCells: []wire.DeviceCell{{Dims: c.Dims, Device: "00112233aabbccdd", Stats: c.Stats}}}
	body, err := wire.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(context.Background(), site, wire.Key(site, 1), body); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DeviceRows(context.Background(), Query{Model: "M1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Device != "00112233aabbccdd" || rows[0].Site != site || rows[0].Sum != 10 {
		t.Fatalf("device rows: got %+v, want one row for the pseudonym with sum 10", rows)
	}
	if rows, _ := s.DeviceRows(context.Background(), Query{Model: "M2"}); len(rows) != 0 {
		t.Fatalf("device rows for another model: got %d, want 0", len(rows))
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/v1/analytics/devices?format=csv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "00112233aabbccdd") {
		t.Fatalf("GET devices: got %d %q, want the device row", resp.StatusCode, b)
	}
}
