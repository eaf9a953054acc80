package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// errSwitchToQUIC ends a TCP connection on purpose after a QUIC probe
// succeeded.
var errSwitchToQUIC = errors.New("QUIC works again: moving the tunnel back to it")

// helloInfo is the hub's response to the current connection's hello.
type helloInfo struct {
	Site                string    `json:"site"`
	CertificateNotAfter time.Time `json:"certificate_not_after"`
	HubTime             time.Time `json:"hub_time"`
}

// Run keeps the tunnel connected until ctx ends or Close is called: it
// dials, sends hello, serves the control stream, re-probes QUIC while on
// TCP, renews the certificate, and redials with backoff when the
// connection ends.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running || c.closed {
		c.mu.Unlock()
		return errors.New("tunnel Run called twice or after Close")
	}
	c.running, c.runDone = true, make(chan struct{})
	done := c.runDone
	changed := c.changed
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		c.shutdown()
		wg.Wait()
		close(done)
	}()
	// Close from another goroutine cancels Run.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			c.mu.Lock()
			closed := c.closed
			changed = c.changed
			c.mu.Unlock()
			if closed {
				cancel()
				return
			}
		}
	}()
	if c.opts.SaveCertificate != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.renewLoop(ctx)
		}()
	}
	failures, refusals := 0, 0
	for ctx.Err() == nil {
		c.mu.Lock()
		// A refusal or inspection stays the state while it is checked
		// again. The state changes once the hub's response does.
		if c.refusal == nil && c.inspection == nil {
			c.setStateLocked(StateConnecting)
		}
		c.mu.Unlock()
		started := time.Now()
		s, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// The delay runs from the start of the attempt: a dial that
			// timed out has already waited, so the next one is not held
			// back further and a path that recovers is found sooner.
			delay := c.afterFailure(err, &failures, &refusals) - time.Since(started)
			if !sleep(ctx, delay) {
				break
			}
			continue
		}
		refusals = 0
		cause := c.serve(ctx, s)
		if ctx.Err() != nil {
			break
		}
		c.afterLoss(s, cause)
		// A connection that ends soon after it opened counts as a failed
		// attempt, so a hub that accepts and drops at once is not
		// redialled in a tight loop.
		if time.Since(s.opened) >= stableAfter || errors.Is(cause, errSwitchToQUIC) {
			failures = 0
			continue
		}
		delay := c.backoff(failures)
		failures++
		if !sleep(ctx, delay) {
			break
		}
	}
	return nil
}

// afterFailure records a failed connect and returns how long to wait.
func (c *Client) afterFailure(err error, failures, refusals *int) time.Duration {
	cause := causeOf(err)
	c.metrics.reconnects.WithLabelValues(cause).Inc()
	var refused *RefusedError
	var insp *InspectionError
	c.mu.Lock()
	c.lastErr = err
	// An inspection error may wrap the hub's refusal that revealed it.
	switch {
	case errors.As(err, &insp):
		c.inspection = insp
		refused = nil
		c.setStateLocked(StateInspected)
	case errors.As(err, &refused):
		c.refusal = refused
		c.inspection = nil
		c.broadcastLocked()
		c.setStateLocked(StateRefused)
	default:
		if c.refusal == nil && c.inspection == nil {
			c.setStateLocked(StateBackoff)
		}
	}
	c.mu.Unlock()
	c.metrics.setRefusal(refused)
	c.metrics.setInspection(insp)
	if refused != nil || insp != nil {
		delay := fullJitter(c.opts.RefusedRetry, maxRefusedBackoff, *refusals)
		*refusals++
		// Not jittered below half: a refused gateway must not hammer.
		delay = max(delay, c.opts.RefusedRetry/2)
		c.log.Error("tunnel cannot be used; retrying slowly", "err", err, "retry_in", delay.Round(time.Second))
		return delay
	}
	delay := c.backoff(*failures)
	*failures++
	c.log.Warn("hub unreachable, retrying", "quic", c.opts.Addr, "tcp", c.opts.TCPAddr, "attempt", *failures, "retry_in", delay.Round(time.Millisecond), "cause", cause, "err", err)
	return delay
}

