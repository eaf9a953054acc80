package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/miekg/dns"
)

// recordingSender records the queries a browser sends instead of sending
// them.
type recordingSender struct {
	mu      sync.Mutex
	packets [][]byte
}

func (r *recordingSender) sendMulticast(b []byte, ifIndex int) error {
	r.mu.Lock()
	r.packets = append(r.packets, append([]byte(nil), b...))
	r.mu.Unlock()
	return nil
}

func (r *recordingSender) questions(t testing.TB) []dns.Question {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dns.Question
	for _, p := range r.packets {
		var m dns.Msg
		if err := m.Unpack(p); err != nil {
			t.Fatalf("unpacking sent query: %v", err)
		}
		out = append(out, m.Question...)
	}
	return out
}

const testIfIndex = 7

var testSubnet = netip.MustParsePrefix("10.1.0.1/24")

// newOfflineBrowser returns a browser on one made-up interface, with no
// socket, feeding a real inventory.
func newOfflineBrowser(t testing.TB) (*Browser, *ifaceState, *Inventory, *recordingSender) {
	t.Helper()
	inv, err := OpenInventory(openTestDB(t), InventoryOptions{})
	if err != nil {
		t.Fatalf("OpenInventory: %v", err)
	}
	t.Cleanup(func() { inv.Close() })
	n := netInterface{name: "vlan101", index: testIfIndex, prefixes: []netip.Prefix{testSubnet}}
	b, err := newBrowser(BrowserOptions{Interfaces: []string{n.name}, Inventory: inv}, []netInterface{n})
	if err != nil {
		t.Fatalf("newBrowser: %v", err)
	}
	rec := &recordingSender{}
	b.sender = rec
	return b, b.byIndex[testIfIndex], inv, rec
}

func deviceService(serial, instance string, addr string) responderService {
	info := DeviceInfo{SchemaVersion: 1, Manufacturer: "Acme", Model: "Pump", Serial: serial, Version: "1.0"}
	txt, err := info.TXT()
	if err != nil {
		panic(err)
	}
	return responderService{
		instance: instance, serviceType: DeviceServiceType, host: "dev-" + serial, port: 443, txt: txt,
		addrs: []netip.Addr{netip.MustParseAddr(addr)},
	}
}

// packResponse packs records into one mDNS response.
func packResponse(t testing.TB, answers []dns.RR, extras []dns.RR) []byte {
	t.Helper()
	m := &dns.Msg{Compress: true}
	m.Response, m.Authoritative = true, true
	m.Answer, m.Extra = answers, extras
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("packing response: %v", err)
	}
	return b
}

func fromDevice(addr string) packetInfo {
	return packetInfo{ifIndex: testIfIndex, src: netip.AddrPortFrom(netip.MustParseAddr(addr), mdnsPort), multicast: true}
}

