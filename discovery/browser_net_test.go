package discovery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBrowserFindsDevicesOnThreeVLANs(t *testing.T) {
	vlans := newVLANs(t, 3)
	want := map[string]SimulatedDevice{}
	for i, v := range vlans {
		a := newDeviceAnnouncer(t, v)
		for j := range 3 {
			dev := testDevice(v, j, fmt.Sprintf("%s-%d", v.tag, j))
			if err := a.Announce(dev); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			want[dev.Info.Serial] = dev
		}
		// The same instance name on every VLAN, from different devices.
		twin := testDevice(v, 7, fmt.Sprintf("twin-%d", i))
		twin.Instance = "Patient Monitor"
		if err := a.Announce(twin); err != nil {
			t.Fatalf("Announce: %v", err)
		}
		want[twin.Info.Serial] = twin
	}
	// One device attached to two VLANs.
	multi := testDevice(vlans[0], 20, "multi-1")
	for _, v := range vlans[:2] {
		d := multi
		d.Address = v.hostAddr(30)
		if err := newDeviceAnnouncer(t, v).Announce(d); err != nil {
			t.Fatalf("Announce: %v", err)
		}
	}
	want[multi.Info.Serial] = multi

	h := startBrowser(t, vlans, nil, nil)
	devices := h.waitDevices(t, len(want), 20*time.Second)
	if len(devices) != len(want) {
		t.Fatalf("inventory has %d devices, want %d", len(devices), len(want))
	}
	for _, d := range devices {
		w, ok := want[d.Serial]
		if !ok {
			t.Errorf("unexpected device %s/%s", d.Manufacturer, d.Serial)
			continue
		}
		info := w.Info
		got := DeviceInfo{SchemaVersion: 1, Manufacturer: d.Manufacturer, Model: d.Model, Serial: d.Serial, Version: d.Version,
			HardwareRevision: d.HardwareRevision, DeviceClass: d.DeviceClass, APIPort: d.APIPort, InClinicalUse: d.InClinicalUse, InMaintenance: d.InMaintenance}
		if got != info {
			t.Errorf("device %s: got TXT fields %+v, want %+v", d.Serial, got, info)
		}
		if d.Verified {
			t.Errorf("device %s is verified, want unverified (mDNS only)", d.Serial)
		}
	}
	h.waitDevices(t, len(want), 0)
	waitFor(t, 10*time.Second, func() (bool, string) {
		d, err := h.inv.Get(context.Background(), "Acme Medical", "multi-1")
		if err != nil {
			return false, err.Error()
		}
		want := []string{vlans[0].gwIf, vlans[1].gwIf}
		slices.Sort(want)
		return slices.Equal(d.Interfaces, want), fmt.Sprintf("multi-1 interfaces %v, want %v", d.Interfaces, want)
	})
	for i, v := range vlans {
		d, err := h.inv.Get(context.Background(), "Acme Medical", fmt.Sprintf("%s-0", v.tag))
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !slices.Equal(d.Interfaces, []string{v.gwIf}) {
			t.Errorf("device on VLAN %d has interfaces %v, want [%s]", i, d.Interfaces, v.gwIf)
		}
		if len(d.Links) != 1 || len(d.Links[0].Addresses) != 1 || d.Links[0].Addresses[0] != v.hostAddr(10) {
			t.Errorf("device on VLAN %d has links %+v, want address %s", i, d.Links, v.hostAddr(10))
		}
	}
}