// afterLoss records the end of a connection that the hub had accepted.
func (c *Client) afterLoss(s *session, cause error) {
	label := causeOf(cause)
	c.metrics.reconnects.WithLabelValues(label).Inc()
	refused := refusalFromClose(cause)
	c.mu.Lock()
	if !errors.Is(cause, errSwitchToQUIC) {
		c.lastErr = cause
	}
	if refused != nil {
		c.refusal = refused
		c.lastErr = refused
		c.setStateLocked(StateRefused)
		c.broadcastLocked()
	}
	c.mu.Unlock()
	if refused != nil {
		c.metrics.setRefusal(refused)
		c.log.Error("hub closed the tunnel and refuses this gateway", "code", refused.Code, "detail", refused.Detail)
		return
	}
	if errors.Is(cause, errSwitchToQUIC) {
		c.log.Info("tunnel moving from TCP back to QUIC")
		return
	}
	c.log.Warn("tunnel connection ended", "transport", s.transport, "cause", label, "err", cause, "lasted", time.Since(s.opened).Round(time.Millisecond))
}

// transportOrder lists the transports to try now, in order.
func (c *Client) transportOrder() []string {
	switch c.opts.Transport {
	case TransportQUIC:
		return []string{TransportQUIC}
	case TransportTCP:
		return []string{TransportTCP}
	}
	c.mu.Lock()
	down := c.quicDownSince
	c.mu.Unlock()
	if !down.IsZero() && time.Since(down) < c.opts.ReprobeInterval {
		return []string{TransportTCP}
	}
	return []string{TransportQUIC, TransportTCP}
}

// connect opens one connection and has the hub accept it. A QUIC attempt
// that gets no response falls through to TCP, and any response from the hub,
// including a refusal, is final.
func (c *Client) connect(ctx context.Context) (*session, error) {
	var errs []error
	for _, t := range c.transportOrder() {
		l, via, err := c.dial(ctx, t)
		if err != nil {
			errs = append(errs, err)
			if t == TransportQUIC && c.opts.Transport == TransportAuto && pathFailure(err) && ctx.Err() == nil {
				c.markQUIC(false)
				c.log.Warn("QUIC got no response; trying TCP", "addr", c.opts.Addr, "err", err)
				continue
			}
			break
		}
		if t == TransportQUIC {
			c.markQUIC(true)
		}
		s := c.opened(l, t, via)
		if err := c.sayHello(ctx, s); err != nil {
			c.closeSession(s, "hello failed")
			if c.inspectionOnHello(err, s) {
				err = &InspectionError{Kind: "client_certificate_stripped", Addr: c.opts.TCPAddr, Via: via, Err: err}
			}
			return nil, err
		}
		c.publish(s)
		return s, nil
	}
	return nil, errors.Join(errs...)
}

// dial opens a link over transport t.
func (c *Client) dial(ctx context.Context, t string) (link, string, error) {
	if c.testDial != nil {
		return c.testDial(ctx, t)
	}
	if t == TransportQUIC {
		l, err := c.dialQUIC(ctx)
		return l, "", err
	}
	return c.dialTCP(ctx)
}

// inspectionOnHello reports whether a hello refusal means that the hub
// never saw the client certificate the gateway sent over TCP.
func (c *Client) inspectionOnHello(err error, s *session) bool {
	var r *RefusedError
	return s.transport == TransportTCP && errors.As(err, &r) && r.Code == rejectNoClientCert
}

func (c *Client) markQUIC(works bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if works {
		c.quicDownSince = time.Time{}
	} else if c.quicDownSince.IsZero() {
		c.quicDownSince = time.Now()
	}
	c.metrics.quicBlocked.Set(boolGauge(!works))
}

// opened counts a new connection. The caller has made sure the previous
// one is closed.
func (c *Client) opened(l link, transport, via string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	c.dials++
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	c.metrics.dials.WithLabelValues(transport).Inc()
	c.metrics.open.Set(float64(c.open))
	return &session{link: l, id: c.nextID, transport: transport, via: via, opened: time.Now()}
}

// closeSession closes s and waits until it is gone, so that the next
// dial never overlaps it.
func (c *Client) closeSession(s *session, reason string) {
	s.link.Close(reason)
	<-s.link.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	c.metrics.open.Set(float64(c.open))
	if c.cur == s {
		c.cur = nil
		c.broadcastLocked()
	}
}

