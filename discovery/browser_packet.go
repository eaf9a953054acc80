package discovery

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// instanceQueryInterval rate-limits the browser's queries for the missing
// records of one instance.
const instanceQueryInterval = time.Second

// handlePacket applies one packet read on st's interface to the cache and
// queues the sightings it yields.
func (b *Browser) handlePacket(st *ifaceState, pkt []byte, info packetInfo) {
	iface := st.n.name
	resp, err := parseResponse(pkt, b.service)
	switch {
	case errors.Is(err, errNotResponse):
		b.metrics.packets.WithLabelValues(iface, "query").Inc()
		return
	case err != nil:
		b.metrics.packets.WithLabelValues(iface, "malformed").Inc()
		b.log.Debug("ignored undecodable mDNS packet", "interface", iface, "source", info.src, "err", err)
		return
	}
	// RFC 6762 section 6: responses whose source port is not 5353 are
	// silently ignored. Section 11: responses from off the local link
	// are ignored too.
	if info.src.Port() != mdnsPort {
		b.metrics.packets.WithLabelValues(iface, "wrong-port").Inc()
		return
	}
	if !st.n.onLink(info.src.Addr()) {
		b.metrics.packets.WithLabelValues(iface, "off-link").Inc()
		return
	}
	b.metrics.packets.WithLabelValues(iface, "response").Inc()
	if resp.foreign > 0 {
		b.metrics.foreign.WithLabelValues(iface).Add(float64(resp.foreign))
	}

	now := b.opts.Clock()
	var sightings []Sighting
	var malformed []Event
	var queries []dns.Question

	st.mu.Lock()
	for host, recs := range resp.addrs {
		if !st.setAddrs(host, recs, now) {
			b.metrics.cacheFull.WithLabelValues(iface).Inc()
		}
	}
	ptrTTL := map[string]uint32{}
	for _, p := range resp.ptrs {
		if _, dup := ptrTTL[p.instance]; !dup {
			ptrTTL[p.instance] = p.ttl
		}
	}
	inPacket := map[string]bool{}
	for _, label := range resp.instances() {
		in := st.instance(label)
		if in == nil {
			b.metrics.cacheFull.WithLabelValues(iface).Inc()
			continue
		}
		inPacket[strings.ToLower(label)] = true
		goodbye, live, ttl := applyInstanceRecords(in, resp, ptrTTL, label)
		if goodbye {
			if !in.goodbye {
				in.goodbye, in.goodbyeAt = true, now
				if in.hasTXT && in.infoErr == nil {
					sightings = append(sightings, Sighting{
						Info: in.info, Interface: iface, Instance: in.label, Goodbye: true, Time: now, Source: SourceListener,
					})
				}
			}
			continue
		}
		if !live {
			continue
		}
		in.goodbye, in.lastSeen = false, now
		if exp := now.Add(ttlDuration(ttl)); exp.After(in.expires) {
			in.expires = exp
		}
		s, ev, q := b.liveSighting(st, in, info.src.Addr(), now)
		sightings = append(sightings, s...)
		malformed = append(malformed, ev...)
		queries = append(queries, q...)
	}
	// An address record alone (a device that changed address and
	// announced only its host) updates every instance on that host.
	uncovered := false
	for host := range resp.addrs {
		covered := false
		for key := range inPacket {
			if st.instances[key] != nil && st.instances[key].host == host {
				covered = true
				break
			}
		}
		uncovered = uncovered || !covered
	}
	if uncovered {
		for key, in := range st.instances {
			if inPacket[key] || in.goodbye || resp.addrs[in.host] == nil {
				continue
			}
			s, _, _ := b.liveSighting(st, in, netip.Addr{}, now)
			sightings = append(sightings, s...)
		}
	}
	st.mu.Unlock()

	if len(queries) > 0 {
		b.sendQuery(st, queries)
	}
	for _, s := range sightings {
		b.queue(st, s)
	}
	if len(malformed) > 0 {
		b.metrics.malformedTXT.WithLabelValues(iface).Add(float64(len(malformed)))
		b.emit(malformed...)
	}
}

