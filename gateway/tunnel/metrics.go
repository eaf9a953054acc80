package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection states, as in Status.State and the state metric.
const (
	StateIdle       = "idle"
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateBackoff    = "backoff"
	// StateRefused: the hub refuses this gateway (revoked, expired,
	// unknown). Status.Refusal gives the reason.
	StateRefused = "refused"
	// StateInspected: TLS inspection on the path breaks mutual TLS;
	// Status.TLSInspection names where.
	StateInspected = "tls_inspection"
	StateStopped   = "stopped"
)

var allStates = []string{StateIdle, StateConnecting, StateConnected, StateBackoff, StateRefused, StateInspected, StateStopped}

type metrics struct {
	state       *prometheus.GaugeVec
	transport   *prometheus.GaugeVec
	open        prometheus.Gauge
	rtt         prometheus.Gauge
	dials       *prometheus.CounterVec
	reconnects  *prometheus.CounterVec
	requests    *prometheus.CounterVec
	retried     prometheus.Counter
	bytes       *prometheus.CounterVec
	bytesUp     prometheus.Counter
	bytesDown   prometheus.Counter
	notices     *prometheus.CounterVec
	badNotices  *prometheus.CounterVec
	refused     *prometheus.GaugeVec
	inspection  *prometheus.GaugeVec
	quicBlocked prometheus.Gauge
	probes      *prometheus.CounterVec
	certExpiry  prometheus.Gauge
	renewals    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *Client) *metrics {
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_state", Help: "1 for the tunnel's current state: idle, connecting, connected, backoff, refused, tls_inspection, stopped.",
		}, []string{"state"}),
		transport: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_transport", Help: "1 for the transport of the open connection (quic or tcp), 0 for the other.",
		}, []string{"transport"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_connections_open", Help: "Tunnel connections open now; never more than 1.",
		}),
		rtt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_rtt_seconds", Help: "Round-trip time to the hub: QUIC's smoothed estimate, or the hello round trip on TCP.",
		}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_connections_total", Help: "Tunnel connections opened to the hub, by transport.",
		}, []string{"transport"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_reconnects_total", Help: "Failed dials and lost connections, by cause.",
		}, []string{"cause"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_requests_total", Help: "Requests sent over the tunnel, by method and transport.",
		}, []string{"method", "transport"}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_tunnel_requests_retried_total", Help: "Requests sent again after their connection was lost.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_bytes_total", Help: "Request (up) and response (down) body bytes over the tunnel.",
		}, []string{"direction"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_notices_total", Help: "Control stream notices received, by type.",
		}, []string{"type"}),
		badNotices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_invalid_notices_total", Help: "Control stream messages ignored, by reason: malformed, oversized, unknown_type.",
		}, []string{"reason"}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_refused", Help: "1 while the hub refuses this gateway, labelled with the hub's reason.",
		}, []string{"reason"}),
		inspection: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_tls_inspection", Help: "1 while TLS inspection breaks the tunnel: foreign_certificate or client_certificate_stripped.",
		}, []string{"kind"}),
		quicBlocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_quic_blocked", Help: "1 while QUIC gets no response and the tunnel uses TCP.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_quic_probes_total", Help: "QUIC probes made while on TCP, by result.",
		}, []string{"result"}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tunnel_certificate_expiry_timestamp_seconds", Help: "When the gateway's client certificate expires, as a Unix time.",
		}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tunnel_certificate_renewals_total", Help: "Certificate renewal attempts, by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.state, m.transport, m.open, m.rtt, m.dials, m.reconnects, m.requests, m.retried,
		m.bytes, m.notices, m.badNotices, m.refused, m.inspection, m.quicBlocked, m.probes, m.certExpiry, m.renewals)
	m.setState(StateIdle)
	for _, t := range []string{TransportQUIC, TransportTCP} {
		m.transport.WithLabelValues(t).Set(0)
		m.dials.WithLabelValues(t)
	}
	// Resolved once: body reads are counted on every read.
	m.bytesUp, m.bytesDown = m.bytes.WithLabelValues("up"), m.bytes.WithLabelValues("down")
	for _, r := range []string{"malformed", "oversized", "unknown_type"} {
		m.badNotices.WithLabelValues(r)
	}
	return m
}

func (m *metrics) setState(s string) {
	for _, st := range allStates {
		m.state.WithLabelValues(st).Set(boolGauge(st == s))
	}
	if s != StateConnected {
		m.transport.WithLabelValues(TransportQUIC).Set(0)
		m.transport.WithLabelValues(TransportTCP).Set(0)
	}
}

func (m *metrics) setTransport(t string) {
	m.transport.WithLabelValues(TransportQUIC).Set(boolGauge(t == TransportQUIC))
	m.transport.WithLabelValues(TransportTCP).Set(boolGauge(t == TransportTCP))
}

// setRefusal shows the hub's refusal code; codes come from the hub and
// are few, and sanitize bounds them.
func (m *metrics) setRefusal(r *RefusedError) {
	m.refused.Reset()
	if r != nil {
		m.refused.WithLabelValues(r.Code).Set(1)
	}
}

func (m *metrics) setInspection(e *InspectionError) {
	m.inspection.Reset()
	if e != nil {
		m.inspection.WithLabelValues(e.Kind).Set(1)
	}
}

// Status is the tunnel's summary for the gateway's status page.
type Status struct {
	State string `json:"state"`
	// Since is when the tunnel entered State.
	Since     time.Time `json:"since"`
	Transport string    `json:"transport,omitempty"`
	// Via is the proxy the TCP transport goes through, or "".
	Via string `json:"via,omitempty"`
	// Preference is the configured transport: auto, quic or tcp.
	Preference string `json:"preference"`
	// QUICBlockedSince is set while QUIC gets no response.
	QUICBlockedSince time.Time `json:"quic_blocked_since,omitzero"`
	RTTMillis        float64   `json:"rtt_ms,omitempty"`
	Connections      int       `json:"connections"`
	LastError        string    `json:"last_error,omitempty"`
	// Refusal is the hub's reason for refusing this gateway.
	Refusal string `json:"refusal,omitempty"`
	// TLSInspection describes where TLS inspection breaks the tunnel.
	TLSInspection       string    `json:"tls_inspection,omitempty"`
	Site                string    `json:"site,omitempty"`
	CertificateNotAfter time.Time `json:"certificate_not_after,omitzero"`
	RenewedAt           time.Time `json:"certificate_renewed_at,omitzero"`
	BandwidthLimit      int64     `json:"bandwidth_limit_bytes_per_second,omitempty"`
}

// Status returns the tunnel's current summary.
func (c *Client) Status() Status {
	cert := c.Certificate()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		State:               c.state,
		Since:               c.stateSince,
		Preference:          c.opts.Transport,
		QUICBlockedSince:    c.quicDownSince,
		Connections:         c.dials,
		Site:                c.hello.Site,
		CertificateNotAfter: certNotAfter(cert),
		RenewedAt:           c.renewedAt,
		BandwidthLimit:      c.limiter.Rate(),
	}
	if c.cur != nil {
		st.Transport, st.Via = c.cur.transport, c.cur.via
		st.RTTMillis = float64(c.cur.link.RTT().Microseconds()) / 1000
	}
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	if c.refusal != nil {
		st.Refusal = c.refusal.Error()
	}
	if c.inspection != nil {
		st.TLSInspection = c.inspection.Error()
	}
	return st
}

func certNotAfter(c tls.Certificate) time.Time {
	if c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	if len(c.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			return leaf.NotAfter
		}
	}
	return time.Time{}
}
