package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// multicastSender sends a packet to the mDNS group on one interface.
// *mdnsConn implements it.
type multicastSender interface {
	sendMulticast(b []byte, ifIndex int) error
}

// Observer stores sightings. *Inventory implements it.
type Observer interface {
	ObserveBatch(ctx context.Context, sightings []Sighting) ([]Event, error)
}

// EventMalformedAnnouncement is the Kind of a browser Event for a device
// announcement whose TXT record does not follow the schema, so it cannot
// become an inventory record. Its Device is the zero value and Details
// has "interface", "instance", "address" and "problems".
const EventMalformedAnnouncement = "malformed-announcement"

// BrowserOptions configures a Browser. Zero values take the documented
// defaults.
type BrowserOptions struct {
	// Interfaces names the clinical VLAN interfaces to browse, such as
	// "eth1.101". Required.
	Interfaces []string
	// ServiceType is the DNS-SD service type devices announce. Default
	// DeviceServiceType.
	ServiceType string
	// Inventory receives the sightings. Required.
	Inventory Observer
	// QueryInterval is the time between queries on each interface, and so
	// the length of one discovery cycle. The cycles after Run starts are
	// shorter: 2 seconds, then doubling up to QueryInterval. Default 60
	// seconds.
	QueryInterval time.Duration
	// QueryWindow is how long each hashicorp/mdns query collects answers.
	// It must be shorter than QueryInterval. Default 1 second.
	QueryWindow time.Duration
	// DisableLibraryQuery turns off the hashicorp/mdns query of each
	// cycle, leaving the browser's own query and listener.
	DisableLibraryQuery bool
	// MaxPending bounds the sightings waiting for the inventory, one per
	// device and interface. Default 65536.
	MaxPending int
	// BatchSize is the largest number of sightings written in one
	// ObserveBatch call. Default 512.
	BatchSize int
	// OnEvent, when set, receives every inventory event that the
	// browser's writes cause, and EventMalformedAnnouncement events. It
	// is called from one goroutine, in order.
	OnEvent func(Event)
	// OnCycle, when set, receives each interface's statistics when its
	// discovery cycle ends. It is called from each interface's own
	// goroutine, so it must be safe for concurrent use.
	OnCycle func(CycleStats)
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the browser's metrics. Default: none.
	Registerer prometheus.Registerer
	// Clock returns the time stamped on sightings. Default time.Now.
	Clock func() time.Time
}

// CycleStats describes one discovery cycle on one interface: the time
// from one query to the next.
type CycleStats struct {
	Interface string
	// Cycle counts from 1.
	Cycle      int
	Start, End time.Time
	// Devices is the number of distinct (manufacturer, serial) identities
	// heard in the cycle, by either path.
	Devices int
	// Listener and Library count the sightings that came from the
	// browser's own socket and from hashicorp/mdns.
	Listener, Library int
}

