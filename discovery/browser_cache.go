package discovery

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Cache bounds per interface. They exceed any one VLAN's device count by
// far and keep a flood of fake announcements from growing memory without
// limit; entries beyond them are dropped and counted.
const (
	maxInstancesPerInterface    = 16384
	maxHostsPerInterface        = 16384
	maxUnidentifiedPerInterface = 1024
	// goodbyeMemory is how long a goodbye suppresses hashicorp/mdns
	// results for the same instance, unless the listener hears the
	// instance live again first.
	goodbyeMemory = 10 * time.Minute
)

// instanceState is the browser's cached state of one service instance on
// one interface.
type instanceState struct {
	label string
	host  string // lower-case FQDN from SRV
	port  uint16
	// info is the parsed TXT record, valid when hasTXT and infoErr is nil.
	info    DeviceInfo
	infoErr error
	hasTXT  bool
	// txtKey is the raw TXT record joined, to notice changes.
	txtKey   string
	lastSeen time.Time
	// expires is when the instance's longest-lived record runs out.
	expires   time.Time
	goodbye   bool
	goodbyeAt time.Time
	// lastQuery rate-limits queries for missing records.
	lastQuery time.Time
	// reported is the txtKey last reported as malformed, valid when
	// wasReported.
	reported    string
	wasReported bool
}

// hostAddr is one cached address record of a host.
type hostAddr struct {
	addr    netip.Addr
	expires time.Time
	seen    time.Time
}

// Unidentified is a cached announcement whose TXT record could not
// identify a device. It is kept, not dropped, so operators can see
// devices that announce the service without a usable record.
type Unidentified struct {
	Interface string
	Instance  string
	Address   netip.Addr
	Problems  string
	FirstSeen time.Time
	LastSeen  time.Time
}

// ifaceState is the browser's cache and cycle statistics for one
// interface. mu guards every field below it.
type ifaceState struct {
	n  netInterface
	mu sync.Mutex

	instances map[string]*instanceState // by lower-case label
	hosts     map[string][]hostAddr     // by lower-case host FQDN
	bad       map[string]*Unidentified  // by lower-case label

	cycle      int
	cycleStart time.Time
	cycleIDs   map[[2]string]struct{}
	cycleCount [2]int // listener, library
}

func newIfaceState(n netInterface) *ifaceState {
	return &ifaceState{
		n:         n,
		instances: map[string]*instanceState{},
		hosts:     map[string][]hostAddr{},
		bad:       map[string]*Unidentified{},
		cycleIDs:  map[[2]string]struct{}{},
	}
}

func (st *ifaceState) countCycle(s Sighting) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !s.Goodbye {
		st.cycleIDs[[2]string{s.Info.Manufacturer, s.Info.Serial}] = struct{}{}
	}
	if s.Source == SourceQuery {
		st.cycleCount[1]++
	} else {
		st.cycleCount[0]++
	}
}

// nextCycle ends the current cycle and returns its statistics; ok is
// false before the first cycle.
func (st *ifaceState) nextCycle(now time.Time) (CycleStats, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	stats := CycleStats{
		Interface: st.n.name, Cycle: st.cycle, Start: st.cycleStart, End: now,
		Devices: len(st.cycleIDs), Listener: st.cycleCount[0], Library: st.cycleCount[1],
	}
	ok := st.cycle > 0
	st.cycle++
	st.cycleStart = now
	clear(st.cycleIDs)
	st.cycleCount = [2]int{}
	return stats, ok
}

// instance returns the cached state of label, creating it when there is
// room. The caller holds st.mu.
func (st *ifaceState) instance(label string) *instanceState {
	key := strings.ToLower(label)
	if in, ok := st.instances[key]; ok {
		return in
	}
	if len(st.instances) >= maxInstancesPerInterface {
		return nil
	}
	in := &instanceState{label: label}
	st.instances[key] = in
	return in
}

