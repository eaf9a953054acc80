package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// link is one established connection to the hub over either transport.
type link interface {
	RoundTrip(*http.Request) (*http.Response, error)
	// Done is closed once the connection is closed, by either side.
	Done() <-chan struct{}
	// Err is why the connection ended; nil while it is open.
	Err() error
	// Close closes the connection, telling the hub reason where the
	// transport can.
	Close(reason string)
	// RTT is the current round-trip estimate, or 0 when unknown.
	RTT() time.Duration
}

// session is the client's view of one link: the requests in flight on it
// and whether it still takes new ones.
type session struct {
	link      link
	id        uint64
	transport string
	via       string
	opened    time.Time

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0 while draining
	draining bool
	rtt      atomic.Int64
}

func (s *session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight++
	return true
}

func (s *session) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// drain stops new requests and waits up to timeout for those in flight.
func (s *session) drain(ctx context.Context, timeout time.Duration) {
	s.mu.Lock()
	s.draining = true
	if s.inflight == 0 {
		s.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	s.idle = idle
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	case <-s.link.Done():
	}
}

func (s *session) alive() bool {
	select {
	case <-s.link.Done():
		return false
	default:
		return true
	}
}

// tlsFor returns the TLS config of a dial: the caller's roots and server
// name, the current certificate, and the transport's protocol.
func (c *Client) tlsFor(proto string) *tls.Config {
	conf := c.opts.TLS.Clone()
	conf.Certificates = nil
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return c.cert.Load(), nil
	}
	conf.MinVersion = tls.VersionTLS13
	conf.NextProtos = []string{proto}
	return conf
}

func (c *Client) quicConfig() *quic.Config {
	return &quic.Config{
		KeepAlivePeriod:      c.opts.KeepAlivePeriod,
		MaxIdleTimeout:       c.opts.MaxIdleTimeout,
		HandshakeIdleTimeout: c.opts.QUICDialTimeout,
	}
}

// quicLink is HTTP/3 over one QUIC connection.
type quicLink struct {
	conn *quic.Conn
	cc   *http3.ClientConn
}

func (c *Client) dialQUIC(ctx context.Context) (link, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.QUICDialTimeout)
	defer cancel()
	conn, err := quic.DialAddr(dctx, c.opts.Addr, c.tlsFor(http3.NextProtoH3), c.quicConfig())
	if err != nil {
		return nil, &DialError{Transport: TransportQUIC, Addr: c.opts.Addr, Err: err}
	}
	return &quicLink{conn: conn, cc: c.h3.NewClientConn(conn)}, nil
}

func (l *quicLink) RoundTrip(req *http.Request) (*http.Response, error) { return l.cc.RoundTrip(req) }
func (l *quicLink) Done() <-chan struct{}                               { return l.conn.Context().Done() }
func (l *quicLink) RTT() time.Duration                                  { return l.conn.ConnectionStats().SmoothedRTT }

func (l *quicLink) Err() error {
	if l.conn.Context().Err() == nil {
		return nil
	}
	return context.Cause(l.conn.Context())
}

func (l *quicLink) Close(reason string) { _ = l.conn.CloseWithError(0, reason) }

// errProbeDone ends a probe's handshake once the hub has proved itself.
var errProbeDone = errors.New("QUIC probe complete")

// probeQUIC checks that a QUIC handshake with the hub gets as far as a
// verified hub certificate, then abandons it before the gateway sends its
// own certificate. The hub never accepts the connection, so a probe made
// while the TCP connection is open does not become a second connection.
func (c *Client) probeQUIC(ctx context.Context) error {
	var verified atomic.Bool
	conf := c.tlsFor(http3.NextProtoH3)
	conf.GetClientCertificate = nil
	conf.VerifyConnection = func(tls.ConnectionState) error {
		// Runs after the standard verification of the hub's chain.
		verified.Store(true)
		return errProbeDone
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.QUICDialTimeout)
	defer cancel()
	conn, err := quic.DialAddr(dctx, c.opts.Addr, conf, c.quicConfig())
	if conn != nil {
		_ = conn.CloseWithError(0, "probe")
	}
	if verified.Load() {
		return nil
	}
	if err == nil {
		err = errors.New("QUIC probe completed a handshake it should have stopped")
	}
	return &DialError{Transport: TransportQUIC, Addr: c.opts.Addr, Err: err}
}