// applyInstanceRecords applies a packet's PTR, SRV and TXT records of one
// instance. A TTL of 0 on the PTR or SRV record is a goodbye (RFC 6762
// section 10.1). ttl is the longest TTL of the live records.
func applyInstanceRecords(in *instanceState, resp *response, ptrTTL map[string]uint32, label string) (goodbye, live bool, ttl uint32) {
	if t, ok := ptrTTL[label]; ok {
		if t == 0 {
			goodbye = true
		} else {
			live, ttl = true, max(ttl, t)
		}
	}
	if srv, ok := resp.srvs[label]; ok {
		if srv.ttl == 0 {
			goodbye = true
		} else {
			in.host, in.port = srv.host, srv.port
			live, ttl = true, max(ttl, srv.ttl)
		}
	}
	if txt, ok := resp.txts[label]; ok {
		// A goodbye's TXT record still names the device, which matters
		// when the listener never heard it live.
		if txt.ttl > 0 || !in.hasTXT {
			key := strings.Join(txt.strs, "\x00")
			if !in.hasTXT || key != in.txtKey {
				in.info, in.infoErr = ParseDeviceTXT(txt.strs)
				in.txtKey, in.hasTXT = key, true
			}
		}
		if txt.ttl == 0 {
			goodbye = true
		} else {
			live, ttl = true, max(ttl, txt.ttl)
		}
	}
	return goodbye, live && !goodbye, ttl
}

// liveSighting builds the sighting of a live instance, or the malformed
// event or the queries for its missing records. src is the packet source,
// used as the device address when no address record is cached. The
// caller holds st.mu.
func (b *Browser) liveSighting(st *ifaceState, in *instanceState, src netip.Addr, now time.Time) ([]Sighting, []Event, []dns.Question) {
	var queries []dns.Question
	wantQuery := now.Sub(in.lastQuery) >= instanceQueryInterval
	fqdn := escapeLabel(in.label) + "." + b.service
	if !in.hasTXT || in.host == "" {
		if wantQuery {
			in.lastQuery = now
			queries = append(queries, dns.Question{Name: fqdn, Qtype: dns.TypeANY, Qclass: dns.ClassINET})
		}
		if !in.hasTXT {
			return nil, nil, queries
		}
	}
	addrs := st.addrsOf(in.host, now)
	if len(addrs) == 0 {
		if in.host != "" && wantQuery {
			in.lastQuery = now
			queries = append(queries, dns.Question{Name: in.host, Qtype: dns.TypeA, Qclass: dns.ClassINET})
		}
		if !src.IsValid() {
			// A packet of address records alone that withdrew the host's
			// last address carries no news about the instance.
			return nil, nil, queries
		}
		addrs = []netip.Addr{src}
	}
	if in.infoErr != nil {
		var addr netip.Addr
		if len(addrs) > 0 {
			addr = addrs[0]
		}
		if !st.markUnidentified(in, addr, now) {
			return nil, nil, queries
		}
		e := newEvent(EventMalformedAnnouncement, now, map[string]string{
			"interface": st.n.name, "instance": in.label, "address": addr.String(), "problems": st.bad[strings.ToLower(in.label)].Problems,
		})
		return nil, []Event{e}, queries
	}
	s := Sighting{
		Info: in.info, Interface: st.n.name, Instance: in.label, Addresses: addrs, Port: in.port, Time: now, Source: SourceListener,
	}
	return []Sighting{s}, nil, queries
}

// sendQuery multicasts a query with the given questions on st's
// interface, from port 5353 so that answers are multicast (RFC 6762
// section 6.7).
func (b *Browser) sendQuery(st *ifaceState, questions []dns.Question) {
	msg := new(dns.Msg)
	msg.Question = questions
	pkt, err := msg.Pack()
	if err != nil {
		b.log.Error("packing mDNS query failed", "interface", st.n.name, "err", err)
		return
	}
	if err := b.sender.sendMulticast(pkt, st.n.index); err != nil {
		b.metrics.sendErrors.WithLabelValues(st.n.name).Inc()
		b.log.Warn("sending mDNS query failed", "interface", st.n.name, "err", err)
		return
	}
	b.metrics.queries.WithLabelValues(st.n.name, SourceListener).Inc()
}