func TestBrowserFindsAvahiDevices(t *testing.T) {
	vlans := newVLANs(t, 3)
	var want []DeviceInfo
	var serviceSets [][]avahiService
	for i := range vlans {
		var services []avahiService
		for j := range 2 {
			info := DeviceInfo{
				SchemaVersion: 1, Manufacturer: "Globex Devices", Model: "VitalView", Serial: fmt.Sprintf("GX-%d%d", i, j),
				Version: "7.0.3", HardwareRevision: "2", DeviceClass: "patient-monitor", APIPort: 9443, InMaintenance: j == 1,
			}
			txt, err := info.TXT()
			if err != nil {
				t.Fatal(err)
			}
			// DNS-SD keys are case-insensitive and the first occurrence
			// wins, so the browser must ignore the trailing duplicate.
			txt = append(txt, "MF=Spoofed")
			services = append(services, avahiService{name: fmt.Sprintf("VitalView %d", j), serviceType: DeviceServiceType, port: 9443, txt: txt})
			want = append(want, info)
		}
		services = append(services,
			avahiService{name: "Printer", serviceType: "_ipp._tcp", port: 631, txt: []string{"txtvers=1", "mf=Globex Devices", "sn=PRN-1"}},
			avahiService{name: "Web console", serviceType: "_http._tcp", port: 80, txt: []string{"txtvers=1", "mf=Globex Devices", "sn=WEB-1"}},
			avahiService{name: "Empty record", serviceType: DeviceServiceType, port: 9443},
		)
		serviceSets = append(serviceSets, services)
	}
	// The browser starts first so that it hears avahi's startup
	// announcements, which carry the foreign service types too.
	h := startBrowser(t, vlans, nil, nil)
	for i, v := range vlans {
		startAvahi(t, v, false, serviceSets[i]...)
	}
	devices := h.waitDevices(t, len(want), 20*time.Second)
	if err := h.browser.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	byIdentity := map[string]Device{}
	for _, d := range devices {
		byIdentity[d.Manufacturer+"/"+d.Serial] = d
	}
	if len(devices) != len(want) {
		t.Errorf("inventory has %d devices, want %d (foreign service types must not become devices): %v", len(devices), len(want), byIdentity)
	}
	for i, w := range want {
		d, ok := byIdentity[w.Manufacturer+"/"+w.Serial]
		if !ok {
			t.Errorf("device %s/%s not found", w.Manufacturer, w.Serial)
			continue
		}
		if d.Model != w.Model || d.Version != w.Version || d.HardwareRevision != w.HardwareRevision ||
			d.DeviceClass != w.DeviceClass || d.APIPort != w.APIPort || d.InMaintenance != w.InMaintenance || d.InClinicalUse {
			t.Errorf("device %s = %+v, want TXT fields of %+v", w.Serial, d, w)
		}
		if v := vlans[i/2]; !slices.Equal(d.Interfaces, []string{v.gwIf}) || d.Links[0].Addresses[0] != v.devAddr {
			t.Errorf("device %s on interfaces %v at %v, want [%s] at %s", w.Serial, d.Interfaces, d.Links[0].Addresses, v.gwIf, v.devAddr)
		}
	}
	for _, serial := range []string{"PRN-1", "WEB-1"} {
		if _, ok := byIdentity["Globex Devices/"+serial]; ok {
			t.Errorf("service of a foreign type became device %s", serial)
		}
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := len(h.browser.Unidentified())
		return n == len(vlans), fmt.Sprintf("%d unidentified announcements, want %d (one empty record per VLAN)", n, len(vlans))
	})
	if got := h.events.count(EventMalformedAnnouncement); got != len(vlans) {
		t.Errorf("%d malformed-announcement events, want %d", got, len(vlans))
	}
	if got := h.metricSum(t, "wardgate_discovery_foreign_records_total"); got == 0 {
		t.Error("foreign_records_total = 0, want the _ipp and _http records counted")
	}
}

