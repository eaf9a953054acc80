package discovery

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// multicastRateLimit is the least time between two multicasts of one
// record on one interface in answer to queries (RFC 6762 section 6).
const multicastRateLimit = time.Second

// handleQuery answers a query that arrived on info.ifIndex with that
// interface's records only.
func (r *responder) handleQuery(q *dns.Msg, info packetInfo) {
	r.mu.Lock()
	svcs := make([]*responderService, 0, len(r.services[info.ifIndex]))
	for _, s := range r.services[info.ifIndex] {
		svcs = append(svcs, s)
	}
	r.mu.Unlock()
	if len(svcs) == 0 {
		return
	}
	// A query from a port other than 5353 comes from a legacy unicast
	// querier such as hashicorp/mdns, which expects a unicast reply with
	// the query's ID and question (RFC 6762 section 6.7).
	legacy := info.src.Port() != mdnsPort
	unicast := legacy
	var groups []rrGroup
	for _, question := range q.Question {
		if question.Qclass&cacheFlushBit != 0 {
			unicast = true
		}
		if class := question.Qclass &^ cacheFlushBit; class != dns.ClassINET && class != dns.ClassANY {
			continue
		}
		groups = append(groups, answerQuestion(svcs, strings.ToLower(question.Name), question.Qtype)...)
	}
	groups = suppressKnownAnswers(groups, q.Answer)
	if len(groups) == 0 {
		return
	}
	switch {
	case legacy:
		r.send(info.ifIndex, groups, info.src, q)
	case unicast:
		r.send(info.ifIndex, groups, info.src, nil)
	default:
		r.wg.Go(func() {
			t := time.NewTimer(jitter())
			defer t.Stop()
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
			if groups = r.rateLimit(info.ifIndex, groups); len(groups) > 0 {
				r.send(info.ifIndex, groups, netip.AddrPort{}, nil)
			}
		})
	}
}

// answerQuestion returns the answer groups for one question.
func answerQuestion(svcs []*responderService, name string, qtype uint16) []rrGroup {
	any := qtype == dns.TypeANY
	var groups []rrGroup
	if name == dnsSDEnumeration && (qtype == dns.TypePTR || any) {
		seen := map[string]bool{}
		for _, s := range svcs {
			st := serviceFQDN(s.serviceType)
			if seen[st] {
				continue
			}
			seen[st] = true
			groups = append(groups, rrGroup{answers: []dns.RR{&dns.PTR{
				Hdr: dns.RR_Header{Name: dnsSDEnumeration, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: otherTTL},
				Ptr: st,
			}}})
		}
		return groups
	}
	for _, s := range svcs {
		switch {
		case name == serviceFQDN(s.serviceType) && (qtype == dns.TypePTR || any):
			groups = append(groups, rrGroup{
				answers: s.records(recordKinds{ptr: true}, 1),
				extras:  s.records(recordKinds{srv: true, txt: true, addr: true}, 1),
			})
		case name == strings.ToLower(s.fqdn()):
			kinds := recordKinds{srv: qtype == dns.TypeSRV || any, txt: qtype == dns.TypeTXT || any}
			if !kinds.srv && !kinds.txt {
				continue
			}
			groups = append(groups, rrGroup{answers: s.records(kinds, 1), extras: s.records(recordKinds{addr: true}, 1)})
		case name == strings.ToLower(s.hostName()):
			var answers []dns.RR
			for _, rr := range s.records(recordKinds{addr: true}, 1) {
				if any || rr.Header().Rrtype == qtype {
					answers = append(answers, rr)
				}
			}
			if len(answers) > 0 {
				groups = append(groups, rrGroup{answers: answers})
			}
		}
	}
	return groups
}

// recordKey identifies a record by name, type and data, ignoring TTL and
// the cache-flush bit.
func recordKey(rr dns.RR) string {
	c := dns.Copy(rr)
	c.Header().Ttl = 0
	c.Header().Class &^= cacheFlushBit
	return strings.ToLower(c.String())
}

// suppressKnownAnswers drops answers the querier listed as known with at
// least half their TTL left (RFC 6762 section 7.1), and groups left with
// no answers.
func suppressKnownAnswers(groups []rrGroup, known []dns.RR) []rrGroup {
	if len(known) == 0 {
		return groups
	}
	knownTTL := map[string]uint32{}
	for _, rr := range known {
		knownTTL[recordKey(rr)] = rr.Header().Ttl
	}
	out := groups[:0]
	for _, g := range groups {
		var answers []dns.RR
		for _, rr := range g.answers {
			if ttl, ok := knownTTL[recordKey(rr)]; ok && ttl >= rr.Header().Ttl/2 {
				continue
			}
			answers = append(answers, rr)
		}
		if len(answers) > 0 {
			g.answers = answers
			out = append(out, g)
		}
	}
	return out
}

