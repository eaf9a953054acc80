package discovery

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The gateway announces itself with this package's own responder rather
// than the hashicorp/mdns v1.0.7 server, because that server cannot
// restrict an answer to one interface's address. The server listens on
// the mDNS group with Linux's default IP_MULTICAST_ALL, so it hears every
// interface and answers each with every address of its zone. It also
// always replies by unicast to the querier, never announces unsolicited
// and sends no goodbye. This responder keeps one record set per
// interface, answers a query only with the records of the interface it
// arrived on, and announces and withdraws by multicast on that interface.

// Record TTLs from RFC 6762 section 10: 120 seconds for records that name
// a host (SRV, A, AAAA), 75 minutes for the others.
const (
	hostTTL  = 120
	otherTTL = 4500
	// legacyTTL caps TTLs in answers to legacy unicast queriers (RFC 6762
	// section 6.7).
	legacyTTL = 10
)

// responderService is one service instance a responder answers for on one
// interface. Text fields are raw, not presentation-escaped.
type responderService struct {
	instance    string
	serviceType string
	host        string
	port        uint16
	txt         []string
	addrs       []netip.Addr
}

func (s *responderService) fqdn() string {
	return escapeLabel(s.instance) + "." + serviceFQDN(s.serviceType)
}

func (s *responderService) hostName() string { return hostFQDN(s.host) }

// recordKinds selects records of a service.
type recordKinds struct{ ptr, srv, txt, addr bool }

var allRecords = recordKinds{true, true, true, true}

// records returns the service's records with every TTL multiplied by
// ttlScale (0 for a goodbye, 1 otherwise).
func (s *responderService) records(k recordKinds, ttlScale uint32) []dns.RR {
	hdr := func(name string, t uint16, ttl uint32, unique bool) dns.RR_Header {
		class := uint16(dns.ClassINET)
		if unique {
			class |= cacheFlushBit
		}
		return dns.RR_Header{Name: name, Rrtype: t, Class: class, Ttl: ttl * ttlScale}
	}
	var out []dns.RR
	if k.ptr {
		out = append(out, &dns.PTR{Hdr: hdr(serviceFQDN(s.serviceType), dns.TypePTR, otherTTL, false), Ptr: s.fqdn()})
	}
	if k.srv {
		out = append(out, &dns.SRV{Hdr: hdr(s.fqdn(), dns.TypeSRV, hostTTL, true), Target: s.hostName(), Port: s.port})
	}
	if k.txt {
		txt := make([]string, len(s.txt))
		for i, t := range s.txt {
			txt[i] = escapeTXT(t)
		}
		out = append(out, &dns.TXT{Hdr: hdr(s.fqdn(), dns.TypeTXT, otherTTL, true), Txt: txt})
	}
	if k.addr {
		out = append(out, s.addrRecords(ttlScale)...)
	}
	return out
}

func (s *responderService) addrRecords(ttlScale uint32) []dns.RR {
	var out []dns.RR
	for _, a := range s.addrs {
		h := dns.RR_Header{Name: s.hostName(), Class: dns.ClassINET | cacheFlushBit, Ttl: hostTTL * ttlScale}
		if a.Is4() {
			h.Rrtype = dns.TypeA
			out = append(out, &dns.A{Hdr: h, A: a.AsSlice()})
		} else {
			h.Rrtype = dns.TypeAAAA
			out = append(out, &dns.AAAA{Hdr: h, AAAA: a.AsSlice()})
		}
	}
	return out
}

// packetWriter sends mDNS packets out of one interface. *mdnsConn
// implements it.
type packetWriter interface {
	sendMulticast(b []byte, ifIndex int) error
	sendUnicast(b []byte, ifIndex int, dst netip.AddrPort) error
}

// rrGroup is the answers and additional records for one service, kept in
// one packet.
type rrGroup struct{ answers, extras []dns.RR }

// responder answers mDNS queries for a set of services on each of its
// interfaces, and announces and withdraws them.
type responder struct {
	conn *mdnsConn
	// out sends the responses; it is conn except in tests.
	out    packetWriter
	log    *slog.Logger
	ifaces map[int]netInterface

	mu sync.Mutex
	// services is keyed by interface index, then lower-case instance FQDN.
	services map[int]map[string]*responderService
	// lastMulticast is when each record was last multicast on each
	// interface, keyed by interface index and record key.
	lastMulticast map[int]map[string]time.Time
	closed        bool

	wg   sync.WaitGroup
	stop chan struct{}
}

