package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/gateway/telemetry"
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