// Browser discovers devices on clinical VLAN interfaces over mDNS and
// feeds their sightings to an inventory.
//
// hashicorp/mdns v1.0.7 is wrapped, not trusted. Each interface gets its
// own query per cycle through it. Its results are drained into a buffer,
// filtered by service type and checked to be on the interface's subnet,
// because its multicast socket hears every interface. Because the library also
// reports goodbyes as live devices and keeps only the last instance of a
// packet, the browser sends its own query from port 5353, so that
// responses are multicast, and reads every packet on its own socket with
// the arrival interface attached. That listener keeps TTLs, goodbyes
// and all instances, and is the authority on departures.
type Browser struct {
	opts    BrowserOptions
	service string // lower-case FQDN
	ifaces  []netInterface
	byIndex map[int]*ifaceState
	conn    *mdnsConn
	sender  multicastSender
	buffer  *sightingBuffer
	metrics *browserMetrics
	log     *slog.Logger

	// eventMu serialises OnEvent calls.
	eventMu sync.Mutex

	runOnce   sync.Once
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

// NewBrowser resolves the interfaces and opens the browser's socket. It
// sends nothing until Run.
func NewBrowser(opts BrowserOptions) (*Browser, error) {
	if len(opts.Interfaces) == 0 {
		return nil, errors.New("creating mDNS browser: no interfaces; name at least one clinical VLAN interface")
	}
	var ifaces []netInterface
	seen := map[string]bool{}
	for _, name := range opts.Interfaces {
		if seen[name] {
			return nil, fmt.Errorf("creating mDNS browser: interface %q is listed twice", name)
		}
		seen[name] = true
		n, err := resolveInterface(name)
		if err != nil {
			return nil, fmt.Errorf("creating mDNS browser: %w", err)
		}
		ifaces = append(ifaces, n)
	}
	b, err := newBrowser(opts, ifaces)
	if err != nil {
		return nil, err
	}
	b.conn, err = listenMDNS(b.ifaces)
	if err != nil {
		return nil, fmt.Errorf("creating mDNS browser: %w", err)
	}
	b.sender = b.conn
	return b, nil
}

// newBrowser validates opts and builds a browser for resolved interfaces,
// without a socket.
func newBrowser(opts BrowserOptions, ifaces []netInterface) (*Browser, error) {
	if opts.Inventory == nil {
		return nil, errors.New("creating mDNS browser: Inventory is nil; pass the *Inventory to feed")
	}
	if opts.ServiceType == "" {
		opts.ServiceType = DeviceServiceType
	}
	if err := validateServiceType(opts.ServiceType); err != nil {
		return nil, fmt.Errorf("creating mDNS browser: %w", err)
	}
	if opts.QueryInterval == 0 {
		opts.QueryInterval = time.Minute
	}
	if opts.QueryWindow == 0 {
		opts.QueryWindow = time.Second
	}
	if opts.QueryInterval < time.Second || opts.QueryWindow <= 0 || opts.QueryWindow >= opts.QueryInterval {
		return nil, fmt.Errorf("creating mDNS browser: QueryInterval %v must be at least 1s and QueryWindow %v positive and shorter", opts.QueryInterval, opts.QueryWindow)
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 65536
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	m, err := newBrowserMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("creating mDNS browser: %w", err)
	}
	b := &Browser{
		opts:    opts,
		service: serviceFQDN(opts.ServiceType),
		ifaces:  ifaces,
		byIndex: map[int]*ifaceState{},
		buffer:  newSightingBuffer(opts.MaxPending),
		metrics: m,
		log:     opts.Logger,
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, n := range ifaces {
		b.byIndex[n.index] = newIfaceState(n)
	}
	return b, nil
}

// Run browses until ctx is done or Close is called, then writes what is
// still pending and returns. Run may be called once.
func (b *Browser) Run(ctx context.Context) error {
	started := false
	b.runOnce.Do(func() { started = true })
	if !started {
		return errors.New("running mDNS browser: Run was already called")
	}
	defer close(b.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	b.log.Info("mDNS browser started", "interfaces", b.opts.Interfaces, "service", b.opts.ServiceType)

	var wg sync.WaitGroup
	wg.Go(func() { b.readLoop() })
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		b.writeLoop(ctx)
	}()
	for _, st := range b.byIndex {
		wg.Go(func() { b.queryLoop(ctx, st) })
	}
	<-ctx.Done()
	b.conn.close()
	wg.Wait()
	<-writerDone
	// The writer stopped with ctx; write what the listener queued last.
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelFlush()
	b.writePending(flushCtx)
	b.log.Info("mDNS browser stopped", "interfaces", b.opts.Interfaces)
	return nil
}

// Close stops Run and waits for it to return. Without Run it closes the
// socket. Close is safe to call more than once.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		started := true
		b.runOnce.Do(func() { started = false })
		if started {
			<-b.done
		} else {
			b.conn.close()
		}
	})
	return nil
}

// Flush waits until every sighting heard so far is written to the
// inventory, or ctx is done.
func (b *Browser) Flush(ctx context.Context) error {
	if err := b.buffer.wait(ctx); err != nil {
		return fmt.Errorf("flushing mDNS sightings: %w", err)
	}
	return nil
}

// Unidentified returns the announcements currently cached whose TXT
// record could not identify a device, on every interface.
func (b *Browser) Unidentified() []Unidentified {
	var out []Unidentified
	for _, n := range b.ifaces {
		out = append(out, b.byIndex[n.index].unidentified()...)
	}
	return out
}

// readLoop reads packets until the socket is closed.
func (b *Browser) readLoop() {
	buf := make([]byte, 9000)
	for {
		n, info, err := b.conn.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Warn("reading mDNS packet failed", "err", err)
			continue
		}
		st, ok := b.byIndex[info.ifIndex]
		if !ok {
			b.metrics.packets.WithLabelValues("", "other-interface").Inc()
			continue
		}
		b.handlePacket(st, buf[:n], info)
	}
}

// writeLoop writes pending sightings whenever there are some.
func (b *Browser) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.buffer.notify:
		}
		b.writePending(ctx)
	}
}

// writePending writes everything pending, in batches.
func (b *Browser) writePending(ctx context.Context) {
	for {
		batch := b.buffer.take(b.opts.BatchSize)
		if len(batch) == 0 {
			return
		}
		b.metrics.pending.Set(float64(b.buffer.len()))
		events, err := b.opts.Inventory.ObserveBatch(ctx, batch)
		b.buffer.done(len(batch))
		if err != nil {
			b.metrics.writeErrors.Inc()
			b.log.Error("writing mDNS sightings to the inventory failed", "sightings", len(batch), "err", err)
		}
		b.emit(events...)
		if ctx.Err() != nil {
			return
		}
	}
}

func (b *Browser) emit(events ...Event) {
	if b.opts.OnEvent == nil || len(events) == 0 {
		return
	}
	b.eventMu.Lock()
	defer b.eventMu.Unlock()
	for _, e := range events {
		b.opts.OnEvent(e)
	}
}

// queue hands a sighting to the writer.
func (b *Browser) queue(st *ifaceState, s Sighting) {
	st.countCycle(s)
	if !b.buffer.add(s) {
		b.metrics.dropped.Inc()
		b.log.Warn("sighting buffer full; dropped a sighting", "interface", s.Interface, "instance", s.Instance, "max_pending", b.opts.MaxPending)
		return
	}
	b.metrics.sightings.WithLabelValues(s.Interface, s.Source).Inc()
}
