// Package tunnel is the gateway's one upstream connection to the hub.
// It owns the choice of transport: QUIC with HTTP/3, or HTTP/2 on TLS
// over TCP, directly or through an HTTP CONNECT proxy, for networks that
// block UDP. It also owns the liveness settings, redialling with capped
// full-jitter backoff, re-probing QUIC while on TCP, and the control
// stream on which the hub pushes notices. Requests that a lost connection
// interrupted are retried when they carry an idempotency key. Bodies are
// held to a priority-aware bandwidth cap. The package renews the gateway
// certificate, detects hub refusals and TLS inspection, and exposes all
// of it in metrics and a status.
//
// The tunnel never holds more than one connection open: a new one is
// dialled only after the previous one is closed, and a QUIC probe made
// while on TCP stops its handshake before it becomes a connection.
package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"
)

// Transport preferences.
const (
	// TransportAuto uses QUIC and falls back to TCP when QUIC cannot
	// connect, re-probing QUIC while on TCP.
	TransportAuto = "auto"
	// TransportQUIC uses QUIC only.
	TransportQUIC = "quic"
	// TransportTCP uses HTTP/2 on TLS over TCP only.
	TransportTCP = "tcp"
)

// Defaults of Options. With a keep-alive every 3 s and a 10 s idle
// timeout a dead hub or path is noticed within about 10 s; HTTP/2 pings
// after 3 s of silence and gives up 5 s later. Redials wait a uniformly
// random delay up to a ceiling that doubles from 100 ms to 2 s. The cap
// is low because a failed attempt costs only a few packets, and the
// jitter still spreads gateways apart after a hub restart. So the tunnel
// is back within a few seconds of the path.
const (
	DefaultKeepAlivePeriod = 3 * time.Second
	DefaultMaxIdleTimeout  = 10 * time.Second
	DefaultQUICDialTimeout = 4 * time.Second
	DefaultTCPDialTimeout  = 10 * time.Second
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 2 * time.Second
	DefaultRefusedRetry    = time.Minute
	DefaultReprobeInterval = 5 * time.Minute
	h2PingAfter            = 3 * time.Second
	h2PingTimeout          = 5 * time.Second
	helloTimeout           = 10 * time.Second
	drainTimeout           = 3 * time.Second
	maxRefusedBackoff      = 15 * time.Minute
	// stableAfter is how long a connection must last for the next
	// redial to start without delay.
	stableAfter = 10 * time.Second
)

// ErrClosed is returned by requests made after Close.
var ErrClosed = errors.New("tunnel closed")

// Options configures a Client.
type Options struct {
	// Addr is the hub's QUIC address, host:port over UDP.
	Addr string
	// TCPAddr is the hub's HTTP/2 address, host:port over TCP; empty
	// means the same as Addr.
	TCPAddr string
	// TLS carries the gateway's client certificate (Certificates[0]),
	// the hub CA pool (RootCAs) and the server name.
	TLS *tls.Config
	// Transport is TransportAuto (the default), TransportQUIC or
	// TransportTCP.
	Transport string
	// Proxy is the HTTP CONNECT proxy for the TCP transport; nil dials
	// the hub directly.
	Proxy *Proxy
	// ReprobeInterval is how often QUIC is tried again while on TCP.
	ReprobeInterval time.Duration
	// BandwidthLimit caps upstream request and response bodies together,
	// in bytes per second; 0 means no cap.
	BandwidthLimit int64
	// SaveCertificate persists a renewed client certificate. Nil turns
	// renewal off.
	SaveCertificate func(tls.Certificate) error
	// RenewMinInterval is the least time between two renewals; zero
	// means an hour.
	RenewMinInterval time.Duration
	// OnNotice is called for every valid notice, from one goroutine.
	OnNotice func(Notice)
	// MinBackoff and MaxBackoff bound the redial delay after a network
	// failure.
	MinBackoff, MaxBackoff time.Duration
	// RefusedRetry is the first delay after the hub refused the gateway
	// or TLS inspection was detected; it doubles up to 15 minutes.
	RefusedRetry time.Duration
	// KeepAlivePeriod and MaxIdleTimeout set QUIC liveness.
	KeepAlivePeriod, MaxIdleTimeout time.Duration
	// QUICDialTimeout bounds a QUIC handshake before TCP is tried.
	QUICDialTimeout time.Duration
	// TCPDialTimeout bounds the TCP connect, proxy CONNECT and TLS
	// handshake.
	TCPDialTimeout time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Client owns the tunnel. Run keeps it connected; RoundTrip sends a
// request over it. Client is safe for concurrent use.
type Client struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	limiter *Limiter
	h3      *http3.Transport
	cert    atomic.Pointer[tls.Certificate]

	mu            sync.Mutex
	cur           *session      // usable session, or nil
	changed       chan struct{} // closed and replaced on every change of cur or refusal
	closed        bool
	refusal       *RefusedError
	state         string
	stateSince    time.Time
	lastErr       error
	inspection    *InspectionError
	quicDownSince time.Time
	dials         int
	open          int
	maxOpen       int
	nextID        uint64
	hello         helloInfo
	renewedAt     time.Time
	runDone       chan struct{}
	running       bool

	// testDial and testProbe replace the network in unit tests.
	testDial  func(ctx context.Context, transport string) (link, string, error)
	testProbe func(ctx context.Context) error
}

