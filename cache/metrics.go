package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

type mirrorMetrics struct {
	refreshes      *prometheus.CounterVec
	panics         prometheus.Counter
	expires        prometheus.Gauge
	alert          prometheus.Gauge
	targets        prometheus.Gauge
	targetBytes    prometheus.Counter
	targetFailures prometheus.Counter
	fills          prometheus.Counter
	resumes        prometheus.Counter
	restarts       prometheus.Counter
	truncated      prometheus.Counter
	stalls         prometheus.Counter
	followers      prometheus.Counter
	served         *prometheus.CounterVec
}

func newMirrorMetrics(reg prometheus.Registerer, name string, m *Mirror) (*mirrorMetrics, error) {
	labels := prometheus.Labels{"repository": name}
	counter := func(n, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: n, Help: help, ConstLabels: labels})
	}
	gauge := func(n, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: n, Help: help, ConstLabels: labels})
	}
	mm := &mirrorMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tuf_refreshes_total", Help: "TUF refreshes, by result.", ConstLabels: labels,
		}, []string{"result"}),
		panics:         counter("wardgate_tuf_verifier_panics_total", "Refreshes refused because go-tuf panicked on upstream metadata."),
		expires:        gauge("wardgate_tuf_timestamp_expiry_seconds", "Unix time at which the trusted timestamp expires."),
		alert:          gauge("wardgate_tuf_expiry_alert", "1 while the trusted metadata expires within the warning period or has expired."),
		targets:        gauge("wardgate_tuf_targets", "Verified targets in the mirror."),
		targetBytes:    counter("wardgate_tuf_target_fetched_bytes_total", "Target bytes received from upstream."),
		targetFailures: counter("wardgate_tuf_target_failures_total", "Upstream fills that failed or were refused for a wrong length or hash."),
		fills:          counter("wardgate_tuf_target_fills_total", "Upstream fills started (one per uncached target, however many devices ask)."),
		resumes:        counter("wardgate_tuf_target_resumes_total", "Upstream requests that continue an interrupted fill."),
		restarts:       counter("wardgate_tuf_target_restarts_total", "Fills restarted from byte zero because upstream ignored or mis-answered Range."),
		truncated:      counter("wardgate_tuf_target_truncated_total", "Upstream target bodies that ended early."),
		stalls:         counter("wardgate_tuf_target_stalls_total", "Upstream target bodies abandoned for delivering below the minimum rate."),
		followers:      counter("wardgate_mirror_fill_followers_total", "Device downloads served while the upstream fill was still running."),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_mirror_requests_total", Help: "Mirror files served to devices, by kind.", ConstLabels: labels,
		}, []string{"kind"}),
	}
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wardgate_tuf_target_fills_running", Help: "Upstream fills in progress.", ConstLabels: labels,
	}, func() float64 {
		m.fillMu.Lock()
		defer m.fillMu.Unlock()
		return float64(len(m.running))
	})
	for _, c := range []prometheus.Collector{mm.refreshes, mm.panics, mm.expires, mm.alert, mm.targets, mm.targetBytes,
		mm.targetFailures, mm.fills, mm.resumes, mm.restarts, mm.truncated, mm.stalls, mm.followers, mm.served, running} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mm, nil
}
