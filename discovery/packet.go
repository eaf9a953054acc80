package discovery

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// cacheFlushBit is the top bit of an mDNS resource record class. On a
// record in a response it marks the record set as unique, so receivers
// replace what they cached for that name and type (RFC 6762 section
// 10.2). In a question the same bit requests a unicast response.
const cacheFlushBit = 1 << 15

// dnsSDEnumeration is the DNS-SD service type enumeration name (RFC 6763
// section 9).
const dnsSDEnumeration = "_services._dns-sd._udp.local."

// ptrRecord, srvRecord, txtRecord and addrRecord are the records of one
// response that matter to browsing, with raw (unescaped) text.
type ptrRecord struct {
	instance string
	ttl      uint32
}

type srvRecord struct {
	host string // lower-case FQDN, presentation form
	port uint16
	ttl  uint32
}

type txtRecord struct {
	strs []string
	ttl  uint32
}

type addrRecord struct {
	addr  netip.Addr
	ttl   uint32
	flush bool
}

// response is the content of one mDNS response for one service type.
type response struct {
	// ptrs lists the instances named by PTR records for the service,
	// in packet order.
	ptrs []ptrRecord
	// srvs and txts are keyed by raw instance label.
	srvs map[string]srvRecord
	txts map[string]txtRecord
	// addrs is keyed by lower-case host FQDN.
	addrs map[string][]addrRecord
	// foreign counts PTR, SRV and TXT records of other service types.
	foreign int
}

var errNotResponse = errors.New("message is not an mDNS response")

// parseResponse decodes an mDNS message and collects the records that
// belong to service, a lower-case FQDN such as
// "_wardgate-device._tcp.local.". Answers and additional records are both
// read, and every instance in the packet is kept. Queries return
// errNotResponse. RFC 6762 section 18 has receivers ignore responses
// with a non-zero opcode or rcode, so those return an error too.
func parseResponse(b []byte, service string) (*response, error) {
	var msg dns.Msg
	if err := msg.Unpack(b); err != nil {
		return nil, fmt.Errorf("decoding mDNS message: %w", err)
	}
	if !msg.Response {
		return nil, errNotResponse
	}
	if msg.Opcode != dns.OpcodeQuery || msg.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("response has opcode %d and rcode %d, want 0 and 0", msg.Opcode, msg.Rcode)
	}
	r := &response{srvs: map[string]srvRecord{}, txts: map[string]txtRecord{}, addrs: map[string][]addrRecord{}}
	for _, section := range [][]dns.RR{msg.Answer, msg.Extra} {
		for _, rr := range section {
			r.add(rr, service)
		}
	}
	return r, nil
}

func (r *response) add(rr dns.RR, service string) {
	h := rr.Header()
	if h.Class&^cacheFlushBit != dns.ClassINET {
		return
	}
	switch rr := rr.(type) {
	case *dns.PTR:
		if !strings.EqualFold(h.Name, service) {
			if !strings.EqualFold(h.Name, dnsSDEnumeration) {
				r.foreign++
			}
			return
		}
		if label, ok := instanceName(rr.Ptr, service); ok {
			r.ptrs = append(r.ptrs, ptrRecord{instance: label, ttl: h.Ttl})
		}
	case *dns.SRV:
		label, ok := instanceName(h.Name, service)
		if !ok {
			r.foreign++
			return
		}
		if _, dup := r.srvs[label]; !dup {
			r.srvs[label] = srvRecord{host: strings.ToLower(rr.Target), port: rr.Port, ttl: h.Ttl}
		}
	case *dns.TXT:
		label, ok := instanceName(h.Name, service)
		if !ok {
			r.foreign++
			return
		}
		if _, dup := r.txts[label]; !dup {
			strs := make([]string, len(rr.Txt))
			for i, s := range rr.Txt {
				strs[i] = unescapePresentation(s)
			}
			r.txts[label] = txtRecord{strs: strs, ttl: h.Ttl}
		}
	case *dns.A:
		if a, ok := netip.AddrFromSlice(rr.A); ok {
			r.addAddr(h, a.Unmap())
		}
	case *dns.AAAA:
		if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
			r.addAddr(h, a)
		}
	}
}

func (r *response) addAddr(h *dns.RR_Header, a netip.Addr) {
	host := strings.ToLower(h.Name)
	r.addrs[host] = append(r.addrs[host], addrRecord{addr: a, ttl: h.Ttl, flush: h.Class&cacheFlushBit != 0})
}

// instances returns every instance label the response has a PTR, SRV or
// TXT record for, in a stable order: PTR order first.
func (r *response) instances() []string {
	seen := map[string]bool{}
	var out []string
	add := func(l string) {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	for _, p := range r.ptrs {
		add(p.instance)
	}
	for _, l := range slices.Sorted(maps.Keys(r.srvs)) {
		add(l)
	}
	for _, l := range slices.Sorted(maps.Keys(r.txts)) {
		add(l)
	}
	return out
}