func listSerials(t testing.TB, inv *Inventory) []string {
	t.Helper()
	devices, err := inv.List(context.Background(), Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []string
	for _, d := range devices {
		out = append(out, d.Serial)
	}
	return out
}

func TestHandlePacketKeepsEveryInstance(t *testing.T) {
	b, st, inv, _ := newOfflineBrowser(t)
	var answers, extras []dns.RR
	for i := range 5 {
		svc := deviceService(fmt.Sprintf("S%d", i), "Same Name", fmt.Sprintf("10.1.0.%d", 10+i))
		svc.instance = fmt.Sprintf("Pump %d", i)
		answers = append(answers, svc.records(recordKinds{ptr: true}, 1)...)
		extras = append(extras, svc.records(recordKinds{srv: true, txt: true, addr: true}, 1)...)
	}
	b.handlePacket(st, packResponse(t, answers, extras), fromDevice("10.1.0.10"))
	b.writePending(context.Background())
	if got, want := listSerials(t, inv), []string{"S0", "S1", "S2", "S3", "S4"}; !slices.Equal(got, want) {
		t.Errorf("devices = %v, want %v", got, want)
	}
}

func TestHandlePacketGoodbye(t *testing.T) {
	b, st, inv, _ := newOfflineBrowser(t)
	svc := deviceService("S1", "Pump", "10.1.0.10")
	b.handlePacket(st, packResponse(t, svc.records(allRecords, 1), nil), fromDevice("10.1.0.10"))
	b.writePending(context.Background())
	// A goodbye that carries only the PTR record: the identity comes from
	// the cache.
	b.handlePacket(st, packResponse(t, svc.records(recordKinds{ptr: true}, 0), nil), fromDevice("10.1.0.10"))
	b.writePending(context.Background())
	d, err := inv.Get(context.Background(), "Acme", "S1")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateDeparted {
		t.Errorf("state after goodbye = %s, want departed", d.State)
	}

	// hashicorp/mdns reports the same goodbye as a live device.
	entry := &mdns.ServiceEntry{Name: svc.fqdn(), AddrV4: svc.addrs[0].AsSlice(), Port: 443, InfoFields: escapeAll(svc.txt)}
	b.handleLibraryEntry(st, entry)
	b.writePending(context.Background())
	if d, _ = inv.Get(context.Background(), "Acme", "S1"); d.State != StateDeparted {
		t.Errorf("state after library result for a goodbye = %s, want departed", d.State)
	}
	if got := counterValue(t, b.metrics.library.WithLabelValues("vlan101", "after-goodbye")); got != 1 {
		t.Errorf("after-goodbye results = %v, want 1", got)
	}
}

func escapeAll(strs []string) []string {
	out := make([]string, len(strs))
	for i, s := range strs {
		out[i] = escapeTXT(s)
	}
	return out
}

func TestHandleLibraryEntryChecks(t *testing.T) {
	svc := deviceService("S1", "Pump", "10.1.0.10")
	tests := []struct {
		name    string
		entry   mdns.ServiceEntry
		outcome string
	}{
		{"accepted", mdns.ServiceEntry{Name: svc.fqdn(), AddrV4: []byte{10, 1, 0, 10}, InfoFields: escapeAll(svc.txt)}, "accepted"},
		{"foreign type", mdns.ServiceEntry{Name: "Pump._http._tcp.local.", AddrV4: []byte{10, 1, 0, 10}, InfoFields: escapeAll(svc.txt)}, "foreign"},
		{"other subnet", mdns.ServiceEntry{Name: svc.fqdn(), AddrV4: []byte{10, 2, 0, 10}, InfoFields: escapeAll(svc.txt)}, "off-link"},
		{"link-local only", mdns.ServiceEntry{Name: svc.fqdn(), AddrV6: netip.MustParseAddr("fe80::1").AsSlice(), InfoFields: escapeAll(svc.txt)}, "off-link"},
		{"malformed TXT", mdns.ServiceEntry{Name: svc.fqdn(), AddrV4: []byte{10, 1, 0, 10}, InfoFields: []string{""}}, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, st, _, _ := newOfflineBrowser(t)
			b.handleLibraryEntry(st, &tt.entry)
			if got := counterValue(t, b.metrics.library.WithLabelValues("vlan101", tt.outcome)); got != 1 {
				t.Errorf("%s results = %v, want 1", tt.outcome, got)
			}
		})
	}
}

func TestHandlePacketFiltersAndChecks(t *testing.T) {
	svc := deviceService("S1", "Pump", "10.1.0.10")
	foreign := svc
	foreign.serviceType = "_http._tcp"
	tests := []struct {
		name    string
		pkt     func(t testing.TB) []byte
		info    packetInfo
		devices int
	}{
		{"device", func(t testing.TB) []byte { return packResponse(t, svc.records(allRecords, 1), nil) }, fromDevice("10.1.0.10"), 1},
		{"foreign service type", func(t testing.TB) []byte { return packResponse(t, foreign.records(allRecords, 1), nil) }, fromDevice("10.1.0.10"), 0},
		{"source port not 5353", func(t testing.TB) []byte { return packResponse(t, svc.records(allRecords, 1), nil) },
			packetInfo{ifIndex: testIfIndex, src: netip.MustParseAddrPort("10.1.0.10:40000")}, 0},
		{"source off link", func(t testing.TB) []byte { return packResponse(t, svc.records(allRecords, 1), nil) }, fromDevice("192.0.2.1"), 0},
		{"query", func(t testing.TB) []byte {
			m := new(dns.Msg)
			m.SetQuestion(serviceFQDN(DeviceServiceType), dns.TypePTR)
			m.Answer = svc.records(allRecords, 1)
			p, _ := m.Pack()
			return p
		}, fromDevice("10.1.0.10"), 0},
		{"garbage", func(t testing.TB) []byte { return []byte{1, 2, 3} }, fromDevice("10.1.0.10"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, st, inv, _ := newOfflineBrowser(t)
			b.handlePacket(st, tt.pkt(t), tt.info)
			b.writePending(context.Background())
			if got := len(listSerials(t, inv)); got != tt.devices {
				t.Errorf("devices = %d, want %d", got, tt.devices)
			}
		})
	}
}