// publish makes s the connection requests use.
func (c *Client) publish(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = s
	c.refusal = nil
	c.inspection = nil
	c.broadcastLocked()
	c.setStateLocked(StateConnected)
	c.metrics.setTransport(s.transport)
	c.metrics.setRefusal(nil)
	c.metrics.setInspection(nil)
	c.log.Info("tunnel connected", "transport", s.transport, "via", s.via, "connections", c.dials)
}

// sayHello checks that the hub accepts this gateway before any other
// request uses the connection.
func (c *Client) sayHello(ctx context.Context, s *session) error {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/hello", nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := s.link.RoundTrip(req)
	if err != nil {
		if cause := s.link.Err(); cause != nil {
			if r := refusalFromClose(cause); r != nil {
				return r
			}
			err = cause
		}
		return fmt.Errorf("hello to the hub over %s: %w", s.transport, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if r := refusalFrom(resp); r != nil {
			return r
		}
		return fmt.Errorf("hello to the hub over %s: %s response without a hub refusal code: a proxy or another server responded instead of the hub", s.transport, resp.Status)
	}
	var h helloInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<10)).Decode(&h); err != nil {
		return fmt.Errorf("decoding the hub's hello: %w", err)
	}
	rtt := time.Since(start)
	s.rtt.Store(int64(rtt))
	if tl, ok := s.link.(*tcpLink); ok {
		tl.rtt.Store(int64(rtt))
	}
	c.mu.Lock()
	c.hello = h
	c.mu.Unlock()
	if skew := time.Since(h.HubTime); !h.HubTime.IsZero() && (skew > time.Minute || skew < -time.Minute) {
		c.log.Warn("the gateway's clock differs from the hub's", "skew", skew.Round(time.Second))
	}
	return nil
}

// serve runs while s is the tunnel's connection and returns why it
// ended.
func (c *Client) serve(ctx context.Context, s *session) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.controlLoop(sctx, s)
	}()
	go func() {
		defer wg.Done()
		c.sampleRTT(sctx, s)
	}()
	var reprobe <-chan time.Time
	if c.opts.Transport == TransportAuto && s.transport == TransportTCP {
		t := time.NewTicker(c.opts.ReprobeInterval)
		defer t.Stop()
		reprobe = t.C
	}
	for {
		select {
		case <-s.link.Done():
			cause := s.link.Err()
			c.closeSession(s, "")
			return cause
		case <-ctx.Done():
			c.closeSession(s, "gateway shutting down")
			return ctx.Err()
		case <-reprobe:
			if err := c.probe(sctx); err != nil {
				c.metrics.probes.WithLabelValues("failed").Inc()
				c.log.Debug("QUIC probe got no response; staying on TCP", "err", err)
				continue
			}
			c.metrics.probes.WithLabelValues("succeeded").Inc()
			c.markQUIC(true)
			s.drain(ctx, drainTimeout)
			c.closeSession(s, "moving to QUIC")
			return errSwitchToQUIC
		}
	}
}

func (c *Client) probe(ctx context.Context) error {
	if c.testProbe != nil {
		return c.testProbe(ctx)
	}
	return c.probeQUIC(ctx)
}

// sampleRTT keeps the RTT gauge current: from QUIC's estimator, or from a
// small hello every 15 s on TCP.
func (c *Client) sampleRTT(ctx context.Context, s *session) {
	every := 2 * time.Second
	if s.transport == TransportTCP {
		every = 15 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c.metrics.rtt.Set(s.link.RTT().Seconds())
		select {
		case <-ctx.Done():
			return
		case <-s.link.Done():
			return
		case <-t.C:
		}
		if s.transport == TransportTCP {
			_ = c.sayHello(ctx, s)
		}
	}
}

// backoff returns a full-jitter delay after failures consecutive
// failures.
func (c *Client) backoff(failures int) time.Duration {
	return fullJitter(c.opts.MinBackoff, c.opts.MaxBackoff, failures)
}

// fullJitter returns a delay uniform in [0, min(ceiling, base*2^n)].
func fullJitter(base, ceiling time.Duration, n int) time.Duration {
	limit := ceiling
	if n < 40 {
		if d := base << n; d > 0 && d < ceiling {
			limit = d
		}
	}
	return time.Duration(rand.Int64N(int64(limit) + 1))
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

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