// tcpLink is HTTP/2 over one TLS connection on TCP.
type tcpLink struct {
	cc   *http.ClientConn
	conn *watchedConn
	rtt  atomic.Int64
}

func (c *Client) dialTCP(ctx context.Context) (link, string, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.TCPDialTimeout)
	defer cancel()
	via := ""
	var raw net.Conn
	var err error
	if c.opts.Proxy != nil {
		via = c.opts.Proxy.Addr
		raw, err = c.opts.Proxy.Dial(dctx, c.opts.TCPAddr)
	} else {
		var d net.Dialer
		raw, err = d.DialContext(dctx, "tcp", c.opts.TCPAddr)
	}
	if err != nil {
		return nil, via, &DialError{Transport: TransportTCP, Addr: c.opts.TCPAddr, Via: via, Err: err}
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetKeepAlivePeriod(15 * time.Second)
	}
	wc := newWatchedConn(raw)
	conf := c.tlsFor("h2")
	tconn := tls.Client(wc, conf)
	if err := tconn.HandshakeContext(dctx); err != nil {
		_ = wc.Close()
		if insp := inspectionFrom(err, c.opts.TLS.ServerName, c.opts.TCPAddr, via); insp != nil {
			return nil, via, insp
		}
		return nil, via, &DialError{Transport: TransportTCP, Addr: c.opts.TCPAddr, Via: via, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	if p := tconn.ConnectionState().NegotiatedProtocol; p != "h2" {
		_ = wc.Close()
		return nil, via, &DialError{Transport: TransportTCP, Addr: c.opts.TCPAddr, Via: via, Err: fmt.Errorf("the hub end negotiated %q instead of h2", p)}
	}
	tr := &http.Transport{
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return tconn, nil },
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: h2PingAfter,
			PingTimeout:     h2PingTimeout,
		},
		DisableCompression: true,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	cc, err := tr.NewClientConn(dctx, "https", c.opts.TCPAddr)
	if err != nil {
		_ = wc.Close()
		return nil, via, &DialError{Transport: TransportTCP, Addr: c.opts.TCPAddr, Via: via, Err: fmt.Errorf("starting HTTP/2: %w", err)}
	}
	return &tcpLink{cc: cc, conn: wc}, via, nil
}

func (l *tcpLink) RoundTrip(req *http.Request) (*http.Response, error) { return l.cc.RoundTrip(req) }
func (l *tcpLink) Done() <-chan struct{}                               { return l.conn.done }
func (l *tcpLink) RTT() time.Duration                                  { return time.Duration(l.rtt.Load()) }

func (l *tcpLink) Err() error {
	select {
	case <-l.conn.done:
	default:
		return nil
	}
	if err := l.conn.cause(); err != nil {
		return err
	}
	return errors.New("TCP connection closed")
}

func (l *tcpLink) Close(string) {
	_ = l.cc.Close()
	_ = l.conn.Close()
}

// watchedConn is a net.Conn that signals when it is closed and keeps
// the first read or write error as the reason the connection ended.
type watchedConn struct {
	net.Conn
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	firstErr error
}

func newWatchedConn(c net.Conn) *watchedConn {
	return &watchedConn{Conn: c, done: make(chan struct{})}
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.noteErr(err)
	}
	return n, err
}

func (w *watchedConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.noteErr(err)
	}
	return n, err
}

func (w *watchedConn) noteErr(err error) {
	w.mu.Lock()
	if w.firstErr == nil {
		w.firstErr = err
	}
	w.mu.Unlock()
}

func (w *watchedConn) cause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstErr
}

func (w *watchedConn) Close() error {
	err := w.Conn.Close()
	w.once.Do(func() { close(w.done) })
	return err
}