func TestHandlePacketQueriesMissingRecords(t *testing.T) {
	b, st, inv, rec := newOfflineBrowser(t)
	svc := deviceService("S1", "Pump", "10.1.0.10")
	b.handlePacket(st, packResponse(t, svc.records(recordKinds{ptr: true}, 1), nil), fromDevice("10.1.0.10"))
	qs := rec.questions(t)
	if len(qs) != 1 || qs[0].Name != svc.fqdn() {
		t.Fatalf("queries after a bare PTR = %v, want one for %s", qs, svc.fqdn())
	}
	b.handlePacket(st, packResponse(t, svc.records(recordKinds{srv: true, txt: true}, 1), nil), fromDevice("10.1.0.10"))
	b.handlePacket(st, packResponse(t, svc.records(recordKinds{addr: true}, 1), nil), fromDevice("10.1.0.10"))
	b.writePending(context.Background())
	d, err := inv.Get(context.Background(), "Acme", "S1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got := d.Links[0].Addresses; len(got) != 1 || got[0] != svc.addrs[0] {
		t.Errorf("addresses = %v, want [%s] from the A record", got, svc.addrs[0])
	}
}

func TestHandlePacketCacheFlushReplacesAddress(t *testing.T) {
	b, st, inv, _ := newOfflineBrowser(t)
	svc := deviceService("S1", "Pump", "10.1.0.10")
	b.handlePacket(st, packResponse(t, svc.records(allRecords, 1), nil), fromDevice("10.1.0.10"))
	b.writePending(context.Background())
	svc.addrs = []netip.Addr{netip.MustParseAddr("10.1.0.77")}
	// The new address alone, with the cache-flush bit, as a device that
	// changed address announces it.
	b.handlePacket(st, packResponse(t, svc.records(recordKinds{addr: true}, 1), nil), fromDevice("10.1.0.77"))
	b.writePending(context.Background())
	d, err := inv.Get(context.Background(), "Acme", "S1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got := d.Links[0].Addresses; len(got) != 1 || got[0] != svc.addrs[0] {
		t.Errorf("current addresses = %v, want [10.1.0.77]", got)
	}
	if got := len(d.Addresses); got != 2 {
		t.Errorf("address history has %d entries, want 2", got)
	}
}

func TestHandlePacketMalformedTXTKept(t *testing.T) {
	b, st, inv, _ := newOfflineBrowser(t)
	var got []Event
	b.opts.OnEvent = func(e Event) { got = append(got, e) }
	svc := deviceService("S1", "Pump", "10.1.0.10")
	svc.txt = []string{""}
	for range 2 {
		b.handlePacket(st, packResponse(t, svc.records(allRecords, 1), nil), fromDevice("10.1.0.10"))
	}
	if len(got) != 1 || got[0].Kind != EventMalformedAnnouncement {
		t.Fatalf("events = %v, want one %s", kinds(got), EventMalformedAnnouncement)
	}
	u := b.Unidentified()
	if len(u) != 1 || u[0].Instance != "Pump" || u[0].Address != svc.addrs[0] {
		t.Errorf("unidentified = %+v, want Pump at %s", u, svc.addrs[0])
	}
	if n := len(listSerials(t, inv)); n != 0 {
		t.Errorf("devices = %d, want 0", n)
	}
}

func TestSightingBufferKeepsLatestPerDevice(t *testing.T) {
	buf := newSightingBuffer(2)
	now := time.Now()
	a1 := sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", now)
	a2 := sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.6", now.Add(time.Second))
	b1 := sighting("Acme", "S2", "vlan101", "Pump", "10.1.0.7", now)
	c1 := sighting("Acme", "S3", "vlan101", "Pump", "10.1.0.8", now)
	for _, s := range []Sighting{a1, b1, a2} {
		if !buf.add(s) {
			t.Fatalf("add(%s) = false, want true", s.Info.Serial)
		}
	}
	if buf.add(c1) {
		t.Error("add beyond MaxPending = true, want false")
	}
	got := buf.take(10)
	if len(got) != 2 || got[0].Addresses[0] != a2.Addresses[0] || got[1].Info.Serial != "S2" {
		t.Errorf("take = %+v, want the latest S1 then S2", got)
	}
	buf.done(len(got))
	if err := buf.wait(context.Background()); err != nil {
		t.Errorf("wait: %v", err)
	}
}
