package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// eventLog records browser events for a test.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) find(kind, serial string) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind && (serial == "" || e.Device.Serial == serial) {
			return e, true
		}
	}
	return Event{}, false
}

func (l *eventLog) count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// browserHarness is a browser feeding a real inventory, running in the
// gateway namespace on the given VLANs.
type browserHarness struct {
	inv     *Inventory
	browser *Browser
	events  *eventLog
	clock   *fakeClock
	reg     *prometheus.Registry
}

// metricSum returns the sum of the series of the named metric whose
// labels include the given name, value pairs.
func (h *browserHarness) metricSum(t testing.TB, name string, labelPairs ...string) float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1]
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// logMetrics writes the browser's counters to the test log.
func (h *browserHarness) logMetrics(t testing.TB) {
	t.Helper()
	families, _ := h.reg.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			t.Logf("%s%v %v", f.GetName(), labels, m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
	}
}

// testLogger returns a logger that writes to the test log when
// WARDGATE_TEST_LOG is set, and discards otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("WARDGATE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startBrowser starts a browser on vlans. configure, when non-nil,
// adjusts the options before NewBrowser; its Inventory, when set, wraps
// the real inventory.
func startBrowser(t testing.TB, vlans []*vlan, clock *fakeClock, configure func(*BrowserOptions, *Inventory)) *browserHarness {
	t.Helper()
	h := &browserHarness{events: &eventLog{}, clock: clock, reg: prometheus.NewRegistry()}
	invOpts := InventoryOptions{StaleAfter: time.Hour, RetireAfter: 24 * time.Hour, Registerer: h.reg}
	if clock != nil {
		invOpts.Clock = clock.Now
	}
	inv, err := OpenInventory(openTestDB(t), invOpts)
	if err != nil {
		t.Fatalf("OpenInventory: %v", err)
	}
	t.Cleanup(func() { inv.Close() })
	h.inv = inv
	var names []string
	for _, v := range vlans {
		names = append(names, v.gwIf)
	}
	opts := BrowserOptions{
		Interfaces: names, Inventory: inv, QueryInterval: time.Minute, QueryWindow: 500 * time.Millisecond,
		OnEvent: h.events.add, Logger: testLogger(t), Registerer: h.reg,
	}
	if clock != nil {
		opts.Clock = clock.Now
	}
	if configure != nil {
		configure(&opts, inv)
	}
	b, err := NewBrowser(opts)
	if err != nil {
		t.Fatalf("NewBrowser: %v", err)
	}
	h.browser = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			h.logMetrics(t)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Browser.Run: %v", err)
		}
		b.Close()
	})
	return h
}

// waitFor polls cond until it returns true or timeout passes, then fails
// with cond's last description of what it is still waiting for.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDevices waits until the inventory holds at least n devices.
func (h *browserHarness) waitDevices(t testing.TB, n int, timeout time.Duration) []Device {
	t.Helper()
	var devices []Device
	waitFor(t, timeout, func() (bool, string) {
		var err error
		devices, err = h.inv.List(context.Background(), Filter{})
		if err != nil {
			return false, err.Error()
		}
		return len(devices) >= n, fmt.Sprintf("inventory has %d devices, want %d", len(devices), n)
	})
	return devices
}

// waitState waits until the device reaches state.
func (h *browserHarness) waitState(t testing.TB, mf, sn string, state State, timeout time.Duration) Device {
	t.Helper()
	var d Device
	waitFor(t, timeout, func() (bool, string) {
		var err error
		d, err = h.inv.Get(context.Background(), mf, sn)
		if err != nil {
			return false, err.Error()
		}
		return d.State == state, fmt.Sprintf("%s/%s is %s, want %s", mf, sn, d.State, state)
	})
	return d
}

func testDevice(v *vlan, n int, serial string) SimulatedDevice {
	return SimulatedDevice{
		Instance: fmt.Sprintf("Infusion Pump %s", serial),
		Info: DeviceInfo{
			SchemaVersion: 1, Manufacturer: "Acme Medical", Model: "InfuMax 300", Serial: serial, Version: "4.2.1",
			HardwareRevision: "C", DeviceClass: "infusion-pump", APIPort: 8443, InClinicalUse: n%2 == 0, InMaintenance: n%3 == 0,
		},
		Address: v.hostAddr(10 + n),
	}
}
