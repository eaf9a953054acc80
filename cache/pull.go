package cache

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/cache/blob"
)

// RetryLaterError says that a target cannot be served now but will be:
// it is being verified after an unclean shutdown, the cache is full of
// blobs in use, or the last upstream fill failed moments ago. Devices get
// 503 with Retry-After.
type RetryLaterError struct {
	Reason string
	After  time.Duration
}

func (e *RetryLaterError) Error() string { return e.Reason + "; retry later" }

// errPermanent marks an upstream response that another attempt of the same
// fill cannot fix: a wrong length, a hash mismatch, a missing target.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// minUpstreamRate is the lowest rate, in bytes per second averaged over
// one stall window, at which an upstream target body is still accepted.
const minUpstreamRate = 4 << 10

// openOrPull returns the committed blob of t or the fill that is writing
// it, starting one upstream fetch if none runs. Exactly one of the file
// and the fill is non-nil when err is nil.
func (m *Mirror) openOrPull(t Target) (*blob.File, *blob.Fill, error) {
	sha := t.SHA256()
	for range 3 {
		f, _, err := m.opts.Blobs.Open(sha)
		switch {
		case err == nil:
			return f, nil, nil
		case errors.Is(err, blob.ErrNotReady):
			return nil, nil, &RetryLaterError{Reason: "the cached copy is being re-verified after an unclean shutdown", After: 5 * time.Second}
		case !errors.Is(err, blob.ErrNotFound):
			return nil, nil, fmt.Errorf("opening cached %s: %w", t.Path, err)
		}
		fill, err := m.startFill(t)
		if errors.Is(err, blob.ErrExists) {
			continue // committed between Open and Begin
		}
		if err != nil {
			return nil, nil, err
		}
		return nil, fill, nil
	}
	return nil, nil, &RetryLaterError{Reason: "the cached copy of " + t.Path + " is changing", After: time.Second}
}

// startFill joins the running fill of t or begins one whose producer runs
// in the background, detached from the request that asked for it, so a
// device that goes away does not cut the download short for the others.
func (m *Mirror) startFill(t Target) (*blob.Fill, error) {
	d, err := digestOf(t)
	if err != nil {
		return nil, err
	}
	sha := t.SHA256()
	m.fillMu.Lock()
	defer m.fillMu.Unlock()
	if m.ctx.Err() != nil {
		return nil, &RetryLaterError{Reason: "the gateway is shutting down", After: 10 * time.Second}
	}
	if until, ok := m.failures[sha]; ok {
		if wait := until.Sub(m.opts.Now()); wait > 0 {
			return nil, &RetryLaterError{Reason: "the last upstream fetch of " + t.Path + " failed", After: wait}
		}
		delete(m.failures, sha)
	}
	if m.opts.Online != nil && m.opts.Blobs.Running(sha) == nil && !m.opts.Online() {
		return nil, &RetryLaterError{Reason: "the gateway has not cached " + t.Path + " and is not connected upstream", After: 60 * time.Second}
	}
	fill, producer, err := m.opts.Blobs.BeginOrJoin(d)
	switch {
	case errors.Is(err, blob.ErrNoSpace):
		return nil, &RetryLaterError{Reason: "the cache is full of blobs in use: " + err.Error(), After: 60 * time.Second}
	case err != nil:
		return nil, fmt.Errorf("starting the upstream fetch of %s: %w", t.Path, err)
	}
	if producer {
		m.running[sha] = struct{}{}
		m.wg.Add(1)
		go m.produce(fill, t)
	}
	return fill, nil
}

// produce fetches t from upstream into fill until it commits or fails.
func (m *Mirror) produce(fill *blob.Fill, t Target) {
	defer m.wg.Done()
	sha := t.SHA256()
	m.metrics.fills.Inc()
	err := m.fillFromUpstream(fill, t)
	// The failure backoff is recorded before the fill ends, so a device
	// that sees the fill fail and asks again is told to come back later
	// instead of starting another upstream fetch.
	m.fillMu.Lock()
	delete(m.running, sha)
	if err != nil && m.opts.FailureBackoff > 0 && m.ctx.Err() == nil {
		m.failures[sha] = m.opts.Now().Add(m.opts.FailureBackoff)
	}
	m.fillMu.Unlock()
	if err != nil {
		fill.Abort(err)
		m.metrics.targetFailures.Inc()
		m.log.Warn("upstream fetch of target failed; nothing was cached", "target", t.Path, "err", err)
		m.mu.Lock()
		m.status.LastFillError = err.Error()
		m.status.LastFillErrorAt = m.opts.Now()
		m.mu.Unlock()
	} else {
		m.log.Info("target cached", "target", t.Path, "bytes", t.Length)
	}
}

func (m *Mirror) fillFromUpstream(fill *blob.Fill, t Target) error {
	var last error
	for attempt := range m.opts.FillAttempts {
		if attempt > 0 {
			m.metrics.resumes.Inc()
			backoff := min(100*time.Millisecond<<attempt, 5*time.Second)
			select {
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			case <-m.ctx.Done():
				return fmt.Errorf("fetching %s: %w", t.Path, m.ctx.Err())
			}
		}
		complete, err := m.fetchOnce(fill, t)
		if complete {
			if err := fill.Commit(); err != nil {
				return fmt.Errorf("target %s rejected: %w", t.Path, err)
			}
			return nil
		}
		var perm errPermanent
		if errors.As(err, &perm) || m.ctx.Err() != nil {
			return err
		}
		last = err
		m.log.Info("upstream fetch of target interrupted; resuming", "target", t.Path, "at", fill.Written(), "err", err)
	}
	return fmt.Errorf("fetching %s: gave up after %d attempts: %w", t.Path, m.opts.FillAttempts, last)
}