func TestBrowserGoodbyeMarksDeparted(t *testing.T) {
	vlans := newVLANs(t, 2)
	a := newDeviceAnnouncer(t, vlans[0])
	dev := testDevice(vlans[0], 1, "bye-1")
	stay := testDevice(vlans[0], 2, "stay-1")
	for _, d := range []SimulatedDevice{dev, stay} {
		if err := a.Announce(d); err != nil {
			t.Fatalf("Announce: %v", err)
		}
	}
	avahiInfo := DeviceInfo{SchemaVersion: 1, Manufacturer: "Globex Devices", Model: "VitalView", Serial: "GX-BYE", Version: "1"}
	txt, err := avahiInfo.TXT()
	if err != nil {
		t.Fatal(err)
	}
	avahi := startAvahi(t, vlans[1], false, avahiService{name: "VitalView", serviceType: DeviceServiceType, port: 9443, txt: txt})

	// No query cycle can mark a device departed: only a goodbye can. The
	// long query window keeps hashicorp/mdns listening most of the time,
	// so it usually hears the goodbyes too and reports them as live.
	h := startBrowser(t, vlans, nil, func(o *BrowserOptions, _ *Inventory) {
		o.QueryInterval, o.QueryWindow = 2*time.Second, 1500*time.Millisecond
	})
	h.waitDevices(t, 3, 20*time.Second)

	start := time.Now()
	if err := a.Withdraw(dev.Instance); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	d := h.waitState(t, "Acme Medical", "bye-1", StateDeparted, 5*time.Second)
	t.Logf("departed %v after the goodbye", time.Since(start))
	if d.Links[0].Present {
		t.Errorf("link after goodbye is present, want departed")
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		_, ok := h.events.find(EventDeparted, "bye-1")
		return ok, "no departed event for bye-1 reached OnEvent"
	})
	if got, err := h.inv.Get(context.Background(), "Acme Medical", "stay-1"); err != nil || got.State != StateActive {
		t.Errorf("stay-1 state %s (err %v), want active", got.State, err)
	}

	avahi.stop(t)
	h.waitState(t, "Globex Devices", "GX-BYE", StateDeparted, 5*time.Second)

	// A later cycle must not bring the departed devices back.
	time.Sleep(2500 * time.Millisecond)
	if err := h.browser.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range [][2]string{{"Acme Medical", "bye-1"}, {"Globex Devices", "GX-BYE"}} {
		if got, _ := h.inv.Get(context.Background(), id[0], id[1]); got.State != StateDeparted {
			hist, _ := h.inv.History(context.Background(), id[0], id[1])
			for _, e := range hist {
				t.Logf("%s history: %s %v %v", id[1], e.Kind, e.Time.Format("15:04:05.000"), e.Details)
			}
			t.Errorf("%s state %s a cycle after its goodbye, want departed", id[1], got.State)
		}
	}
	t.Logf("hashicorp/mdns results ignored after a goodbye: %v", h.metricSum(t, "wardgate_discovery_library_results_total", "outcome", "after-goodbye"))

	if err := a.Announce(dev); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	h.waitState(t, "Acme Medical", "bye-1", StateActive, 5*time.Second)
	waitFor(t, 5*time.Second, func() (bool, string) {
		_, ok := h.events.find(EventReturned, "bye-1")
		return ok, "no returned event for bye-1 reached OnEvent"
	})
}

func TestBrowserAddressChangeKeepsOneRecord(t *testing.T) {
	vlans := newVLANs(t, 1)
	a := newDeviceAnnouncer(t, vlans[0])
	dev := testDevice(vlans[0], 1, "move-1")
	if err := a.Announce(dev); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	h := startBrowser(t, vlans, nil, func(o *BrowserOptions, _ *Inventory) { o.QueryInterval = 2 * time.Second })
	h.waitDevices(t, 1, 20*time.Second)

	oldAddr := dev.Address
	dev.Address = vlans[0].hostAddr(99)
	if err := a.Announce(dev); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	var d Device
	waitFor(t, 5*time.Second, func() (bool, string) {
		var err error
		d, err = h.inv.Get(context.Background(), "Acme Medical", "move-1")
		if err != nil {
			return false, err.Error()
		}
		cur := d.Links[0].Addresses
		return len(cur) == 1 && cur[0] == dev.Address, fmt.Sprintf("current addresses %v, want [%s]", cur, dev.Address)
	})
	devices, err := h.inv.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 1 {
		t.Fatalf("inventory has %d devices after the address change, want 1", len(devices))
	}
	var history []string
	for _, a := range d.Addresses {
		history = append(history, a.Address.String())
	}
	if want := []string{oldAddr.String(), dev.Address.String()}; !slices.Equal(history, want) {
		t.Errorf("address history %v, want %v", history, want)
	}
	events, err := h.inv.History(context.Background(), "Acme Medical", "move-1")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(events, func(e Event) bool { return e.Kind == EventAddressChanged })
	if i < 0 {
		t.Fatalf("history %v has no address-changed event", kinds(events))
	}
	if got := events[i].Details; got["from"] != oldAddr.String() || got["to"] != dev.Address.String() {
		t.Errorf("address-changed details %v, want from %s to %s", got, oldAddr, dev.Address)
	}
	// Later cycles must not flip the address back.
	time.Sleep(2500 * time.Millisecond)
	if err := h.browser.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if events, err = h.inv.History(context.Background(), "Acme Medical", "move-1"); err != nil {
		t.Fatal(err)
	}
	if n := countKind(events, EventAddressChanged); n != 1 {
		t.Errorf("%d address-changed events, want 1", n)
	}
}

