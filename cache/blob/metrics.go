package blob

import "github.com/prometheus/client_golang/prometheus"

// metrics are the store's Prometheus collectors.
type metrics struct {
	reg            prometheus.Registerer
	registered     []prometheus.Collector
	bytes          prometheus.Gauge
	blobs          prometheus.Gauge
	evictions      prometheus.Counter
	verifyFailures prometheus.Counter
	fills          prometheus.Gauge
	unverified     prometheus.Gauge
	scrubbedBytes  prometheus.Counter
	scrubFailures  prometheus.Counter
	scrubPasses    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_stored_bytes",
			Help: "Bytes of committed blobs in the blob store.",
		}),
		blobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_blobs",
			Help: "Number of committed blobs in the blob store.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_blob_evictions_total",
			Help: "Blobs evicted to stay under the size bound or the filesystem's free space.",
		}),
		verifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_blob_verification_failures_total",
			Help: "Stored blobs that failed re-verification after an unclean shutdown or by the scrub, and were removed.",
		}),
		fills: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_fills_in_progress",
			Help: "Fills currently being written.",
		}),
		unverified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_unverified_blobs",
			Help: "Stored blobs waiting for re-verification after an unclean shutdown.",
		}),
		scrubbedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_blob_scrubbed_bytes_total",
			Help: "Bytes of committed blobs read and hashed by the scrub.",
		}),
		scrubFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_blob_scrub_failures_total",
			Help: "Committed blobs that failed the scrub's hash or length check and were removed; also counted in wardgate_blob_verification_failures_total.",
		}),
		scrubPasses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_blob_scrub_passes_total",
			Help: "Scrub passes that reached the last committed blob.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.bytes, m.blobs, m.evictions, m.verifyFailures, m.fills, m.unverified,
		m.scrubbedBytes, m.scrubFailures, m.scrubPasses} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, err
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister removes the collectors, so that a store reopened in the same
// process can register again.
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

func (m *metrics) setStored(bytes int64, blobs int) {
	m.bytes.Set(float64(bytes))
	m.blobs.Set(float64(blobs))
}
