// Package tunnel is the gateway's one upstream connection: a QUIC
// connection to the hub with mutual TLS and HTTP/3 on top. Every upstream
// request rides it, and the hub's notices arrive on a control stream that
// the gateway opens. The tunnel redials with exponential backoff and full
// jitter when the connection ends, and never holds more than one
// connection open.
package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Liveness: a keep-alive every 3 s and a 10 s idle timeout notice a dead
// hub or path within about 10 s.
const (
	keepAlivePeriod = 3 * time.Second
	maxIdleTimeout  = 10 * time.Second
	dialTimeout     = 10 * time.Second
	// maxNoticeLine bounds one control stream message; longer lines are
	// counted and dropped.
	maxNoticeLine = 64 << 10
)

// ErrClosed is returned by requests made after Close.
var ErrClosed = errors.New("tunnel closed")

// Notice is one message from the hub's control stream.
type Notice struct {
	Type    string `json:"type"`
	Version int64  `json:"version,omitempty"`
	Target  string `json:"target,omitempty"`
}

// Options configures a Client.
type Options struct {
	// Addr is the hub's UDP address, host:port.
	Addr string
	// TLS carries the gateway's client certificate, the hub CA pool and
	// the server name.
	TLS *tls.Config
	// OnNotice is called for every valid notice, from one goroutine.
	OnNotice func(Notice)
	// MinBackoff and MaxBackoff bound the redial delay; zero values mean
	// 200 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	Registerer             prometheus.Registerer
}

// Client owns the tunnel. Run keeps it connected; RoundTrip sends a
// request over it. Client is safe for concurrent use.
type Client struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	tr      *http3.Transport

	mu      sync.Mutex
	conn    *quic.Conn
	cc      *http3.ClientConn
	ready   chan struct{} // closed when conn is set; replaced when it ends
	closed  bool
	dials   int
	lastErr error
}

// New returns a client that is not yet connected.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("tunnel needs the hub address")
	}
	if opts.TLS == nil {
		return nil, errors.New("tunnel needs a TLS config with the gateway certificate")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	tlsConf := opts.TLS.Clone()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	tlsConf.MinVersion = tls.VersionTLS13
	opts.TLS = tlsConf
	return &Client{
		opts:    opts,
		log:     opts.Logger.With("component", "tunnel"),
		metrics: newMetrics(opts.Registerer),
		tr:      &http3.Transport{},
		ready:   make(chan struct{}),
	}, nil
}

// Dials returns how many connections the client has opened.
func (c *Client) Dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// Connected reports whether a connection is open now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// LastError returns the error that ended the last connection or dial.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// HTTPClient returns an http.Client whose requests ride the tunnel. The
// URL's host is ignored; use "https://wardhub/...". Deadlines come from
// each request's context.
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: c}
}

// RoundTrip sends req over the current connection, waiting for one until
// req's context ends.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	cc, conn, err := c.wait(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		if conn.Context().Err() != nil {
			return nil, fmt.Errorf("tunnel connection lost during %s %s: %w", req.Method, req.URL.Path, err)
		}
		return nil, err
	}
	c.metrics.requests.WithLabelValues(req.Method).Inc()
	return resp, nil
}

func (c *Client) wait(ctx context.Context) (*http3.ClientConn, *quic.Conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, nil, ErrClosed
		}
		cc, conn, ready := c.cc, c.conn, c.ready
		c.mu.Unlock()
		if cc != nil && conn.Context().Err() == nil {
			return cc, conn, nil
		}
		if cc != nil {
			// The connection died but serve has not yet replaced ready;
			// give it a moment instead of spinning on the closed channel.
			ready = nil
		}
		select {
		case <-ready:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			last := c.LastError()
			if last != nil {
				return nil, nil, fmt.Errorf("waiting for the tunnel: %w (last connection error: %v)", ctx.Err(), last)
			}
			return nil, nil, fmt.Errorf("waiting for the tunnel: %w", ctx.Err())
		}
	}
}

// Run keeps the tunnel connected until ctx ends: it dials, serves the
// control stream, and redials with backoff when the connection ends.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for ctx.Err() == nil {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.setErr(err)
			delay := c.backoff(attempt)
			attempt++
			c.metrics.reconnects.WithLabelValues(causeOf(err)).Inc()
			c.log.Warn("hub unreachable, retrying", "addr", c.opts.Addr, "attempt", attempt, "retry_in", delay.Round(time.Millisecond), "err", err)
			if !sleep(ctx, delay) {
				break
			}
			continue
		}
		attempt = 0
		c.serve(ctx, conn)
		if ctx.Err() == nil {
			cause := context.Cause(conn.Context())
			c.setErr(cause)
			c.metrics.reconnects.WithLabelValues(causeOf(cause)).Inc()
			c.log.Warn("tunnel connection ended", "cause", cause)
		}
	}
	c.shutdown()
	return nil
}