// setAddrs applies the address records of one host from one packet. A
// record with TTL 0 removes its address. A record with the cache-flush
// bit replaces the host's other addresses of the same family (RFC 6762
// section 10.2). The caller holds st.mu.
func (st *ifaceState) setAddrs(host string, recs []addrRecord, now time.Time) bool {
	cur, known := st.hosts[host]
	if !known && len(st.hosts) >= maxHostsPerInterface {
		return false
	}
	for _, r := range recs {
		if r.flush && r.ttl > 0 {
			fresh := func(h hostAddr) bool {
				return h.addr.Is4() == r.addr.Is4() && !slices.ContainsFunc(recs, func(o addrRecord) bool { return o.addr == h.addr })
			}
			cur = slices.DeleteFunc(cur, fresh)
		}
	}
	for _, r := range recs {
		i := slices.IndexFunc(cur, func(h hostAddr) bool { return h.addr == r.addr })
		switch {
		case r.ttl == 0 && i >= 0:
			cur = slices.Delete(cur, i, i+1)
		case r.ttl == 0:
		case i >= 0:
			cur[i].expires, cur[i].seen = now.Add(ttlDuration(r.ttl)), now
		default:
			cur = append(cur, hostAddr{addr: r.addr, expires: now.Add(ttlDuration(r.ttl)), seen: now})
		}
	}
	st.hosts[host] = cur
	return true
}

// addrsOf returns the host's freshest unexpired address of each family.
// The caller holds st.mu.
func (st *ifaceState) addrsOf(host string, now time.Time) []netip.Addr {
	var best4, best6 *hostAddr
	for i := range st.hosts[host] {
		h := &st.hosts[host][i]
		if !h.expires.After(now) {
			continue
		}
		best := &best6
		if h.addr.Is4() {
			best = &best4
		}
		if *best == nil || h.seen.After((*best).seen) {
			*best = h
		}
	}
	var out []netip.Addr
	for _, h := range []*hostAddr{best4, best6} {
		if h != nil {
			out = append(out, h.addr)
		}
	}
	return out
}

// expire drops instances, hosts and unidentified entries whose records
// ran out. The caller holds st.mu.
func (st *ifaceState) expire(now time.Time) {
	for k, in := range st.instances {
		if in.goodbye && now.Sub(in.goodbyeAt) > goodbyeMemory || !in.goodbye && now.After(in.expires) {
			delete(st.instances, k)
		}
	}
	for h, addrs := range st.hosts {
		addrs = slices.DeleteFunc(addrs, func(a hostAddr) bool { return !a.expires.After(now) })
		if len(addrs) == 0 {
			delete(st.hosts, h)
		} else {
			st.hosts[h] = addrs
		}
	}
	for k := range st.bad {
		if _, ok := st.instances[k]; !ok {
			delete(st.bad, k)
		}
	}
}

func (st *ifaceState) unidentified() []Unidentified {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]Unidentified, 0, len(st.bad))
	for _, u := range st.bad {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b Unidentified) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}

// markUnidentified records a malformed announcement and reports whether it
// is new or changed. The caller holds st.mu.
func (st *ifaceState) markUnidentified(in *instanceState, addr netip.Addr, now time.Time) bool {
	key := strings.ToLower(in.label)
	u, ok := st.bad[key]
	if !ok {
		if len(st.bad) >= maxUnidentifiedPerInterface {
			return false
		}
		u = &Unidentified{Interface: st.n.name, Instance: in.label, FirstSeen: now}
		st.bad[key] = u
	}
	u.LastSeen, u.Address = now, addr
	var txtErr *TXTError
	if errors.As(in.infoErr, &txtErr) {
		u.Problems = strings.Join(txtErr.Problems, "; ")
	} else if in.infoErr != nil {
		u.Problems = in.infoErr.Error()
	}
	if in.wasReported && in.reported == in.txtKey {
		return false
	}
	in.reported, in.wasReported = in.txtKey, true
	return true
}

func ttlDuration(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }
