package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AnnouncerOptions configures the gateway's own mDNS announcement. Zero
// values take the documented defaults.
type AnnouncerOptions struct {
	// Interfaces names the clinical VLAN interfaces to announce on.
	// Required.
	Interfaces []string
	// Instance is the DNS-SD instance name. It must name the gateway and
	// never a room, bed or patient. Default "wardgate".
	Instance string
	// Host is the host label of the SRV target and A records, without
	// ".local". Default "wardgate-" and the system host name's first
	// label, reduced to letters, digits and hyphens.
	Host string
	// ServiceType defaults to GatewayServiceType.
	ServiceType string
	// Port is the device API port. Required.
	Port uint16
	// TXT is the raw TXT record. It must be non-empty and within the
	// DNS-SD limits (MaxTXTStringLen per string, MaxTXTSize in total,
	// printable ASCII keys). Default {"txtvers=1", "api=PORT"}.
	TXT []string
	// AddressRefresh is how often interface addresses are re-read; a
	// changed address is withdrawn and the new one announced. Default 30
	// seconds.
	AddressRefresh time.Duration
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
}

// Announcer announces the gateway's service on each clinical interface,
// with only that interface's IPv4 addresses, answers queries for it, and
// sends a goodbye when it stops.
//
// NOTE: it does not probe for name conflicts (RFC 6762 section 8.1), so
// two gateways with the same Instance and Host on one VLAN would both
// answer. Give each gateway its own Host, which the default derives from
// the system host name.
type Announcer struct {
	opts   AnnouncerOptions
	ifaces []netInterface
	r      *responder
	log    *slog.Logger

	mu    sync.Mutex
	addrs map[int]string // last announced addresses, by interface index

	runOnce   sync.Once
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

// NewAnnouncer resolves the interfaces, validates the record and opens
// the socket. It announces nothing until Run.
func NewAnnouncer(opts AnnouncerOptions) (*Announcer, error) {
	if len(opts.Interfaces) == 0 {
		return nil, errors.New("creating mDNS announcer: no interfaces; name at least one clinical VLAN interface")
	}
	if opts.Port == 0 {
		return nil, errors.New("creating mDNS announcer: Port is 0; set the device API port")
	}
	if opts.ServiceType == "" {
		opts.ServiceType = GatewayServiceType
	}
	if err := validateServiceType(opts.ServiceType); err != nil {
		return nil, fmt.Errorf("creating mDNS announcer: %w", err)
	}
	if opts.Instance == "" {
		opts.Instance = "wardgate"
	}
	if err := validateInstance(opts.Instance); err != nil {
		return nil, fmt.Errorf("creating mDNS announcer: %w", err)
	}
	if opts.Host == "" {
		opts.Host = defaultHostLabel()
	}
	if err := validateHostLabel(opts.Host); err != nil {
		return nil, fmt.Errorf("creating mDNS announcer: %w", err)
	}
	if len(opts.TXT) == 0 {
		opts.TXT = []string{"txtvers=1", "api=" + strconv.Itoa(int(opts.Port))}
	}
	if err := validateTXT(opts.TXT); err != nil {
		return nil, fmt.Errorf("creating mDNS announcer: %w", err)
	}
	if opts.AddressRefresh <= 0 {
		opts.AddressRefresh = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Announcer{opts: opts, log: opts.Logger, addrs: map[int]string{}, closed: make(chan struct{}), done: make(chan struct{})}
	for _, name := range opts.Interfaces {
		n, err := resolveInterface(name)
		if err != nil {
			return nil, fmt.Errorf("creating mDNS announcer: %w", err)
		}
		a.ifaces = append(a.ifaces, n)
	}
	r, err := newResponder(a.ifaces, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("creating mDNS announcer: %w", err)
	}
	a.r = r
	return a, nil
}

// Run announces on every interface, then answers queries and follows
// address changes until ctx is done or Close is called. It sends the
// goodbyes before it returns. Run may be called once.
func (a *Announcer) Run(ctx context.Context) error {
	started := false
	a.runOnce.Do(func() { started = true })
	if !started {
		return errors.New("running mDNS announcer: Run was already called")
	}
	defer close(a.done)
	a.log.Info("mDNS announcer started", "interfaces", a.opts.Interfaces, "instance", a.opts.Instance, "port", a.opts.Port)
	a.refresh()
	t := time.NewTicker(a.opts.AddressRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.r.shutdown(true)
			a.log.Info("mDNS announcer stopped; goodbyes sent", "interfaces", a.opts.Interfaces)
			return nil
		case <-a.closed:
			a.r.shutdown(true)
			a.log.Info("mDNS announcer stopped; goodbyes sent", "interfaces", a.opts.Interfaces)
			return nil
		case <-t.C:
			a.refresh()
		}
	}
}

// refresh re-reads each interface's IPv4 addresses and announces the
// service with them when they changed. An interface without an IPv4
// address has its announcement withdrawn.
func (a *Announcer) refresh() {
	for _, n := range a.ifaces {
		ifi, err := resolveInterface(n.name)
		if err != nil {
			a.log.Warn("re-reading interface failed; keeping the last announcement", "interface", n.name, "err", err)
			continue
		}
		addrs := ipv4Addrs(ifi.prefixes)
		key := fmt.Sprint(addrs)
		a.mu.Lock()
		last, announced := a.addrs[n.index]
		a.addrs[n.index] = key
		a.mu.Unlock()
		if announced && last == key {
			continue
		}
		svc := responderService{
			instance: a.opts.Instance, serviceType: a.opts.ServiceType, host: a.opts.Host,
			port: a.opts.Port, txt: a.opts.TXT, addrs: addrs,
		}
		if len(addrs) == 0 {
			a.log.Warn("interface has no IPv4 address; not announcing on it", "interface", n.name)
			a.r.remove(n.index, svc.fqdn())
			continue
		}
		a.log.Info("announcing gateway service", "interface", n.name, "addresses", key)
		a.r.set(n.index, svc)
	}
}

// Close stops Run, which sends the goodbyes, and waits for it. Without Run
// it closes the socket. Close is safe to call more than once.
func (a *Announcer) Close() error {
	a.closeOnce.Do(func() {
		close(a.closed)
		started := true
		a.runOnce.Do(func() { started = false })
		if started {
			<-a.done
		} else {
			a.r.shutdown(false)
		}
	})
	return nil
}

// validateInstance checks a DNS-SD instance name: 1 to 63 bytes of UTF-8
// without control characters (RFC 6763 section 4.1.1).
func validateInstance(s string) error {
	if s == "" || len(s) > 63 || !printableText(s) {
		return fmt.Errorf("invalid instance name %q: use 1 to 63 bytes of printable UTF-8", s)
	}
	return nil
}

// validateHostLabel checks a host label by RFC 1123: letters, digits and
// hyphens, 1 to 63 bytes, not starting or ending with a hyphen.
func validateHostLabel(s string) error {
	ok := s != "" && len(s) <= 63 && s[0] != '-' && s[len(s)-1] != '-'
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("invalid host label %q: use 1 to 63 letters, digits and inner hyphens", s)
	}
	return nil
}

// validateTXT checks a raw TXT record against the DNS-SD limits.
func validateTXT(strs []string) error {
	if len(strs) == 0 {
		return errors.New("TXT record is empty; give at least one key=value string")
	}
	attrs, err := ParseTXT(strs)
	if err != nil {
		return fmt.Errorf("invalid TXT record: %w", err)
	}
	if len(attrs) == 0 {
		return errors.New("TXT record has no attributes; give at least one key=value string")
	}
	return nil
}

func defaultHostLabel() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	var b strings.Builder
	for _, c := range strings.ToLower(h) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		}
	}
	label := strings.Trim("wardgate-"+b.String(), "-")
	if len(label) > 63 {
		label = strings.TrimRight(label[:63], "-")
	}
	return label
}
