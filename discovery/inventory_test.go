package discovery

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// openTestDB opens a real badger DB in a temporary directory with the
// gateway's settings: synchronous writes and small memory tables.
func openTestDB(t testing.TB) *badger.DB {
	t.Helper()
	return openTestDBAt(t, t.TempDir())
}

func openTestDBAt(t testing.TB, dir string) *badger.DB {
	t.Helper()
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithMemTableSize(8 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(64 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatalf("opening badger in %s: %v", dir, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openTestInventory(t testing.TB, db *badger.DB, clock *fakeClock) *Inventory {
	t.Helper()
	inv, err := OpenInventory(db, InventoryOptions{
		StaleAfter: time.Hour, RetireAfter: 24 * time.Hour, Clock: clock.Now,
	})
	if err != nil {
		t.Fatalf("OpenInventory: %v", err)
	}
	t.Cleanup(func() { inv.Close() })
	return inv
}

func kinds(events []Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Kind
	}
	return out
}

func sighting(mf, sn, iface, instance, addr string, t time.Time) Sighting {
	s := Sighting{
		Info:      DeviceInfo{SchemaVersion: 1, Manufacturer: mf, Serial: sn, Model: "M1", Version: "1.0"},
		Interface: iface, Instance: instance, Time: t, Source: SourceListener,
	}
	if addr != "" {
		s.Addresses = []netip.Addr{netip.MustParseAddr(addr)}
	}
	return s
}

func mustObserve(t *testing.T, inv *Inventory, s Sighting) (Device, []Event) {
	t.Helper()
	d, events, err := inv.Observe(context.Background(), s)
	if err != nil {
		t.Fatalf("Observe(%s/%s on %s): %v", s.Info.Manufacturer, s.Info.Serial, s.Interface, err)
	}
	return d, events
}

func TestOpenInventoryRejectsBadOptions(t *testing.T) {
	db := openTestDB(t)
	tests := []struct {
		name string
		opts InventoryOptions
	}{
		{"retire before stale", InventoryOptions{StaleAfter: time.Hour, RetireAfter: time.Minute}},
		{"negative", InventoryOptions{StaleAfter: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenInventory(db, tt.opts); err == nil {
				t.Fatalf("OpenInventory(%+v) error = nil, want one", tt.opts)
			}
		})
	}
	if _, err := OpenInventory(nil, InventoryOptions{}); err == nil {
		t.Fatal("OpenInventory(nil) error = nil, want one")
	}
}

func TestCheckInCreatesVerifiedDevice(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	ctx := context.Background()
	c := CheckIn{
		Manufacturer: "Acme", Serial: "S1", Model: "Pump", HardwareRevision: "B", Version: "2.0", DeviceClass: "infusion-pump",
		Components: map[string]string{"kernel": "6.1", "app": "2.0"}, Address: netip.MustParseAddr("10.1.0.5"), Interface: "vlan101",
		InClinicalUse: true,
	}
	d, events, err := inv.CheckIn(ctx, c)
	if err != nil {
		t.Fatalf("CheckIn: %v", err)
	}
	if got, want := kinds(events), []string{EventDiscovered, EventCheckIn}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if !d.Verified || d.State != StateActive || d.Version != "2.0" || !d.InClinicalUse {
		t.Errorf("device = %+v, want verified, active, version 2.0, in clinical use", d)
	}
	got, err := inv.Get(ctx, "Acme", "S1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Components["kernel"] != "6.1" || got.Interfaces[0] != "vlan101" || got.Addresses[0].Address != c.Address {
		t.Errorf("stored device = %+v, want components, interface and address of the check-in", got)
	}

	c.Version, c.Components = "2.1", map[string]string{"kernel": "6.1", "app": "2.1"}
	clock.Advance(time.Minute)
	c.Time = time.Time{}
	_, events, err = inv.CheckIn(ctx, c)
	if err != nil {
		t.Fatalf("second CheckIn: %v", err)
	}
	if got, want := kinds(events), []string{EventVersionChanged, EventComponentsChanged, EventCheckIn}; !slices.Equal(got, want) {
		t.Errorf("second check-in events = %v, want %v", got, want)
	}
	if got := events[1].Details["component:app"]; got != "2.0 -> 2.1" {
		t.Errorf("components-changed detail = %q, want %q", got, "2.0 -> 2.1")
	}
	hist, err := inv.History(ctx, "Acme", "S1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if got, want := kinds(hist), []string{EventDiscovered, EventCheckIn, EventVersionChanged, EventComponentsChanged, EventCheckIn}; !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
}

func TestCheckInRejectsBadIdentity(t *testing.T) {
	inv := openTestInventory(t, openTestDB(t), newFakeClock())
	for _, c := range []CheckIn{{Serial: "1"}, {Manufacturer: "A"}, {Manufacturer: "A\x00B", Serial: "1"}} {
		if _, _, err := inv.CheckIn(context.Background(), c); err == nil {
			t.Errorf("CheckIn(%q, %q) error = nil, want one", c.Manufacturer, c.Serial)
		}
	}
}

func TestGetAndHistoryNotFound(t *testing.T) {
	inv := openTestInventory(t, openTestDB(t), newFakeClock())
	if _, err := inv.Get(context.Background(), "A", "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get error = %v, want ErrNotFound", err)
	}
	if _, err := inv.History(context.Background(), "A", "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("History error = %v, want ErrNotFound", err)
	}
}

func TestObserveThenCheckInVerifiesClaims(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	ctx := context.Background()
	d, events := mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump A", "10.1.0.5", clock.Now()))
	if d.Verified {
		t.Error("device seen only over mDNS is verified, want unverified")
	}
	if got, want := kinds(events), []string{EventDiscovered}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}

	if _, _, err := inv.CheckIn(ctx, CheckIn{Manufacturer: "Acme", Serial: "S1", Model: "M1", Version: "1.0"}); err != nil {
		t.Fatalf("CheckIn: %v", err)
	}
	clock.Advance(time.Second)
	s := sighting("Acme", "S1", "vlan101", "Pump A", "10.1.0.5", clock.Now())
	s.Info.Version = "9.9"
	d, events = mustObserve(t, inv, s)
	if d.Verified || d.Version != "1.0" || d.Claim == nil || d.Claim.Version != "9.9" {
		t.Errorf("after contradicting claim: verified %v, version %q, claim %+v; want unverified, version 1.0, claim 9.9", d.Verified, d.Version, d.Claim)
	}
	if got, want := kinds(events), []string{EventUnverifiedClaim}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	clock.Advance(time.Second)
	s.Time = clock.Now()
	if _, events = mustObserve(t, inv, s); len(events) != 0 {
		t.Errorf("repeated claim events = %v, want none", kinds(events))
	}

	d, _, err := inv.CheckIn(ctx, CheckIn{Manufacturer: "Acme", Serial: "S1", Model: "M1", Version: "9.9"})
	if err != nil {
		t.Fatalf("CheckIn: %v", err)
	}
	if !d.Verified || d.Claim != nil || d.Version != "9.9" {
		t.Errorf("after confirming check-in: verified %v, claim %+v, version %q; want verified, no claim, 9.9", d.Verified, d.Claim, d.Version)
	}
}

func TestOneDeviceOnTwoInterfacesIsOneDevice(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	_, events := mustObserve(t, inv, sighting("Acme", "S1", "vlan102", "Pump", "10.2.0.5", clock.Now()))
	if got, want := kinds(events), []string{EventInterfaceAdded}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	devices, err := inv.List(context.Background(), Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(devices) != 1 {
		t.Fatalf("List returned %d devices, want 1", len(devices))
	}
	if got, want := devices[0].Interfaces, []string{"vlan101", "vlan102"}; !slices.Equal(got, want) {
		t.Errorf("interfaces = %v, want %v", got, want)
	}
	if got := len(devices[0].Addresses); got != 2 {
		t.Errorf("addresses = %d, want 2", got)
	}
}

func TestSameInstanceNameTwoDevices(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Infusion Pump", "10.1.0.5", clock.Now()))
	mustObserve(t, inv, sighting("Acme", "S2", "vlan101", "Infusion Pump", "10.1.0.6", clock.Now()))
	devices, err := inv.List(context.Background(), Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(devices) != 2 {
		t.Fatalf("List returned %d devices, want 2", len(devices))
	}
}

func TestAddressReuseDoesNotMerge(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	clock.Advance(time.Minute)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.7", clock.Now()))
	mustObserve(t, inv, sighting("Other", "X9", "vlan101", "Monitor", "10.1.0.5", clock.Now()))
	devices, err := inv.List(context.Background(), Filter{Address: netip.MustParseAddr("10.1.0.5")})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(devices) != 2 {
		t.Fatalf("devices that used 10.1.0.5 = %d, want 2 (separate records)", len(devices))
	}
	for _, d := range devices {
		if d.Manufacturer == "Other" && len(d.Addresses) != 1 {
			t.Errorf("reusing device has %d addresses, want 1", len(d.Addresses))
		}
	}
}

func TestAddressChangeRecordsHistory(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	clock.Advance(time.Minute)
	d, events := mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.9", clock.Now()))
	if got, want := kinds(events), []string{EventAddressChanged}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if events[0].Details["from"] != "10.1.0.5" || events[0].Details["to"] != "10.1.0.9" {
		t.Errorf("address-changed details = %v, want from 10.1.0.5 to 10.1.0.9", events[0].Details)
	}
	if got := d.Links[0].Addresses; len(got) != 1 || got[0] != netip.MustParseAddr("10.1.0.9") {
		t.Errorf("current link addresses = %v, want [10.1.0.9]", got)
	}
	if len(d.Addresses) != 2 {
		t.Errorf("address history has %d entries, want 2", len(d.Addresses))
	}
}

func TestGoodbyeDepartsAfterLastInterface(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	mustObserve(t, inv, sighting("Acme", "S1", "vlan102", "Pump", "10.2.0.5", clock.Now()))
	bye := sighting("Acme", "S1", "vlan101", "Pump", "", clock.Now())
	bye.Goodbye = true
	d, events := mustObserve(t, inv, bye)
	if got, want := kinds(events), []string{EventInterfaceDeparted}; !slices.Equal(got, want) || d.State != StateActive {
		t.Errorf("first goodbye: events %v, state %s; want %v, active", got, d.State, want)
	}
	bye.Interface = "vlan102"
	d, events = mustObserve(t, inv, bye)
	if got, want := kinds(events), []string{EventDeparted}; !slices.Equal(got, want) || d.State != StateDeparted {
		t.Errorf("second goodbye: events %v, state %s; want %v, departed", got, d.State, want)
	}
	if _, events = mustObserve(t, inv, bye); len(events) != 0 {
		t.Errorf("repeated goodbye events = %v, want none", kinds(events))
	}
	clock.Advance(time.Minute)
	d, events = mustObserve(t, inv, sighting("Acme", "S1", "vlan102", "Pump", "10.2.0.5", clock.Now()))
	if got, want := kinds(events), []string{EventReturned}; !slices.Equal(got, want) || d.State != StateActive {
		t.Errorf("return: events %v, state %s; want %v, active", got, d.State, want)
	}
}

func TestGoodbyeFromUnknownDeviceIgnored(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	bye := sighting("Acme", "S1", "vlan101", "Pump", "", clock.Now())
	bye.Goodbye = true
	mustObserve(t, inv, bye)
	if _, err := inv.Get(context.Background(), "Acme", "S1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after goodbye from unknown device: error %v, want ErrNotFound", err)
	}
}

func TestListFilters(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	ctx := context.Background()
	a := sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now())
	b := sighting("Acme", "S2", "vlan102", "Pump", "10.2.0.5", clock.Now())
	b.Info.Model, b.Info.Version = "Monitor", "3.0"
	mustObserve(t, inv, a)
	mustObserve(t, inv, b)
	if _, _, err := inv.CheckIn(ctx, CheckIn{Manufacturer: "Beta", Serial: "Z", Model: "Vent", Version: "1.0", Interface: "vlan103"}); err != nil {
		t.Fatalf("CheckIn: %v", err)
	}
	verified := true
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{"S1", "S2", "Z"}},
		{"model", Filter{Model: "Monitor"}, []string{"S2"}},
		{"version", Filter{Version: "1.0"}, []string{"S1", "Z"}},
		{"interface", Filter{Interface: "vlan102"}, []string{"S2"}},
		{"state", Filter{State: StateActive}, []string{"S1", "S2", "Z"}},
		{"state none", Filter{State: StateRetired}, nil},
		{"verified", Filter{Verified: &verified}, []string{"Z"}},
		{"manufacturer", Filter{Manufacturer: "Beta"}, []string{"Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devices, err := inv.List(ctx, tt.f)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []string
			for _, d := range devices {
				got = append(got, d.Serial)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("List(%+v) serials = %v, want %v", tt.f, got, tt.want)
			}
		})
	}
}

