package gateway

import (
	"crypto/x509"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardgate/wardgate/discovery"
)

// adminRoutes serves health, readiness, metrics and a read-only status
// API on the admin listener.
func (g *Gateway) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.handleReady)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.Status())
	})
	mux.HandleFunc("GET /v1/devices", func(w http.ResponseWriter, r *http.Request) {
		devs, err := g.inventory.List(r.Context(), discovery.Filter{})
		if err != nil {
			writeError(w, http.StatusInternalServerError, "listing devices failed: %v", err)
			return
		}
		writeJSON(w, http.StatusOK, devs)
	})
	return mux
}

// handleReady answers 200 once the gateway can serve devices: it has a
// verified repository state to offer from.
func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	st := g.mirror.Status()
	if st.TimestampVersion == 0 {
		http.Error(w, "not ready: no verified repository state yet", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Status is the gateway's one-screen summary.
type Status struct {
	Site              string `json:"site"`
	TunnelConnected   bool   `json:"tunnel_connected"`
	TunnelConnections int    `json:"tunnel_connections"`
	TunnelError       string `json:"tunnel_error,omitempty"`
	Mirror            any    `json:"mirror"`
}

// Status returns the gateway's current summary.
func (g *Gateway) Status() Status {
	st := Status{Site: g.siteID, Mirror: g.mirror.Status()}
	if g.tunnel != nil {
		st.TunnelConnected = g.tunnel.Connected()
		st.TunnelConnections = g.tunnel.Dials()
		if err := g.tunnel.LastError(); err != nil {
			st.TunnelError = err.Error()
		}
	}
	return st
}

func emptyPool() *x509.CertPool { return x509.NewCertPool() }
