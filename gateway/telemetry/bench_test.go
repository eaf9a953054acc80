package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/telemetry"
)

const benchBatch = 100 // events per device batch

func benchBody(b *testing.B, device, n int) []byte {
	b.Helper()
	evs := make([]map[string]any, benchBatch)
	for i := range evs {
		switch i % 4 {
		case 0:
			evs[i] = ev("counter", "power_cycles", 1)
		case 1:
			evs[i] = ev("health", "battery_pct", float64(i%100))
		case 2:
			evs[i] = ev("runtime", "pump", 0.25)
		default:
			evs[i] = ev("error", fmt.Sprintf("E-%d", i%7), 1)
		}
	}
	return batchJSON(b, fmt.Sprintf("d%d-%d", device, n), evs...)
}

// BenchmarkDurableIngest measures device batches of 100 events posted by
// concurrent devices over loopback HTTP to the real handler and queue on a
// synced badger (SyncWrites): each response comes after fsync. It reports
// acknowledged events per second and the p99 acknowledgement latency.
func BenchmarkDurableIngest(b *testing.B) {
	for _, devices := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			db := openDB(b, b.TempDir())
			q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{MaxBytes: 4 << 30, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { q.Close() })
			srv := httptest.NewServer(telemetry.NewIngestHandler(q, headerIdentify, telemetry.IngestOptions{RatePerDevice: 1e9, Burst: 1e9, Logger: quietLogger()}))
			b.Cleanup(srv.Close)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: devices}}
			bodies := make([][]byte, devices)
			for d := range bodies {
				bodies[d] = benchBody(b, d, 0)
			}
			var next atomic.Int64
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for d := range devices {
				wg.Add(1)
				go func() {
					defer wg.Done()
					serial := fmt.Sprintf("SN-%06d", d)
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(bodies[d]))
						req.Header.Set("X-Test-Serial", serial)
						req.Header.Set("Content-Type", "application/json")
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("got %d, want 200", resp.StatusCode)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(len(lat)*benchBatch)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ack_ms")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ack_ms")
			}
		})
	}
}

// BenchmarkQueueAppend measures the queue alone: concurrent Appends of 100
// events, each returning after its group commit is synced.
func BenchmarkQueueAppend(b *testing.B) {
	db := openDB(b, b.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{MaxBytes: 4 << 30, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	evs := make([]telemetry.Event, benchBatch)
	for i := range evs {
		evs[i] = telemetry.Event{Kind: telemetry.KindCounter, Name: "power_cycles", Value: 1}
	}
	var n atomic.Int64
	b.SetParallelism(32)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		dev := device(int(n.Add(1)))
		for pb.Next() {
			if _, err := q.Append(context.Background(), dev, telemetry.Batch{Events: evs}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "events/s")
}
