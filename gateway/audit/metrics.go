package audit

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// storeCounters are the store's own counts, read by its collector.
type storeCounters struct {
	records     atomic.Uint64
	writeErrors atomic.Uint64
	pruned      atomic.Uint64
	heldBack    atomic.Int64
}

var (
	descRecords = prometheus.NewDesc("wardgate_audit_records_total",
		"Audit records appended to the chain since the gateway started.", nil, nil)
	descWriteErrors = prometheus.NewDesc("wardgate_audit_write_errors_total",
		"Audit records that could not be stored; each one is also logged at error level.", nil, nil)
	descHeadSeq = prometheus.NewDesc("wardgate_audit_head_sequence",
		"Sequence number of the newest audit record.", nil, nil)
	descPruned = prometheus.NewDesc("wardgate_audit_pruned_total",
		"Audit records removed by retention since the gateway started; every prune also appends an audit.prune record.", nil, nil)
	descHeldBack = prometheus.NewDesc("wardgate_audit_retention_held_back",
		"Audit records past their retention kept because the syslog forwarder has not delivered them.", nil, nil)
)

// Register adds the store's metrics to reg.
func (s *Store) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return reg.Register(storeCollector{s})
}

type storeCollector struct{ s *Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descWriteErrors
	ch <- descHeadSeq
	ch <- descPruned
	ch <- descHeldBack
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	m := &c.s.m
	ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(m.records.Load()))
	ch <- prometheus.MustNewConstMetric(descWriteErrors, prometheus.CounterValue, float64(m.writeErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descHeadSeq, prometheus.GaugeValue, float64(c.s.Head().Seq))
	ch <- prometheus.MustNewConstMetric(descPruned, prometheus.CounterValue, float64(m.pruned.Load()))
	ch <- prometheus.MustNewConstMetric(descHeldBack, prometheus.GaugeValue, float64(m.heldBack.Load()))
}