// fetchOnce makes one upstream request for the bytes of t that fill lacks
// and writes what arrives. It reports whether the fill holds every byte.
func (m *Mirror) fetchOnce(fill *blob.Fill, t Target) (bool, error) {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	off := fill.Written()
	url := m.opts.BaseURL + "/targets/" + escapePath(hashedName(t.Path, t.SHA256()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, errPermanent{fmt.Errorf("building request for %s: %w", t.Path, err)}
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	headers := time.AfterFunc(m.opts.RequestTimeout, cancel)
	resp, err := m.opts.Client.Do(req)
	headers.Stop()
	if err != nil {
		return false, fmt.Errorf("requesting %s: %w", t.Path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if off > 0 {
			// Upstream ignored Range: start again from byte zero; the fill
			// compares the replayed bytes with those already written.
			m.metrics.restarts.Inc()
			if err := fill.Restart(); err != nil {
				return false, errPermanent{err}
			}
			off = 0
		}
		if resp.ContentLength >= 0 && resp.ContentLength != t.Length {
			return false, errPermanent{fmt.Errorf("upstream sent %s as %d bytes, but its signed metadata lists %d", t.Path, resp.ContentLength, t.Length)}
		}
	case http.StatusPartialContent:
		start, end, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err == nil && (start != off || end != t.Length-1 || (total >= 0 && total != t.Length)) {
			err = fmt.Errorf("Content-Range %q does not match the requested bytes=%d- of %d bytes", resp.Header.Get("Content-Range"), off, t.Length)
		}
		if err != nil {
			m.metrics.restarts.Inc()
			if rerr := fill.Restart(); rerr != nil {
				return false, errPermanent{rerr}
			}
			return false, fmt.Errorf("resuming %s: %w; starting again from byte 0", t.Path, err)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		m.metrics.restarts.Inc()
		if err := fill.Restart(); err != nil {
			return false, errPermanent{err}
		}
		return false, fmt.Errorf("upstream rejected bytes=%d- of %s; starting again from byte 0", off, t.Path)
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusUnauthorized:
		return false, errPermanent{fmt.Errorf("upstream responded %s for %s", resp.Status, t.Path)}
	default:
		return false, fmt.Errorf("upstream responded %s for %s", resp.Status, t.Path)
	}
	body := &watchedBody{r: resp.Body}
	stop := m.watchRate(body, cancel)
	n, err := io.Copy(fill, io.LimitReader(body, t.Length-off+1))
	stop()
	m.metrics.targetBytes.Add(float64(n))
	if fill.Written() == t.Length && (err == nil || errors.Is(err, io.ErrUnexpectedEOF)) {
		return true, nil
	}
	switch {
	case errors.Is(err, blob.ErrLength), errors.Is(err, blob.ErrAborted):
		return false, errPermanent{fmt.Errorf("upstream body of %s: %w", t.Path, err)}
	case err != nil:
		m.metrics.truncated.Inc()
		return false, fmt.Errorf("upstream body of %s broke after %d of %d bytes: %w", t.Path, fill.Written(), t.Length, err)
	default:
		m.metrics.truncated.Inc()
		return false, fmt.Errorf("upstream body of %s ended after %d of %d bytes", t.Path, fill.Written(), t.Length)
	}
}

// watchedBody counts the bytes read from an upstream body.
type watchedBody struct {
	r io.Reader
	n atomic.Int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// watchRate cancels the request when a stall window passes with fewer
// bytes than the minimum rate allows, which ends a slow retrieval attack
// or a dead link within one window; the fill then resumes.
func (m *Mirror) watchRate(b *watchedBody, cancel context.CancelFunc) (stop func()) {
	window := m.opts.StallTimeout
	need := max(int64(1), int64(minUpstreamRate*window.Seconds()))
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(window)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := b.n.Load()
				if n-last < need {
					m.metrics.stalls.Inc()
					cancel()
					return
				}
				last = n
			}
		}
	}()
	return func() { close(done) }
}

// parseContentRange parses "bytes START-END/TOTAL" or "bytes
// START-END/*" (total -1), the form of a 206 response to one range.
func parseContentRange(s string) (start, end, total int64, err error) {
	bad := func() (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("malformed Content-Range %q: want \"bytes START-END/TOTAL\"", s)
	}
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad()
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return bad()
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad()
	}
	if start, err = parseDigits(a); err != nil {
		return bad()
	}
	if end, err = parseDigits(b); err != nil || end < start {
		return bad()
	}
	total = -1
	if tot != "*" {
		if total, err = parseDigits(tot); err != nil || end >= total {
			return bad()
		}
	}
	return start, end, total, nil
}

// parseDigits parses a non-negative decimal of at most 18 digits.
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errors.New("not a decimal")
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errors.New("not a decimal")
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

// digestOf returns the blob digest of a target.
func digestOf(t Target) (blob.Digest, error) {
	d := blob.Digest{Length: t.Length}
	var err error
	if d.SHA256, err = hex.DecodeString(t.Hashes["sha256"]); err != nil || len(d.SHA256) != sha256.Size {
		return d, fmt.Errorf("target %s has an invalid sha256", t.Path)
	}
	if h, ok := t.Hashes["sha512"]; ok {
		if d.SHA512, err = hex.DecodeString(h); err != nil || len(d.SHA512) != sha512.Size {
			return d, fmt.Errorf("target %s has an invalid sha512", t.Path)
		}
	}
	return d, nil
}
