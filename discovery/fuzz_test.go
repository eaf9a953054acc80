package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// txtWire encodes TXT strings as TXT RDATA: each string prefixed by its
// length byte.
func txtWire(strs ...string) []byte {
	var b []byte
	for _, s := range strs {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// splitTXTWire decodes TXT RDATA, stopping at a truncated string.
func splitTXTWire(b []byte) []string {
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if 1+n > len(b) {
			break
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out
}

func FuzzParseDeviceTXT(f *testing.F) {
	f.Add(txtWire("txtvers=1", "mf=Acme", "md=Pump", "sn=1", "sw=1.0", "hw=B", "dc=infusion-pump", "api=8443", "clin", "maint=0"))
	f.Add(txtWire(""))
	f.Add(txtWire("MF=A", "mf=B", "SN=1", "txtvers=1", "=x", "clin=maybe"))
	f.Add(txtWire("txtvers=1", "mf="+strings.Repeat("x", 200), "sn=\xff\xfe"))
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		strs := splitTXTWire(data)
		info, err := ParseDeviceTXT(strs)
		if err != nil {
			return
		}
		if !info.HasIdentity() {
			t.Fatalf("ParseDeviceTXT(%q) accepted a record without identity: %+v", strs, info)
		}
		if err := validateIdentity(info.Manufacturer, info.Serial); err != nil {
			t.Fatalf("ParseDeviceTXT(%q) accepted an identity the inventory rejects: %v", strs, err)
		}
		again, err := info.TXT()
		if err != nil {
			t.Fatalf("TXT() of accepted %+v: %v", info, err)
		}
		back, err := ParseDeviceTXT(again)
		if err != nil || back != info {
			t.Fatalf("round trip of %+v gave %+v, %v", info, back, err)
		}
	})
}

// checkingObserver checks the sightings a browser hands to the inventory.
type checkingObserver struct {
	mu        sync.Mutex
	sightings []Sighting
}

func (o *checkingObserver) ObserveBatch(_ context.Context, batch []Sighting) ([]Event, error) {
	o.mu.Lock()
	o.sightings = append(o.sightings, batch...)
	o.mu.Unlock()
	return nil, nil
}

func fuzzSeedPackets(f *testing.F) {
	var answers, extras []dns.RR
	for i := range 3 {
		svc := deviceService(fmt.Sprintf("S%d", i), fmt.Sprintf("Pump %d", i), fmt.Sprintf("10.1.0.%d", 10+i))
		answers = append(answers, svc.records(recordKinds{ptr: true}, 1)...)
		extras = append(extras, svc.records(recordKinds{srv: true, txt: true, addr: true}, 1)...)
	}
	f.Add(packResponse(f, answers, extras))
	svc := deviceService("S9", "Pump.with.dots", "10.1.0.9")
	f.Add(packResponse(f, svc.records(allRecords, 0), nil))
	f.Add(packResponse(f, svc.records(recordKinds{addr: true}, 1), nil))
	bad := svc
	bad.txt = []string{""}
	f.Add(packResponse(f, bad.records(allRecords, 1), nil))
	q := new(dns.Msg)
	q.SetQuestion(serviceFQDN(DeviceServiceType), dns.TypePTR)
	qb, _ := q.Pack()
	f.Add(qb)
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c})
}

func FuzzHandlePacket(f *testing.F) {
	fuzzSeedPackets(f)
	obs := &checkingObserver{}
	n := netInterface{name: "vlan101", index: testIfIndex, prefixes: []netip.Prefix{testSubnet}}
	b, err := newBrowser(BrowserOptions{Interfaces: []string{n.name}, Inventory: obs}, []netInterface{n})
	if err != nil {
		f.Fatal(err)
	}
	b.sender = &recordingSender{}
	st := b.byIndex[testIfIndex]
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b.handlePacket(st, pkt, fromDevice("10.1.0.10"))
		b.writePending(context.Background())
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for _, s := range obs.sightings {
			if err := validateIdentity(s.Info.Manufacturer, s.Info.Serial); err != nil {
				t.Fatalf("sighting with invalid identity reached the inventory: %v", err)
			}
			if s.Interface != "vlan101" || s.Instance == "" {
				t.Fatalf("sighting %+v lacks its interface or instance", s)
			}
			if !s.Goodbye && len(s.Addresses) == 0 {
				t.Fatalf("live sighting %+v has no address", s)
			}
		}
		obs.sightings = obs.sightings[:0]
		st.mu.Lock()
		st.expire(b.opts.Clock().Add(2 * goodbyeMemory))
		st.mu.Unlock()
	})
}

// recordingWriter records the responses a responder sends.
type recordingWriter struct{ packets [][]byte }

func (w *recordingWriter) sendMulticast(b []byte, _ int) error {
	w.packets = append(w.packets, append([]byte(nil), b...))
	return nil
}

func (w *recordingWriter) sendUnicast(b []byte, _ int, _ netip.AddrPort) error {
	return w.sendMulticast(b, 0)
}

func FuzzResponderQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{serviceFQDN(DeviceServiceType), dns.TypePTR},
		{dnsSDEnumeration, dns.TypePTR},
		{`pump\ 1._wardgate-device._tcp.local.`, dns.TypeANY},
		{"dev-s1.local.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
	}
	n := netInterface{name: "vlan101", index: testIfIndex, prefixes: []netip.Prefix{testSubnet}}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out := &recordingWriter{}
		r := &responder{
			out: out, log: slog.New(slog.DiscardHandler), ifaces: map[int]netInterface{n.index: n},
			services:      map[int]map[string]*responderService{n.index: {}},
			lastMulticast: map[int]map[string]time.Time{n.index: {}},
			stop:          make(chan struct{}),
		}
		for i := range 40 {
			svc := deviceService(fmt.Sprintf("S%d", i), fmt.Sprintf("Pump %d", i), fmt.Sprintf("10.1.0.%d", 10+i))
			r.services[n.index][strings.ToLower(svc.fqdn())] = &svc
		}
		var q dns.Msg
		if q.Unpack(pkt) != nil || q.Response {
			return
		}
		// A query from a legacy port is answered at once, by unicast.
		r.handleQuery(&q, packetInfo{ifIndex: n.index, src: netip.MustParseAddrPort("10.1.0.200:40000")})
		for _, p := range out.packets {
			var m dns.Msg
			if err := m.Unpack(p); err != nil {
				t.Fatalf("responder sent an undecodable packet: %v", err)
			}
			if len(p) > maxPacket && len(m.Answer) > 1 {
				t.Fatalf("responder sent %d bytes with %d answers, want at most %d bytes", len(p), len(m.Answer), maxPacket)
			}
			if m.Id != q.Id || !m.Response {
				t.Fatalf("legacy reply has ID %d response %v, want ID %d response true", m.Id, m.Response, q.Id)
			}
			for _, rr := range m.Answer {
				if rr.Header().Ttl > legacyTTL {
					t.Fatalf("legacy reply TTL %d, want at most %d", rr.Header().Ttl, legacyTTL)
				}
			}
		}
	})
}
