package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ErrorCodeRefused is the QUIC application error code with which the hub
// closes a connection whose site it no longer serves (revoked, expired).
// The close reason is "CODE: detail", CODE one of the Reject* codes.
const ErrorCodeRefused quic.ApplicationErrorCode = 0x5741

// Transports a gateway connection can use.
const (
	TransportQUIC = "quic"
	TransportTCP  = "tcp"
)

// trackedConn is one open gateway connection over either transport.
type trackedConn struct {
	id        uint64
	site      string
	transport string
	cert      *x509.Certificate
	remote    string
	opened    time.Time
	close     func(code, detail string)
}

// connTracker records every open gateway connection. A site has one
// connection at a time: when a site connects again while an older
// connection is still open here, the older one is closed. A gateway
// only does that after it lost the older connection in a way the hub
// could not see (the path died), so the older one is dead anyway, and a
// second gateway with a copy of the credentials shows up in the log.
type connTracker struct {
	mu         sync.Mutex
	next       uint64
	conns      map[uint64]*trackedConn
	byKey      map[any]uint64
	accepted   map[string]int
	byProto    map[string]int
	maxOpen    map[string]int
	superseded int
}

func newConnTracker() *connTracker {
	return &connTracker{
		conns:    map[uint64]*trackedConn{},
		byKey:    map[any]uint64{},
		accepted: map[string]int{},
		byProto:  map[string]int{},
		maxOpen:  map[string]int{},
	}
}

// add records c and returns the older connections of the same site that
// it supersedes. They are removed here and the caller closes them. active
// reports whether c's site may use the hub, because a refused connection
// supersedes nothing.
func (t *connTracker) add(c *trackedConn, active bool) (superseded []*trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	c.id = t.next
	t.accepted[c.site]++
	t.byProto[c.transport]++
	if c.site != "" {
		open := 1
		for _, o := range t.conns {
			if o.site == c.site {
				open++
				if active {
					superseded = append(superseded, o)
				}
			}
		}
		t.maxOpen[c.site] = max(t.maxOpen[c.site], open)
		for _, o := range superseded {
			delete(t.conns, o.id)
			t.superseded++
		}
	}
	t.conns[c.id] = c
	return superseded
}

// renewed records that the gateway on the connection known by key holds
// cert now, so the connection outlives the certificate it opened with.
func (t *connTracker) renewed(key any, cert *x509.Certificate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.conns[t.byKey[key]]; ok {
		c.cert = cert
	}
}

func (t *connTracker) remove(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.conns[id]
	delete(t.conns, id)
	return ok
}

func (t *connTracker) list() []*trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*trackedConn, 0, len(t.conns))
	for _, c := range t.conns {
		out = append(out, c)
	}
	return out
}

func (t *connTracker) fill(st *Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.ConnectionsActive = len(t.conns)
	st.ConnectionsBySite = copyMap(t.accepted)
	st.ConnectionsByTransport = copyMap(t.byProto)
	st.MaxOpenBySite = copyMap(t.maxOpen)
	st.OpenBySite = map[string]int{}
	for _, c := range t.conns {
		if c.site != "" {
			st.OpenBySite[c.site]++
		}
	}
	st.Superseded = t.superseded
	for _, n := range t.accepted {
		st.ConnectionsAccepted += n
	}
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// track registers a connection whose handshake is done and closes what
// it supersedes.
func (s *Server) track(c *trackedConn) {
	active := false
	if c.cert != nil {
		_, rej := s.checkCert(c.cert, time.Now())
		active = rej == nil
	}
	for _, old := range s.conns.add(c, active) {
		s.log.Warn("site connected again while an older connection was open; closing the older one",
			"site", old.site, "old_transport", old.transport, "old_remote", old.remote, "new_transport", c.transport, "new_remote", c.remote)
		old.close("superseded", "a newer connection from the same site replaced this one")
		s.metrics.active.Dec()
	}
	s.metrics.connections.WithLabelValues(c.transport).Inc()
	s.metrics.active.Inc()
	s.log.Info("gateway connected", "site", c.site, "transport", c.transport, "remote", c.remote)
}

func (s *Server) untrack(c *trackedConn, cause error) {
	if s.conns.remove(c.id) {
		s.metrics.active.Dec()
		s.log.Info("gateway disconnected", "site", c.site, "transport", c.transport, "cause", cause)
	}
}

// enforce closes connections of sites that were revoked or whose
// certificate expired since they connected. It runs until ctx ends.
func (s *Server) enforce(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.registry.Reload(); err != nil {
			s.log.Warn("reloading the site registry failed", "err", err)
			continue
		}
		now := time.Now()
		for _, c := range s.conns.list() {
			if c.cert == nil {
				continue
			}
			if _, rej := s.checkCert(c.cert, now); rej != nil {
				s.log.Warn("closing connection of a refused site", "site", c.site, "reason", rej.Code)
				s.metrics.rejects.WithLabelValues(rej.Code).Inc()
				c.close(rej.Code, rej.Detail)
			}
		}
	}
}

// countingListener records each accepted QUIC connection and removes it
// when the connection ends. quic.Listener returns connections after the
// handshake, so the peer certificate is known.
type countingListener struct {
	*quic.Listener
	s *Server
}

func (l *countingListener) Accept(ctx context.Context) (*quic.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{transport: TransportQUIC, remote: c.RemoteAddr().String(), opened: time.Now()}
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		tc.cert, tc.site = certs[0], certs[0].Subject.CommonName
	}
	tc.close = func(code, detail string) {
		_ = c.CloseWithError(ErrorCodeRefused, truncate(code+": "+detail, 900))
	}
	l.s.track(tc)
	l.s.conns.mu.Lock()
	l.s.conns.byKey[c] = tc.id
	l.s.conns.mu.Unlock()
	go func() {
		<-c.Context().Done()
		l.s.conns.mu.Lock()
		delete(l.s.conns.byKey, c)
		l.s.conns.mu.Unlock()
		l.s.untrack(tc, context.Cause(c.Context()))
	}()
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// tcpConnState tracks HTTP/2 connections: a connection counts from its
// first request, when its handshake is done, until it closes.
func (s *Server) tcpConnState(nc net.Conn, state http.ConnState) {
	switch state {
	case http.StateActive:
		s.conns.mu.Lock()
		_, known := s.conns.byKey[nc]
		s.conns.mu.Unlock()
		if known {
			return
		}
		tc := &trackedConn{transport: TransportTCP, remote: nc.RemoteAddr().String(), opened: time.Now()}
		if tlsConn, ok := nc.(*tls.Conn); ok {
			if certs := tlsConn.ConnectionState().PeerCertificates; len(certs) > 0 {
				tc.cert, tc.site = certs[0], certs[0].Subject.CommonName
			}
		}
		tc.close = func(string, string) { _ = nc.Close() }
		s.track(tc)
		s.conns.mu.Lock()
		s.conns.byKey[nc] = tc.id
		s.conns.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		s.conns.mu.Lock()
		id, known := s.conns.byKey[nc]
		delete(s.conns.byKey, nc)
		c := s.conns.conns[id]
		s.conns.mu.Unlock()
		if known && c != nil {
			s.untrack(c, net.ErrClosed)
		}
	}
}
