package discovery

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers c with reg, or returns the collector already
// registered under the same description, so that two components sharing a
// registerer (or one component opened twice) share their metrics. A nil
// reg registers nothing.
//
// NOTE: a second Inventory on the same registerer keeps the first one's
// device-count gauges, because a gauge function cannot be shared.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering metric: %w", err)
	}
	return c, nil
}

type inventoryMetrics struct {
	writes       prometheus.Counter
	touches      prometheus.Counter
	writeErrors  prometheus.Counter
	writeSeconds prometheus.Histogram
	events       *prometheus.CounterVec
}

func newInventoryMetrics(reg prometheus.Registerer, countState func(State) float64) (*inventoryMetrics, error) {
	m := &inventoryMetrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_discovery_inventory_writes_total",
			Help: "Device records written to the inventory.",
		}),
		touches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_discovery_inventory_touches_total",
			Help: "Sightings that changed only the last-seen time and were kept in memory instead of written.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_discovery_inventory_write_errors_total",
			Help: "Inventory transactions that failed.",
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wardgate_discovery_inventory_write_seconds",
			Help:    "Time to apply and commit one inventory write call, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_discovery_inventory_events_total",
			Help: "Device history events recorded, by kind.",
		}, []string{"kind"}),
	}
	var err error
	if m.writes, err = register(reg, m.writes); err != nil {
		return nil, err
	}
	if m.touches, err = register(reg, m.touches); err != nil {
		return nil, err
	}
	if m.writeErrors, err = register(reg, m.writeErrors); err != nil {
		return nil, err
	}
	if m.writeSeconds, err = register(reg, m.writeSeconds); err != nil {
		return nil, err
	}
	if m.events, err = register(reg, m.events); err != nil {
		return nil, err
	}
	for _, s := range []State{StateActive, StateDeparted, StateStale, StateRetired} {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "wardgate_discovery_inventory_devices",
			Help:        "Devices in the inventory, by lifecycle state.",
			ConstLabels: prometheus.Labels{"state": string(s)},
		}, func() float64 { return countState(s) })
		if _, err := register(reg, g); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type browserMetrics struct {
	packets      *prometheus.CounterVec
	sightings    *prometheus.CounterVec
	library      *prometheus.CounterVec
	foreign      *prometheus.CounterVec
	malformedTXT *prometheus.CounterVec
	cacheFull    *prometheus.CounterVec
	queries      *prometheus.CounterVec
	sendErrors   *prometheus.CounterVec
	cycleDevices *prometheus.GaugeVec
	pending      prometheus.Gauge
	dropped      prometheus.Counter
	writeErrors  prometheus.Counter
}

func newBrowserMetrics(reg prometheus.Registerer) (*browserMetrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wardgate_discovery_" + name, Help: help}, labels)
	}
	m := &browserMetrics{
		packets:      counter("packets_total", "mDNS packets read, by interface and result (response, query, malformed, wrong-port, off-link, other-interface).", "interface", "result"),
		sightings:    counter("sightings_total", "Device sightings queued for the inventory, by interface and source (listener, query).", "interface", "source"),
		library:      counter("library_results_total", "hashicorp/mdns results, by interface and outcome (accepted, foreign, off-link, malformed, after-goodbye).", "interface", "outcome"),
		foreign:      counter("foreign_records_total", "Records of other service types that were ignored, by interface.", "interface"),
		malformedTXT: counter("malformed_announcements_total", "Announcements whose TXT record does not follow the device schema, by interface.", "interface"),
		cacheFull:    counter("cache_full_total", "Records dropped because an interface's cache was full, by interface.", "interface"),
		queries:      counter("queries_total", "Queries sent, by interface and path (listener, query).", "interface", "path"),
		sendErrors:   counter("send_errors_total", "Failed sends and hashicorp/mdns queries, by interface.", "interface"),
		cycleDevices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wardgate_discovery_cycle_devices",
			Help: "Distinct devices heard in the last complete discovery cycle, by interface.",
		}, []string{"interface"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_discovery_pending_sightings",
			Help: "Sightings waiting to be written to the inventory.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_discovery_dropped_sightings_total",
			Help: "Sightings dropped because the pending buffer was full.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_discovery_observe_errors_total",
			Help: "Failed inventory writes of sighting batches.",
		}),
	}
	var err error
	for _, c := range []**prometheus.CounterVec{&m.packets, &m.sightings, &m.library, &m.foreign, &m.malformedTXT, &m.cacheFull, &m.queries, &m.sendErrors} {
		if *c, err = register(reg, *c); err != nil {
			return nil, err
		}
	}
	if m.cycleDevices, err = register(reg, m.cycleDevices); err != nil {
		return nil, err
	}
	if m.pending, err = register(reg, m.pending); err != nil {
		return nil, err
	}
	if m.dropped, err = register(reg, m.dropped); err != nil {
		return nil, err
	}
	if m.writeErrors, err = register(reg, m.writeErrors); err != nil {
		return nil, err
	}
	return m, nil
}