func newResponder(ifaces []netInterface, log *slog.Logger) (*responder, error) {
	conn, err := listenMDNS(ifaces)
	if err != nil {
		return nil, err
	}
	r := &responder{
		conn: conn, out: conn, log: log, ifaces: map[int]netInterface{},
		services: map[int]map[string]*responderService{}, lastMulticast: map[int]map[string]time.Time{},
		stop: make(chan struct{}),
	}
	for _, n := range ifaces {
		r.ifaces[n.index] = n
		r.services[n.index] = map[string]*responderService{}
		r.lastMulticast[n.index] = map[string]time.Time{}
	}
	r.wg.Go(r.readLoop)
	return r, nil
}

// set adds or replaces a service on an interface and announces it. When
// it replaces a service whose addresses changed, the old address records
// are withdrawn first.
func (r *responder) set(ifIndex int, svc responderService) {
	key := strings.ToLower(svc.fqdn())
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	old := r.services[ifIndex][key]
	r.services[ifIndex][key] = &svc
	r.mu.Unlock()
	if old != nil && (old.host != svc.host || !equalAddrs(old.addrs, svc.addrs)) && !r.hostInUse(ifIndex, old.host, key) {
		r.send(ifIndex, []rrGroup{{answers: old.addrRecords(0)}}, netip.AddrPort{}, nil)
	}
	r.announce(ifIndex, &svc)
}

// remove withdraws a service from an interface with a goodbye.
func (r *responder) remove(ifIndex int, fqdn string) bool {
	key := strings.ToLower(fqdn)
	r.mu.Lock()
	svc := r.services[ifIndex][key]
	delete(r.services[ifIndex], key)
	r.mu.Unlock()
	if svc == nil {
		return false
	}
	r.goodbye(ifIndex, svc)
	return true
}

func (r *responder) hostInUse(ifIndex int, host, except string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.services[ifIndex] {
		if k != except && strings.EqualFold(s.host, host) {
			return true
		}
	}
	return false
}

// announce multicasts the service's records twice, one second apart (RFC
// 6762 section 8.3).
func (r *responder) announce(ifIndex int, svc *responderService) {
	groups := []rrGroup{{answers: svc.records(allRecords, 1)}}
	r.send(ifIndex, groups, netip.AddrPort{}, nil)
	r.wg.Go(func() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		current := r.services[ifIndex][strings.ToLower(svc.fqdn())] == svc
		r.mu.Unlock()
		if current {
			r.send(ifIndex, groups, netip.AddrPort{}, nil)
		}
	})
}

// goodbye multicasts the service's records with TTL 0 (RFC 6762 section
// 10.1). The address records are included only when no other service on
// the interface names the same host.
func (r *responder) goodbye(ifIndex int, svc *responderService) {
	kinds := recordKinds{ptr: true, srv: true, txt: true, addr: !r.hostInUse(ifIndex, svc.host, "")}
	r.send(ifIndex, []rrGroup{{answers: svc.records(kinds, 0)}}, netip.AddrPort{}, nil)
}

// shutdown stops answering and, when goodbyes is true, withdraws every
// service first. It is safe to call more than once.
func (r *responder) shutdown(goodbyes bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	all := map[int][]*responderService{}
	for idx, m := range r.services {
		for _, s := range m {
			all[idx] = append(all[idx], s)
		}
	}
	r.mu.Unlock()
	close(r.stop)
	if goodbyes {
		for idx, svcs := range all {
			var groups []rrGroup
			for _, s := range svcs {
				groups = append(groups, rrGroup{answers: s.records(allRecords, 0)})
			}
			r.send(idx, groups, netip.AddrPort{}, nil)
		}
	}
	r.conn.close()
	r.wg.Wait()
}

func (r *responder) readLoop() {
	buf := make([]byte, 9000)
	for {
		n, info, err := r.conn.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("reading mDNS packet failed", "err", err)
			continue
		}
		if _, ok := r.ifaces[info.ifIndex]; !ok {
			continue
		}
		var msg dns.Msg
		if err := msg.Unpack(buf[:n]); err != nil || msg.Response || msg.Opcode != dns.OpcodeQuery {
			continue
		}
		r.handleQuery(&msg, info)
	}
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// jitter returns a random delay of 20 to 120 ms, which RFC 6762 section 6
// asks of responses that contain shared records, so that many responders
// do not answer one query at the same instant.
func jitter() time.Duration {
	return 20*time.Millisecond + rand.N(100*time.Millisecond)
}
