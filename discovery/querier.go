package discovery

import (
	"context"
	"log"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/miekg/dns"
)

// queryLoop runs the discovery cycles of one interface: each cycle sends
// the browser's own query, runs one hashicorp/mdns query and expires the
// cache. RFC 6762 section 5.2 has a querier start with short intervals
// that double, so the first cycles last 2, 4, 8 seconds and so on up to
// QueryInterval. Two seconds, not one, because a responder multicasts a
// record at most once a second and delays its answer by up to 120 ms.
func (b *Browser) queryLoop(ctx context.Context, st *ifaceState) {
	startup := 2 * time.Second
	for {
		start := time.Now()
		if stats, ok := st.nextCycle(b.opts.Clock()); ok {
			b.metrics.cycleDevices.WithLabelValues(st.n.name).Set(float64(stats.Devices))
			if b.opts.OnCycle != nil {
				b.opts.OnCycle(stats)
			}
		}
		b.sendQuery(st, []dns.Question{{Name: b.service, Qtype: dns.TypePTR, Qclass: dns.ClassINET}})
		if !b.opts.DisableLibraryQuery {
			b.libraryQuery(ctx, st)
		}
		st.mu.Lock()
		st.expire(b.opts.Clock())
		st.mu.Unlock()

		wait := min(startup, b.opts.QueryInterval)
		startup *= 2
		t := time.NewTimer(wait - time.Since(start))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// libraryQuery runs one hashicorp/mdns query on st's interface. The
// library drops results when its channel is not read in time, so a
// goroutine drains the channel into a slice for the whole query window.
// The entries are handled after the query returns.
func (b *Browser) libraryQuery(ctx context.Context, st *ifaceState) {
	entries := make(chan *mdns.ServiceEntry, 256)
	var mu sync.Mutex
	var buffered []*mdns.ServiceEntry
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for e := range entries {
			mu.Lock()
			buffered = append(buffered, e)
			mu.Unlock()
		}
	}()
	params := &mdns.QueryParam{
		Service:   b.opts.ServiceType,
		Domain:    "local",
		Timeout:   b.opts.QueryWindow,
		Interface: st.n.ifi,
		Entries:   entries,
		// The browser's own listener is IPv4 only, so the library is too.
		// AAAA records in IPv4 answers are still read.
		DisableIPv6: true,
		Logger:      log.New(slogWriter{b.log, st.n.name}, "", 0),
	}
	err := mdns.QueryContext(ctx, params)
	close(entries)
	<-drained
	b.metrics.queries.WithLabelValues(st.n.name, SourceQuery).Inc()
	if err != nil && ctx.Err() == nil {
		b.metrics.sendErrors.WithLabelValues(st.n.name).Inc()
		b.log.Warn("hashicorp/mdns query failed; the browser's own query and listener continue", "interface", st.n.name, "err", err)
	}
	for _, e := range buffered {
		b.handleLibraryEntry(st, e)
	}
}

// handleLibraryEntry turns one hashicorp/mdns result into a sighting,
// after the checks the library does not make.
func (b *Browser) handleLibraryEntry(st *ifaceState, e *mdns.ServiceEntry) {
	iface := st.n.name
	// The library accepts any PTR in a response, whatever its service.
	label, ok := instanceName(e.Name, b.service)
	if !ok {
		b.metrics.library.WithLabelValues(iface, "foreign").Inc()
		return
	}
	// The library's multicast socket hears every interface, so a result
	// belongs to this one only when its address is in one of this
	// interface's subnets. A link-local address exists on every link and
	// proves nothing, so a result with only link-local addresses is left
	// to the listener, which reads the arrival interface of each packet.
	var addrs []netip.Addr
	for _, ip := range [][]byte{e.AddrV4, e.AddrV6} {
		if a, ok := netip.AddrFromSlice(ip); ok && st.n.inSubnet(a.Unmap()) {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		b.metrics.library.WithLabelValues(iface, "off-link").Inc()
		return
	}
	strs := make([]string, len(e.InfoFields))
	for i, s := range e.InfoFields {
		strs[i] = unescapePresentation(s)
	}
	info, err := ParseDeviceTXT(strs)
	if err != nil {
		// The listener reports malformed records with their details.
		b.metrics.library.WithLabelValues(iface, "malformed").Inc()
		return
	}
	now := b.opts.Clock()
	st.mu.Lock()
	in := st.instances[strings.ToLower(label)]
	// The library reports a goodbye as a live device. The listener is the
	// authority on departures, so a result for an instance whose last
	// record on the listener was a goodbye is ignored until the listener
	// hears the instance live again.
	suppressed := in != nil && in.goodbye
	st.mu.Unlock()
	if suppressed {
		b.metrics.library.WithLabelValues(iface, "after-goodbye").Inc()
		return
	}
	b.metrics.library.WithLabelValues(iface, "accepted").Inc()
	b.queue(st, Sighting{
		Info: info, Interface: iface, Instance: label, Addresses: addrs, Port: uint16(e.Port), Time: now, Source: SourceQuery,
	})
}

// slogWriter adapts hashicorp/mdns's *log.Logger output to slog, at debug
// level because the library logs every undecodable packet it hears.
type slogWriter struct {
	log   *slog.Logger
	iface string
}

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("hashicorp/mdns: "+strings.TrimSpace(string(p)), "interface", w.iface)
	return len(p), nil
}