func countKind(events []Event, kind string) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func TestBrowserSilentDeviceGoesStaleThenRetired(t *testing.T) {
	vlans := newVLANs(t, 1)
	a := newDeviceAnnouncer(t, vlans[0])
	dev := testDevice(vlans[0], 1, "quiet-1")
	if err := a.Announce(dev); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	clock := newFakeClock()
	h := startBrowser(t, vlans, clock, nil)
	h.waitDevices(t, 1, 20*time.Second)
	// The device loses power: no goodbye, no more answers.
	a.Abandon()
	if err := h.browser.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		want    State
	}{
		{59 * time.Minute, StateActive},
		{2 * time.Minute, StateStale},
		{23 * time.Hour, StateRetired},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		if _, err := h.inv.Sweep(ctx); err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		d, err := h.inv.Get(ctx, "Acme Medical", "quiet-1")
		if err != nil {
			t.Fatal(err)
		}
		if d.State != st.want {
			t.Fatalf("after %v more: state %s, want %s", st.advance, d.State, st.want)
		}
	}
	events, err := h.inv.History(ctx, "Acme Medical", "quiet-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(events), []string{EventDiscovered, EventStale, EventRetired}; !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
}

// slowObserver delays every batch, as an inventory on a slow disk would.
type slowObserver struct {
	inner Observer
	delay time.Duration
}

func (s slowObserver) ObserveBatch(ctx context.Context, batch []Sighting) ([]Event, error) {
	time.Sleep(s.delay)
	return s.inner.ObserveBatch(ctx, batch)
}

func TestBrowserFinds200DevicesEveryCycleWithSlowWriter(t *testing.T) {
	vlans := newVLANs(t, 3)
	const total = 200
	perVLAN := map[string]int{}
	for i := range total {
		v := vlans[i%len(vlans)]
		// Several announcers per VLAN, so answers arrive both as many
		// packets and as packets that carry several devices each.
		a := announcerFor(t, v, i/len(vlans)%4)
		if err := a.Announce(testDevice(v, i/len(vlans), fmt.Sprintf("bulk-%03d", i))); err != nil {
			t.Fatalf("Announce: %v", err)
		}
		perVLAN[v.gwIf]++
	}
	// Each device announces twice, one second apart, and then multicasts
	// none of its records for another second (RFC 6762 sections 6 and
	// 8.3). Waiting keeps the first cycles clear of that quiet second.
	time.Sleep(2 * time.Second)

	const wantCycles = 3
	var mu sync.Mutex
	cycles := map[string][]CycleStats{}
	done := make(chan struct{})
	closed := false
	h := startBrowser(t, vlans, nil, func(o *BrowserOptions, inv *Inventory) {
		// Writing 200 sightings takes 10 batches of 20 at 400 ms each, so
		// the writer is always behind the 3-second cycles. Cycles shorter
		// than 3 s would let a loaded machine delay one answer so much
		// that the responder's once-a-second multicast limit drops the
		// next one.
		o.Inventory = slowObserver{inner: inv, delay: 400 * time.Millisecond}
		o.BatchSize = 20
		o.QueryInterval = 3 * time.Second
		o.OnCycle = func(s CycleStats) {
			mu.Lock()
			defer mu.Unlock()
			cycles[s.Interface] = append(cycles[s.Interface], s)
			complete := 0
			for _, c := range cycles {
				if len(c) >= wantCycles {
					complete++
				}
			}
			if complete == len(vlans) && !closed {
				close(done)
				closed = true
			}
		}
	})
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("fewer than %d cycles completed on every VLAN in 30s", wantCycles)
	}
	mu.Lock()
	for iface, cs := range cycles {
		for _, c := range cs[:wantCycles] {
			if c.Devices != perVLAN[iface] {
				t.Errorf("%s cycle %d heard %d devices, want %d", iface, c.Cycle, c.Devices, perVLAN[iface])
			}
		}
	}
	mu.Unlock()
	devices := h.waitDevices(t, total, 30*time.Second)
	if len(devices) != total {
		t.Errorf("inventory has %d devices, want %d", len(devices), total)
	}
	if got := h.metricSum(t, "wardgate_discovery_dropped_sightings_total"); got != 0 {
		t.Errorf("dropped sightings = %v, want 0", got)
	}
}

var announcers sync.Map

// announcerFor returns the n-th device announcer on v, creating it on
// first use.
func announcerFor(t testing.TB, v *vlan, n int) *DeviceAnnouncer {
	key := fmt.Sprintf("%s/%d", v.devNS, n)
	if a, ok := announcers.Load(key); ok {
		return a.(*DeviceAnnouncer)
	}
	a := newDeviceAnnouncer(t, v)
	announcers.Store(key, a)
	t.Cleanup(func() { announcers.Delete(key) })
	return a
}
