package telemetry

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// BenchmarkUpstreamBytes aggregates one million device events (one hour,
// 400 devices of 4 models in 3 versions, 12 metrics) into the upload
// payload, and compares its size with the raw device batches that carried
// the same events. It reports both sizes and the reduction factor.
func BenchmarkUpstreamBytes(b *testing.B) {
	const total, perBatch, devices = 1_000_000, 100, 400
	metrics := []Event{
		{KindCounter, "power_cycles", 1}, {KindCounter, "screen_touches", 3}, {KindProcedure, "infusion.start", 1},
		{KindProcedure, "infusion.stop", 1}, {KindRuntime, "pump", 0.25}, {KindRuntime, "system", 0.5},
		{KindError, "E-1042", 1}, {KindError, "W-17", 1}, {KindHealth, "battery_pct", 0},
		{KindHealth, "temperature_c", 0}, {KindHealth, "storage_free_pct", 0}, {KindHealth, "signal_dbm", 0},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	hour := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var recs []record
	var rawBytes int
	for n := 0; n < total; n += perBatch {
		d := n / perBatch % devices
		var p [8]byte
		p[0], p[1] = byte(d), byte(d>>8)
		rec := record{Seq: uint64(n/perBatch + 1), Received: hour.Add(time.Duration(rng.Int64N(int64(time.Hour)))).UnixNano(),
			Device: deviceRef{Manufacturer: "Acme Medical", Model: fmt.Sprintf("InfuseRite %d", d%4), Version: fmt.Sprintf("2.%d.0", d%3), Class: "infusion-pump", Pseudonym: p}}
		raw := make([]map[string]any, perBatch)
		for i := range perBatch {
			e := metrics[rng.IntN(len(metrics))]
			if e.Kind == KindHealth {
				r := HealthMetrics[e.Name]
				e.Value = float64(int(r.Min + rng.Float64()*(r.Max-r.Min)))
			}
			rec.Events = append(rec.Events, e)
			raw[i] = map[string]any{"kind": e.Kind, "name": e.Name, "value": e.Value}
		}
		body, _ := json.Marshal(map[string]any{"schema": 1, "batch_id": fmt.Sprintf("d%d-b%d", d, n), "events": raw})
		rawBytes += len(body)
		recs = append(recs, rec)
	}
	b.ResetTimer()
	var out []byte
	for range b.N {
		a := newAggregator(time.Hour, nil)
		for _, r := range recs {
			a.add(r)
		}
		var err error
		if out, err = wire.Encode(a.build("site-0123456789abcdef", 1, 11)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p, err := wire.Decode(out)
	if err != nil || p.Events != total {
		b.Fatalf("payload: got %v events, %v; want %d", p.Events, err, total)
	}
	b.ReportMetric(float64(rawBytes), "raw_bytes")
	b.ReportMetric(float64(len(out)), "upstream_bytes")
	b.ReportMetric(float64(rawBytes)/float64(len(out)), "reduction_x")
	b.ReportMetric(float64(len(p.Cells)), "cells")
}

// BenchmarkDecodeBatch measures decoding and validating one device batch
// of 100 events.
func BenchmarkDecodeBatch(b *testing.B) {
	evs := make([]map[string]any, 100)
	for i := range evs {
		evs[i] = map[string]any{"kind": "health", "name": "battery_pct", "value": i % 100, "extra": "dropped"}
	}
	body, _ := json.Marshal(map[string]any{"schema": 1, "batch_id": "b-1", "events": evs})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for range b.N {
		if _, err := DecodeBatch(body, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
