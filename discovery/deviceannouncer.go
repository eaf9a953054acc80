package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
)

// SimulatedDevice is one device that a DeviceAnnouncer announces with the
// TXT schema of this package.
type SimulatedDevice struct {
	// Instance is the DNS-SD instance name. Like a real device's, it must
	// not contain room, bed or patient text.
	Instance string
	// Host is the host label of the SRV target and A record. Default
	// "dev-" and the serial, reduced to letters, digits and hyphens.
	Host string
	// Info is the set of claims the TXT record carries.
	Info DeviceInfo
	// Address is the IPv4 address in the A record. Default the
	// interface's first IPv4 address.
	Address netip.Addr
	// Port is the SRV port. Default Info.APIPort, or 443.
	Port uint16
}

// DeviceAnnouncerOptions configures a DeviceAnnouncer.
type DeviceAnnouncerOptions struct {
	// Interface is the interface to announce on. Required.
	Interface string
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
}

// DeviceAnnouncer announces simulated devices on one interface and
// answers queries for them, for the device simulator and for tests. It
// resolves the interface and opens its socket in NewDeviceAnnouncer, so a
// caller can create it inside another network namespace and use it from
// any thread. It is safe for concurrent use.
type DeviceAnnouncer struct {
	iface netInterface
	r     *responder
	log   *slog.Logger

	mu      sync.Mutex
	devices map[string]SimulatedDevice // by lower-case instance
	closed  bool
}

// NewDeviceAnnouncer resolves the interface and starts answering queries
// on it.
func NewDeviceAnnouncer(opts DeviceAnnouncerOptions) (*DeviceAnnouncer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	n, err := resolveInterface(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("creating device announcer: %w", err)
	}
	r, err := newResponder([]netInterface{n}, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("creating device announcer on %q: %w", opts.Interface, err)
	}
	return &DeviceAnnouncer{iface: n, r: r, log: opts.Logger, devices: map[string]SimulatedDevice{}}, nil
}

// Announce adds a device, or replaces the one with the same instance
// name, and announces it. A replaced device whose address changed has
// its old address record withdrawn first.
func (a *DeviceAnnouncer) Announce(dev SimulatedDevice) error {
	svc, err := a.service(dev)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errors.New("announcing device: the announcer is closed")
	}
	a.devices[strings.ToLower(dev.Instance)] = dev
	a.mu.Unlock()
	a.r.set(a.iface.index, svc)
	return nil
}

func (a *DeviceAnnouncer) service(dev SimulatedDevice) (responderService, error) {
	if err := validateInstance(dev.Instance); err != nil {
		return responderService{}, fmt.Errorf("announcing device: %w", err)
	}
	txt, err := dev.Info.TXT()
	if err != nil {
		return responderService{}, fmt.Errorf("announcing device %q: %w", dev.Instance, err)
	}
	host := dev.Host
	if host == "" {
		host = "dev-" + hostSafe(dev.Info.Serial)
	}
	if err := validateHostLabel(host); err != nil {
		return responderService{}, fmt.Errorf("announcing device %q: %w", dev.Instance, err)
	}
	addr := dev.Address
	if !addr.IsValid() {
		addrs := ipv4Addrs(a.iface.prefixes)
		if len(addrs) == 0 {
			return responderService{}, fmt.Errorf("announcing device %q: interface %q has no IPv4 address; set SimulatedDevice.Address", dev.Instance, a.iface.name)
		}
		addr = addrs[0]
	}
	if !addr.Is4() {
		return responderService{}, fmt.Errorf("announcing device %q: address %s is not IPv4; the announcer publishes A records only", dev.Instance, addr)
	}
	port := dev.Port
	if port == 0 {
		port = dev.Info.APIPort
	}
	if port == 0 {
		port = 443
	}
	return responderService{
		instance: dev.Instance, serviceType: DeviceServiceType, host: host, port: port, txt: txt, addrs: []netip.Addr{addr},
	}, nil
}

// Withdraw removes a device and sends its goodbye. It returns an error
// when no device has that instance name.
func (a *DeviceAnnouncer) Withdraw(instance string) error {
	a.mu.Lock()
	_, ok := a.devices[strings.ToLower(instance)]
	delete(a.devices, strings.ToLower(instance))
	a.mu.Unlock()
	svc := responderService{instance: instance, serviceType: DeviceServiceType}
	if !ok || !a.r.remove(a.iface.index, svc.fqdn()) {
		return fmt.Errorf("withdrawing device: no device announced as %q", instance)
	}
	return nil
}

// Devices returns the devices being announced.
func (a *DeviceAnnouncer) Devices() []SimulatedDevice {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]SimulatedDevice, 0, len(a.devices))
	for _, d := range a.devices {
		out = append(out, d)
	}
	return out
}

// Close sends a goodbye for every device and stops answering. It is safe
// to call more than once.
func (a *DeviceAnnouncer) Close() error {
	a.stop(true)
	return nil
}

// Abandon stops answering without goodbyes, as a device that loses power
// would. It is safe to call more than once, and after Close.
func (a *DeviceAnnouncer) Abandon() error {
	a.stop(false)
	return nil
}

func (a *DeviceAnnouncer) stop(goodbyes bool) {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.r.shutdown(goodbyes)
}

func hostSafe(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 58 {
		out = strings.TrimRight(out[:58], "-")
	}
	if out == "" {
		out = "x"
	}
	return out
}
