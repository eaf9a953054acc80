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
			Help: "Stored blobs that failed re-verification and were removed.",
		}),
		fills: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_fills_in_progress",
			Help: "Fills currently being written.",
		}),
		unverified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_blob_unverified_blobs",
			Help: "Stored blobs waiting for re-verification after an unclean shutdown.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.bytes, m.blobs, m.evictions, m.verifyFailures, m.fills, m.unverified} {
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
