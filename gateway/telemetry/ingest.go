package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// DeviceIdentity identifies the device behind a request. Serial names the device locally (for rate limits, dedup and its
// pseudonym) and never leaves the gateway; the other fields are the
// dimensions analytics are aggregated by.
type DeviceIdentity struct {
	Manufacturer, Serial, Model, SoftwareVersion, DeviceClass string
}

func (d DeviceIdentity) validate() error {
	if d.Serial == "" || len(d.Serial) > 256 {
		return fmt.Errorf("device serial %q: want 1 to 256 bytes", d.Serial)
	}
	for _, f := range []struct{ name, v string }{
		{"manufacturer", d.Manufacturer}, {"model", d.Model},
		{"software version", d.SoftwareVersion}, {"device class", d.DeviceClass},
	} {
		if !wire.ValidDim(f.v) {
			return fmt.Errorf("device %s %q: want 1 to %d printable characters (fix the inventory entry)", f.name, f.v, wire.MaxDimLen)
		}
	}
	return nil
}

// IngestOptions configure the device telemetry endpoint. The zero value is
// usable.
type IngestOptions struct {
	// MaxBodyBytes bounds one request body (default 256 KiB); larger ones
	// get 413.
	MaxBodyBytes int64
	// MaxEvents bounds the events of one batch (default 1000); more get 413.
	MaxEvents int
	// RatePerDevice is the sustained events per second one device may send
	// (default 50), with bursts up to Burst events (default 5000, raised to
	// MaxEvents if lower). Over the limit a device gets 429 and Retry-After.
	RatePerDevice float64
	Burst         int
	// RetryAfter is the delay suggested with 503 while the queue rejects
	// batches (default 30s).
	RetryAfter time.Duration
	// Logger (default slog.Default()) and Registerer (none when nil).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the rate limiter's clock (default time.Now).
	Now func() time.Time
}

// IngestResponse is the JSON response to an accepted batch.
type IngestResponse struct {
	// Accepted is the number of events stored (0 for a duplicate).
	Accepted int `json:"accepted"`
	// Dropped is the number of events dropped by the allow-list.
	Dropped int `json:"dropped"`
	// IgnoredFields names unknown fields that were dropped.
	IgnoredFields []string `json:"ignored_fields,omitempty"`
	// Duplicate is true when this batch id was already stored.
	Duplicate bool `json:"duplicate"`
}

type errorResponse struct {
	Error string `json:"error"`
}

type ingestHandler struct {
	q        *Queue
	identify func(*http.Request) (DeviceIdentity, bool)
	opts     IngestOptions
	log      *slog.Logger
	m        *ingestMetrics
	lim      *limiter
}

// NewIngestHandler serves POST of one JSON batch of events from one device
// (see DecodeBatch for the schema). identify maps the request (its TLS
// client certificate) to the device; ok=false gets 401 when the request
// carries no client certificate and 403 otherwise. The handler responds 200
// only after the batch is synced to disk; malformed, oversized or hostile input
// gets a 4xx and stores nothing; a full queue or disk gets 503 with
// Retry-After.
func NewIngestHandler(q *Queue, identify func(*http.Request) (DeviceIdentity, bool), opts IngestOptions) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 256 << 10
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 1000
	}
	if opts.RatePerDevice <= 0 {
		opts.RatePerDevice = 50
	}
	if opts.Burst <= 0 {
		opts.Burst = 5000
	}
	opts.Burst = max(opts.Burst, opts.MaxEvents)
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newIngestMetrics(opts.Registerer)
	if err != nil {
		opts.Logger.Error("registering telemetry ingest metrics", "err", err)
	}
	return &ingestHandler{
		q: q, identify: identify, opts: opts, m: m,
		log: opts.Logger.With("component", "telemetry.ingest"),
		lim: newLimiter(opts.RatePerDevice, float64(opts.Burst)),
	}
}

func (h *ingestHandler) reply(w http.ResponseWriter, status int, result string, v any) {
	h.m.batches.WithLabelValues(result).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *ingestHandler) fail(w http.ResponseWriter, status int, result, format string, a ...any) {
	h.reply(w, status, result, errorResponse{Error: fmt.Sprintf(format, a...)})
}

func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
}

