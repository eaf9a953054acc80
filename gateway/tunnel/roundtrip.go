package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxAttempts bounds how often one request is sent: the first time and
// after each lost connection.
const maxAttempts = 4

type priorityKey struct{}

// WithPriority returns a context whose requests use priority p for the
// bandwidth cap instead of the one their path implies.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// priorityOf classifies a request: the control plane first, then update
// fetches, then install outcomes, then telemetry.
func priorityOf(req *http.Request) Priority {
	if p, ok := req.Context().Value(priorityKey{}).(Priority); ok {
		return p
	}
	p := req.URL.Path
	switch {
	case p == "/v1/hello" || p == "/v1/control" || p == "/v1/renew":
		return PriorityControl
	case strings.HasPrefix(p, "/v1/tuf/"):
		return PriorityUpdate
	case p == "/v1/telemetry":
		return PriorityTelemetry
	}
	return PriorityNormal
}

// retryable reports whether req may be sent again after its connection
// was lost: reads, and uploads that carry an idempotency key, so that the
// hub stores them once however often they arrive.
func retryable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// RoundTrip sends req over the tunnel. It waits for a connection until
// req's context ends, fails at once while the hub refuses the gateway,
// and when the connection is lost before the response headers arrive it
// sends a retryable request again on the next connection. A response
// body whose connection is lost fails its next read at once.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	prio := priorityOf(req)
	canRetry := retryable(req)
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		s, err := c.wait(ctx)
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (after the connection was lost: %v)", err, lastErr)
			}
			return nil, err
		}
		r := req
		if attempt > 0 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				if r.Body, err = req.GetBody(); err != nil {
					return nil, fmt.Errorf("rewinding request body for a retry: %w", err)
				}
			}
			c.metrics.retried.Inc()
			c.log.Info("retrying request after the connection was lost", "method", req.Method, "path", req.URL.Path, "attempt", attempt+1, "idempotency_key", req.Header.Get("Idempotency-Key"))
		}
		if !s.begin() {
			// The connection started draining after wait chose it; the
			// next wait skips it. That is no attempt.
			attempt--
			continue
		}
		if r.Body != nil && r.Body != http.NoBody {
			r = r.Clone(ctx)
			r.Body = &meteredBody{rc: r.Body, ctx: ctx, c: c, prio: prio, up: true}
		}
		resp, err := s.link.RoundTrip(r)
		if err != nil {
			s.end()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s %s over the tunnel: %w", req.Method, req.URL.Path, ctx.Err())
			}
			if !c.lost(s, err) {
				return nil, err
			}
			lastErr = err
			if !canRetry {
				return nil, fmt.Errorf("tunnel connection lost during %s %s; not retried without an idempotency key: %w", req.Method, req.URL.Path, err)
			}
			continue
		}
		c.metrics.requests.WithLabelValues(req.Method, s.transport).Inc()
		resp.Body = &meteredBody{rc: resp.Body, ctx: ctx, c: c, prio: prio, s: s}
		return resp, nil
	}
	return nil, fmt.Errorf("%s %s failed on %d connections in a row: %w", req.Method, req.URL.Path, maxAttempts, lastErr)
}

// lost reports whether err came from the loss of s's connection rather
// than from this one request.
func (c *Client) lost(s *session, err error) bool {
	if !s.alive() {
		return true
	}
	// The connection may be closing as the error arrives.
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.link.Done():
		return true
	case <-t.C:
		return false
	}
}

// wait returns the current connection, waiting for one until ctx ends.
func (c *Client) wait(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if c.refusal != nil {
			err := c.refusal
			c.mu.Unlock()
			return nil, err
		}
		s, changed := c.cur, c.changed
		last := c.lastErr
		c.mu.Unlock()
		if s != nil && s.alive() {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if !draining {
				return s, nil
			}
		}
		var dead <-chan struct{}
		if s != nil {
			dead = s.link.Done()
		}
		select {
		case <-changed:
		case <-dead:
			// Let Run notice and replace it.
			select {
			case <-changed:
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("waiting for the tunnel: %w (last connection error: %v)", ctx.Err(), last)
			}
			return nil, fmt.Errorf("waiting for the tunnel: %w", ctx.Err())
		}
	}
}

// meteredBody counts a request or response body, holds it to the
// bandwidth cap, and for a response ends the request's hold on its
// connection when closed.
type meteredBody struct {
	rc   io.ReadCloser
	ctx  context.Context
	c    *Client
	prio Priority
	up   bool
	s    *session // response bodies only
	done bool
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if max := b.c.limiter.Chunk(); max > 0 && len(p) > max {
		p = p[:max]
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		if werr := b.c.limiter.WaitN(b.ctx, b.prio, n); werr != nil && err == nil {
			err = werr
		}
		if b.up {
			b.c.metrics.bytesUp.Add(float64(n))
		} else {
			b.c.metrics.bytesDown.Add(float64(n))
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && b.s != nil && !b.s.alive() {
		err = fmt.Errorf("tunnel connection lost while reading the response: %w", err)
	}
	return n, err
}

func (b *meteredBody) Close() error {
	err := b.rc.Close()
	if b.s != nil && !b.done {
		b.done = true
		b.s.end()
	}
	return err
}
