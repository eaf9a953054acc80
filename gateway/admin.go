package gateway

import (
	"context"
	"crypto/x509"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardgate/wardgate/cache"
)

// adminRoutes serves the admin listener: health, readiness and metrics
// without authentication (for probes and Prometheus on the admin
// network), the JSON admin API behind API tokens, and the web console.
func (g *Gateway) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.handleReady)
	api := http.NewServeMux()
	g.apiRoutes(api)
	mux.Handle("/v1/", jsonUnmatched(api))
	if g.admin.console != nil {
		mux.Handle("/console/", g.admin.console.Handler())
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
		})
	}
	return mux
}

// jsonUnmatched serves the requests for which mux has a route. The others
// get a JSON error, as from every API handler, instead of ServeMux's plain
// text: 404 naming the path, or 405 naming the allowed methods.
func jsonUnmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &unmatchedWriter{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch {
		case rec.status == http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)
		default:
			writeError(w, http.StatusNotFound, "no API route for %s %s", r.Method, r.URL.Path)
		}
	})
}

// unmatchedWriter records the status and headers that ServeMux writes
// for a request without a route, and drops its plain-text body.
type unmatchedWriter struct {
	header http.Header
	status int
}

func (u *unmatchedWriter) Header() http.Header         { return u.header }
func (u *unmatchedWriter) WriteHeader(status int)      { u.status = status }
func (u *unmatchedWriter) Write(b []byte) (int, error) { return len(b), nil }

// handleReady returns 200 once the gateway can serve devices: it has a
// verified repository state to offer from.
func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	st := g.mirror.Status()
	if st.TimestampVersion == 0 {
		http.Error(w, "not ready: no verified repository state yet", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Status is the gateway's one-screen summary, served at /v1/status.
type Status struct {
	Site              string       `json:"site"`
	TunnelConnected   bool         `json:"tunnel_connected"`
	TunnelConnections int          `json:"tunnel_connections"`
	TunnelError       string       `json:"tunnel_error,omitempty"`
	TunnelState       string       `json:"tunnel_state"`
	TunnelTransport   string       `json:"tunnel_transport,omitempty"`
	Mirror            cache.Status `json:"mirror"`

	Devices        int            `json:"devices"`
	DevicesByState map[string]int `json:"devices_by_state"`
	Cache          StatusCache    `json:"cache"`
	Telemetry      StatusQueue    `json:"telemetry"`
	AuditHead      uint64         `json:"audit_head"`
	AuditSyslog    string         `json:"audit_syslog,omitempty"`
	ActiveRollouts int            `json:"active_rollouts"`
	Alerts         []StatusAlert  `json:"alerts"`
	Time           time.Time      `json:"time"`
}

// StatusCache is the blob cache's use.
type StatusCache struct {
	StoredBytes int64 `json:"stored_bytes"`
	MaxBytes    int64 `json:"max_bytes"`
	FreeBytes   int64 `json:"free_bytes"`
	Blobs       int   `json:"blobs"`
}

// StatusQueue is the telemetry queue's state.
type StatusQueue struct {
	Batches        int64   `json:"batches"`
	Bytes          int64   `json:"bytes"`
	MaxBytes       int64   `json:"max_bytes"`
	PendingUploads uint64  `json:"pending_uploads"`
	OldestSeconds  float64 `json:"oldest_seconds,omitempty"`
	Refusing       string  `json:"refusing,omitempty"`
}

// StatusAlert is a condition to act on.
type StatusAlert struct {
	Level   string `json:"level"`
	Message string `json:"message"`
}

// Status returns the gateway's current summary. When a part cannot be
// read (such as the inventory) the rest is returned with the error.
func (g *Gateway) Status(ctx context.Context) (Status, error) {
	o, err := g.overview(ctx)
	st := Status{
		Site: o.Site, TunnelState: o.TunnelState, TunnelTransport: o.TunnelTransport, TunnelError: o.TunnelError,
		TunnelConnections: o.TunnelDials, TunnelConnected: g.tunnel != nil && g.tunnel.Connected(), Mirror: g.mirror.Status(),
		Devices: o.Devices, DevicesByState: map[string]int{}, AuditHead: o.AuditHead, AuditSyslog: o.AuditForwarding,
		ActiveRollouts: o.ActiveRollouts, Alerts: []StatusAlert{}, Time: o.Now.UTC(),
		Cache:     StatusCache{StoredBytes: o.Cache.StoredBytes, MaxBytes: o.Cache.MaxBytes, FreeBytes: o.Cache.FreeBytes, Blobs: o.Cache.Blobs},
		Telemetry: StatusQueue{Batches: o.Telemetry.Batches, Bytes: o.Telemetry.Bytes, MaxBytes: o.Telemetry.MaxBytes, PendingUploads: o.Telemetry.PendingUploads, OldestSeconds: o.Telemetry.OldestAge.Seconds(), Refusing: o.Telemetry.Refusing},
	}
	for _, c := range o.DevicesByState {
		st.DevicesByState[c.Label] = c.N
	}
	for _, a := range o.Alerts {
		st.Alerts = append(st.Alerts, StatusAlert{Level: a.Level, Message: a.Message})
	}
	return st, err
}

func emptyPool() *x509.CertPool { return x509.NewCertPool() }