func (h *ingestHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "method", "method %s is not allowed: POST a JSON batch", r.Method)
		return
	}

	dev, ok := h.identify(r)
	if !ok {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			h.fail(w, http.StatusUnauthorized, "unauthenticated", "a device client certificate is required")
		} else {
			h.fail(w, http.StatusForbidden, "unknown_device", "this client certificate does not belong to a device in the inventory")
		}
		return
	}

	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			h.fail(w, http.StatusUnsupportedMediaType, "media_type", "content type %q is not supported: send application/json", ct)
			return
		}
	}

	devKey := dev.Manufacturer + "\x00" + dev.Serial
	if wait, ok := h.lim.peek(devKey, h.opts.Now()); !ok {
		retryAfter(w, wait)
		h.fail(w, http.StatusTooManyRequests, "rate_limited", "device sends telemetry faster than %g events per second: retry later", h.opts.RatePerDevice)
		return
	}

	if r.ContentLength > h.opts.MaxBodyBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, "too_large", "body of %d bytes exceeds the limit of %d: split the batch", r.ContentLength, h.opts.MaxBodyBytes)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, http.StatusRequestEntityTooLarge, "too_large", "body exceeds the limit of %d bytes: split the batch", h.opts.MaxBodyBytes)
			return
		}
		h.fail(w, http.StatusBadRequest, "read", "reading the body: %v", err)
		return
	}

	dec, err := DecodeBatch(body, Limits{MaxEvents: h.opts.MaxEvents})
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			h.fail(w, de.Status, "invalid", "%s", de.Msg)
			return
		}
		h.fail(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}

	h.m.dropped.Add(float64(dec.Dropped))
	resp := IngestResponse{Dropped: dec.Dropped, IgnoredFields: dec.IgnoredFields}
	if len(dec.Events) == 0 {
		h.reply(w, http.StatusOK, "empty", resp)
		return
	}

	if wait, ok := h.lim.take(devKey, float64(len(dec.Events)), h.opts.Now()); !ok {
		retryAfter(w, wait)
		h.fail(w, http.StatusTooManyRequests, "rate_limited", "batch of %d events exceeds the device's rate of %g events per second: retry later", len(dec.Events), h.opts.RatePerDevice)
		return
	}

	res, err := h.q.Append(r.Context(), dev, dec.Batch)
	if err != nil {
		h.lim.refund(devKey, float64(len(dec.Events)))
		switch {
		case errors.Is(err, ErrQueueFull):
			retryAfter(w, h.opts.RetryAfter)
			h.fail(w, http.StatusServiceUnavailable, "queue_full", "telemetry queue is full: retry later")
		case errors.Is(err, ErrNoSpace):
			retryAfter(w, h.opts.RetryAfter)
			h.fail(w, http.StatusServiceUnavailable, "no_space", "gateway storage is full: retry later")
		case errors.Is(err, ErrClosed):
			retryAfter(w, h.opts.RetryAfter)
			h.fail(w, http.StatusServiceUnavailable, "closed", "gateway is shutting down: retry later")
		case r.Context().Err() != nil:
			h.m.batches.WithLabelValues("canceled").Inc()
		default:
			h.log.Error("storing device batch failed", "manufacturer", dev.Manufacturer, "model", dev.Model, "err", err)
			retryAfter(w, h.opts.RetryAfter)
			h.fail(w, http.StatusServiceUnavailable, "store_error", "storing the batch failed: retry later")
		}
		return
	}

	h.m.latency.Observe(time.Since(start).Seconds())
	if res.Duplicate {
		h.lim.refund(devKey, float64(len(dec.Events)))
		resp.Duplicate = true
		h.reply(w, http.StatusOK, "duplicate", resp)
		return
	}

	resp.Accepted = len(dec.Events)
	h.m.events.Add(float64(len(dec.Events)))
	h.reply(w, http.StatusOK, "stored", resp)
}

// limiter is a token bucket per device, in events.
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
	sweep       time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst float64) *limiter {
	return &limiter{rate: rate, burst: burst, buckets: make(map[string]*bucket)}
}

func (l *limiter) get(key string, now time.Time) *bucket {
	if now.Sub(l.sweep) > time.Minute && len(l.buckets) > 1024 {
		// Forget devices whose bucket has refilled: they are back at burst.
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.rate+b.tokens >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
		return b
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt.Seconds()*l.rate)
		b.last = now
	}
	return b
}

// peek reports whether the device has any tokens left, or how long until
// it has one.
func (l *limiter) peek(key string, now time.Time) (time.Duration, bool) {
	return l.need(key, 1, now, false)
}

// take spends n tokens, or reports how long until n are available.
func (l *limiter) take(key string, n float64, now time.Time) (time.Duration, bool) {
	return l.need(key, n, now, true)
}

func (l *limiter) need(key string, n float64, now time.Time, spend bool) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(key, now)
	if b.tokens >= n {
		if spend {
			b.tokens -= n
		}
		return 0, true
	}
	return time.Duration((n - b.tokens) / l.rate * float64(time.Second)), false
}

func (l *limiter) refund(key string, n float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		b.tokens = math.Min(l.burst, b.tokens+n)
	}
}