func TestObserveBatchSkipsInvalid(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	batch := []Sighting{
		sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()),
		sighting("", "S2", "vlan101", "Pump", "10.1.0.6", clock.Now()),
		sighting("Acme", "S3", "vlan101", "Pump", "10.1.0.7", clock.Now()),
	}
	events, err := inv.ObserveBatch(context.Background(), batch)
	if err == nil {
		t.Error("ObserveBatch error = nil, want one naming the invalid sighting")
	}
	if got := len(events); got != 2 {
		t.Errorf("events = %d, want 2 discoveries", got)
	}
	devices, _ := inv.List(context.Background(), Filter{})
	if len(devices) != 2 {
		t.Errorf("devices = %d, want 2", len(devices))
	}
}

// counterValue returns the current value of a counter.
func counterValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("reading metric: %v", err)
	}
	return m.GetCounter().GetValue()
}

func TestCheckInRejectsOversizedFields(t *testing.T) {
	inv := openTestInventory(t, openTestDB(t), newFakeClock())
	long := strings.Repeat("x", 129)
	tests := []struct {
		name string
		c    CheckIn
	}{
		{"long version", CheckIn{Version: long}},
		{"control character in model", CheckIn{Model: "Pump\x1b[2J"}},
		{"empty component name", CheckIn{Components: map[string]string{"": "1"}}},
		{"long component version", CheckIn{Components: map[string]string{"app": long}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Manufacturer, tt.c.Serial = "Acme", "S1"
			if _, _, err := inv.CheckIn(context.Background(), tt.c); err == nil {
				t.Errorf("CheckIn(%+v) error = nil, want one", tt.c)
			}
		})
	}
}