// New returns a client that is not yet connected.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("tunnel needs the hub address")
	}
	if opts.TLS == nil || len(opts.TLS.Certificates) == 0 {
		return nil, errors.New("tunnel needs a TLS config with the gateway certificate")
	}
	switch opts.Transport {
	case "":
		opts.Transport = TransportAuto
	case TransportAuto, TransportQUIC, TransportTCP:
	default:
		return nil, fmt.Errorf("tunnel transport %q must be auto, quic or tcp", opts.Transport)
	}
	if opts.TCPAddr == "" {
		opts.TCPAddr = opts.Addr
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	setDefault(&opts.MinBackoff, DefaultMinBackoff)
	setDefault(&opts.MaxBackoff, DefaultMaxBackoff)
	setDefault(&opts.RefusedRetry, DefaultRefusedRetry)
	setDefault(&opts.ReprobeInterval, DefaultReprobeInterval)
	setDefault(&opts.KeepAlivePeriod, DefaultKeepAlivePeriod)
	setDefault(&opts.MaxIdleTimeout, DefaultMaxIdleTimeout)
	setDefault(&opts.QUICDialTimeout, DefaultQUICDialTimeout)
	setDefault(&opts.TCPDialTimeout, DefaultTCPDialTimeout)
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.BandwidthLimit < 0 {
		return nil, fmt.Errorf("tunnel bandwidth limit %d must not be negative", opts.BandwidthLimit)
	}
	c := &Client{
		opts:    opts,
		log:     opts.Logger.With("component", "tunnel"),
		limiter: NewLimiter(opts.BandwidthLimit),
		h3:      &http3.Transport{},
		changed: make(chan struct{}),
		state:   StateIdle,
	}
	c.stateSince = time.Now()
	c.metrics = newMetrics(opts.Registerer, c)
	cert := opts.TLS.Certificates[0]
	c.cert.Store(&cert)
	c.metrics.certExpiry.Set(float64(certNotAfter(cert).Unix()))
	return c, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Dials returns how many connections the client has opened.
func (c *Client) Dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// Open returns how many connections are open now: 0 or 1.
func (c *Client) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// MaxOpen returns the most connections that were ever open at once.
func (c *Client) MaxOpen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxOpen
}

// Connected reports whether a connection that the hub accepted is open.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Transport returns the transport of the open connection, or "".
func (c *Client) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.transport
}

// LastError returns the error that ended the last connection or dial.
// While the hub refuses the gateway, it is the hub's *RefusedError; while
// TLS inspection breaks the tunnel, it is an *InspectionError.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Certificate returns the client certificate that the next connection
// presents.
func (c *Client) Certificate() tls.Certificate { return *c.cert.Load() }

// HTTPClient returns an http.Client whose requests ride the tunnel. The
// URL's host is ignored; use "https://wardhub/...". Deadlines come from
// each request's context.
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: c}
}

// Close ends the tunnel and waits for Run to return; requests made
// afterwards fail with ErrClosed. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	done, running := c.runDone, c.running
	c.mu.Unlock()
	c.shutdown()
	if running {
		<-done
	}
	return nil
}

func (c *Client) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	cur := c.cur
	c.cur = nil
	c.setStateLocked(StateStopped)
	c.broadcastLocked()
	c.mu.Unlock()
	if cur != nil {
		cur.link.Close("gateway shutting down")
	}
}

// broadcastLocked wakes every request waiting for a change.
func (c *Client) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) setStateLocked(s string) {
	if c.state != s {
		c.state, c.stateSince = s, time.Now()
		c.metrics.setState(s)
	}
}

func (c *Client) setState(s string) {
	c.mu.Lock()
	c.setStateLocked(s)
	c.mu.Unlock()
}