func (c *Client) dial(ctx context.Context) (*quic.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := quic.DialAddr(dctx, c.opts.Addr, c.opts.TLS, &quic.Config{
		KeepAlivePeriod:      keepAlivePeriod,
		MaxIdleTimeout:       maxIdleTimeout,
		HandshakeIdleTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("dialing hub %s: %w", c.opts.Addr, err)
	}
	cc := c.tr.NewClientConn(conn)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = conn.CloseWithError(0, "gateway shutting down")
		return nil, ErrClosed
	}
	c.conn, c.cc = conn, cc
	c.dials++
	close(c.ready)
	c.mu.Unlock()
	c.metrics.connected.Set(1)
	c.metrics.dials.Inc()
	c.log.Info("tunnel connected", "addr", c.opts.Addr, "dials", c.Dials())
	return conn, nil
}

// serve reads the control stream while the connection lasts and returns
// when the connection ends. A control stream that breaks on a live
// connection is reopened.
func (c *Client) serve(ctx context.Context, conn *quic.Conn) {
	defer func() {
		c.mu.Lock()
		if c.conn == conn {
			c.conn, c.cc = nil, nil
			c.ready = make(chan struct{})
		}
		c.mu.Unlock()
		c.metrics.connected.Set(0)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.CloseWithError(0, "gateway shutting down")
		case <-conn.Context().Done():
		}
	}()
	for conn.Context().Err() == nil && ctx.Err() == nil {
		err := c.readControl(ctx, conn)
		if conn.Context().Err() != nil || ctx.Err() != nil {
			return
		}
		c.log.Warn("control stream ended, reopening", "err", err)
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

func (c *Client) readControl(ctx context.Context, conn *quic.Conn) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/control", nil)
	if err != nil {
		return err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("control stream: hub returned %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), maxNoticeLine)
	for sc.Scan() {
		var n Notice
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil || n.Type == "" {
			c.metrics.badNotices.Inc()
			continue
		}
		c.metrics.notices.WithLabelValues(n.Type).Inc()
		if n.Type != "ping" && c.opts.OnNotice != nil {
			c.opts.OnNotice(n)
		}
	}
	if err := sc.Err(); err != nil {
		c.metrics.badNotices.Inc()
		return fmt.Errorf("reading control stream: %w", err)
	}
	return errors.New("control stream closed by hub")
}

// Close ends the tunnel; requests made afterwards fail with ErrClosed.
// Run returns once its context ends.
func (c *Client) Close() error {
	c.shutdown()
	return nil
}

func (c *Client) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if c.conn != nil {
		_ = c.conn.CloseWithError(0, "gateway shutting down")
		c.conn, c.cc = nil, nil
	}
	close(c.ready)
	c.metrics.connected.Set(0)
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// backoff returns a full-jitter delay: uniform in [0, min(max, min*2^n)].
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.opts.MaxBackoff
	if attempt < 30 {
		if d := c.opts.MinBackoff << attempt; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// causeOf names an error's kind for the reconnect metric's label.
func causeOf(err error) string {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	var reset *quic.StatelessResetError
	var app *quic.ApplicationError
	var transport *quic.TransportError
	var netErr net.Error
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &idle):
		return "idle_timeout"
	case errors.As(err, &hs):
		return "handshake_timeout"
	case errors.As(err, &reset):
		return "stateless_reset"
	case errors.As(err, &app):
		return "closed_by_peer"
	case errors.As(err, &transport):
		if transport.ErrorCode.IsCryptoError() {
			return "tls"
		}
		return "transport"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &netErr):
		return "network"
	default:
		return "other"
	}
}

type metrics struct {
	connected  prometheus.Gauge
	dials      prometheus.Counter
	reconnects *prometheus.CounterVec
	requests   *prometheus.CounterVec
	notices    *prometheus.CounterVec
	badNotices prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_connected", Help: "1 while the tunnel to the hub is connected.",
		}),
		dials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_tunnel_connections_total", Help: "Tunnel connections opened to the hub.",
		}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_reconnects_total", Help: "Tunnel dial failures and lost connections, by cause.",
		}, []string{"cause"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_requests_total", Help: "Requests sent over the tunnel, by method.",
		}, []string{"method"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_notices_total", Help: "Control stream notices received, by type.",
		}, []string{"type"}),
		badNotices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_tunnel_invalid_notices_total", Help: "Control stream messages ignored as malformed or oversized.",
		}),
	}
	reg.MustRegister(m.connected, m.dials, m.reconnects, m.requests, m.notices, m.badNotices)
	return m
}