// rateLimit drops answers multicast on the interface within the last
// second, and groups left with no answers.
func (r *responder) rateLimit(ifIndex int, groups []rrGroup) []rrGroup {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.lastMulticast[ifIndex]
	out := groups[:0]
	for _, g := range groups {
		var answers []dns.RR
		for _, rr := range g.answers {
			if now.Sub(last[recordKey(rr)]) >= multicastRateLimit {
				answers = append(answers, rr)
			}
		}
		if len(answers) > 0 {
			g.answers = answers
			out = append(out, g)
		}
	}
	return out
}

// send packs the groups into as many messages as it takes to keep each
// within maxPacket and sends them: by multicast on the interface when dst
// is invalid, by unicast to dst otherwise. A legacy query, when given,
// sets the reply's ID and question, and caps TTLs without cache-flush
// bits.
func (r *responder) send(ifIndex int, groups []rrGroup, dst netip.AddrPort, legacy *dns.Msg) {
	if legacy != nil {
		for i := range groups {
			groups[i] = rrGroup{answers: legacyCopy(groups[i].answers), extras: legacyCopy(groups[i].extras)}
		}
	}
	newMsg := func() *dns.Msg {
		m := &dns.Msg{Compress: true}
		m.Response, m.Authoritative = true, true
		if legacy != nil {
			m.Id, m.Question = legacy.Id, legacy.Question
		}
		return m
	}
	msg := newMsg()
	inMsg := 0
	for i := 0; i < len(groups); i++ {
		g := groups[i]
		nAns, nExtra := len(msg.Answer), len(msg.Extra)
		msg.Answer = append(msg.Answer, g.answers...)
		msg.Extra = append(msg.Extra, g.extras...)
		if msg.Len() > maxPacket && inMsg > 0 {
			msg.Answer, msg.Extra = msg.Answer[:nAns], msg.Extra[:nExtra]
			r.write(ifIndex, msg, dst)
			msg, inMsg = newMsg(), 0
			i--
			continue
		}
		inMsg++
	}
	if inMsg > 0 {
		r.write(ifIndex, msg, dst)
	}
}

func (r *responder) write(ifIndex int, msg *dns.Msg, dst netip.AddrPort) {
	msg.Extra = dedupeRecords(msg.Extra, msg.Answer)
	pkt, err := msg.Pack()
	if err != nil {
		r.log.Error("packing mDNS response failed", "err", err)
		return
	}
	if dst.IsValid() {
		err = r.out.sendUnicast(pkt, ifIndex, dst)
	} else {
		err = r.out.sendMulticast(pkt, ifIndex)
		if err == nil {
			r.noteMulticast(ifIndex, msg.Answer)
		}
	}
	if err != nil {
		r.log.Warn("sending mDNS response failed", "interface", r.ifaces[ifIndex].name, "destination", dst, "err", err)
	}
}

// maxRateLimitEntries bounds the per-interface map of last multicast
// times; beyond it, entries older than the rate limit are pruned.
const maxRateLimitEntries = 4096

// noteMulticast records when answers were multicast on an interface.
func (r *responder) noteMulticast(ifIndex int, answers []dns.RR) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.lastMulticast[ifIndex]
	for _, rr := range answers {
		last[recordKey(rr)] = now
	}
	if len(last) > maxRateLimitEntries {
		for k, t := range last {
			if now.Sub(t) >= multicastRateLimit {
				delete(last, k)
			}
		}
	}
}

// dedupeRecords drops records from extras that appear in answers or
// earlier in extras.
func dedupeRecords(extras, answers []dns.RR) []dns.RR {
	seen := map[string]bool{}
	for _, rr := range answers {
		seen[recordKey(rr)] = true
	}
	out := extras[:0:0]
	for _, rr := range extras {
		k := recordKey(rr)
		if !seen[k] {
			seen[k] = true
			out = append(out, rr)
		}
	}
	return out
}

func legacyCopy(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Class &^= cacheFlushBit
		c.Header().Ttl = min(c.Header().Ttl, legacyTTL)
		out[i] = c
	}
	return out
}
