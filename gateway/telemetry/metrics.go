package telemetry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers c with reg, reusing collectors already registered
// under the same names (so a restarted component keeps its series).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

type queueMetrics struct {
	bytes, entries, limit, full prometheus.Gauge
	events                      prometheus.Counter
	commitSeconds, groupSize    prometheus.Observer
}

func newQueueMetrics(reg prometheus.Registerer) (*queueMetrics, error) {
	m := &queueMetrics{}
	var err error
	g := func(name, help string) prometheus.Gauge {
		v, e := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
		err = errors.Join(err, e)
		return v
	}
	m.bytes = g("wardgate_telemetry_queue_bytes", "Bytes of acknowledged device batches not yet sealed into an export.")
	m.entries = g("wardgate_telemetry_queue_batches", "Acknowledged device batches not yet sealed into an export.")
	m.limit = g("wardgate_telemetry_queue_limit_bytes", "Configured bound of the telemetry queue.")
	m.full = g("wardgate_telemetry_queue_full", "1 while the telemetry queue rejects device batches (full queue or disk).")
	ev, e := register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "wardgate_telemetry_queue_events_total", Help: "Device events stored durably in the telemetry queue."}))
	err = errors.Join(err, e)
	m.events = ev
	cs, e := register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wardgate_telemetry_queue_commit_seconds", Help: "Duration of one synced group commit.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}))
	err = errors.Join(err, e)
	m.commitSeconds = cs
	gs, e := register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wardgate_telemetry_queue_group_batches", Help: "Device batches per group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}))
	err = errors.Join(err, e)
	m.groupSize = gs
	return m, err
}

type ingestMetrics struct {
	batches *prometheus.CounterVec
	events  prometheus.Counter
	dropped prometheus.Counter
	latency prometheus.Observer
}

func newIngestMetrics(reg prometheus.Registerer) (*ingestMetrics, error) {
	m := &ingestMetrics{}
	var err, e error
	m.batches, e = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wardgate_telemetry_ingest_batches_total", Help: "Device telemetry batches by result (stored, duplicate, empty, or the rejection reason)."}, []string{"result"}))
	err = errors.Join(err, e)
	m.events, e = register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "wardgate_telemetry_ingest_events_total", Help: "Device events acknowledged to devices."}))
	err = errors.Join(err, e)
	m.dropped, e = register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "wardgate_telemetry_ingest_dropped_events_total", Help: "Device events dropped because their kind or health metric is not on the allow-list."}))
	err = errors.Join(err, e)
	lat, e := register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wardgate_telemetry_ingest_ack_seconds", Help: "Time from request to durable acknowledgement of a device batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}))
	err = errors.Join(err, e)
	m.latency = lat
	return m, err
}

type relayMetrics struct {
	exports, exportedEvents, withheldCells, deviceCells prometheus.Counter
	uploads                                             *prometheus.CounterVec
	pending, lastExport, lastSeal                       prometheus.Gauge
}

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	m := &relayMetrics{}
	var err, e error
	c := func(name, help string) prometheus.Counter {
		v, e := register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
		err = errors.Join(err, e)
		return v
	}
	g := func(name, help string) prometheus.Gauge {
		v, e := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
		err = errors.Join(err, e)
		return v
	}
	m.exports = c("wardgate_telemetry_exports_total", "Telemetry uploads the hub has acknowledged.")
	m.exportedEvents = c("wardgate_telemetry_exported_events_total", "Device events accounted for by acknowledged uploads.")
	m.withheldCells = c("wardgate_telemetry_withheld_cells_total", "Aggregate cells withheld by small-cell or complementary suppression.")
	m.deviceCells = c("wardgate_telemetry_device_cells_total", "Per-device cells forwarded for manufacturers with per-device forwarding enabled.")
	m.uploads, e = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wardgate_telemetry_upload_attempts_total", Help: "Upload attempts by result (ok, error)."}, []string{"result"}))
	err = errors.Join(err, e)
	m.pending = g("wardgate_telemetry_exports_pending", "Sealed uploads waiting for the hub's acknowledgement.")
	m.lastExport = g("wardgate_telemetry_last_export_timestamp_seconds", "Unix time of the last upload the hub acknowledged.")
	m.lastSeal = g("wardgate_telemetry_last_seal_timestamp_seconds", "Unix time of the last sealed upload.")
	return m, err
}
