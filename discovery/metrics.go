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
