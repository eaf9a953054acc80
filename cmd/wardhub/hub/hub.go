// Package hub is the manufacturer's end of the Wardgate tunnel. It
// accepts gateway connections over QUIC with mutual TLS and HTTP/3 on
// top, serves the TUF repository exactly as it is on disk, pushes
// notices on each gateway's control stream, and stores what gateways
// upload: telemetry batches and install outcomes, each deduplicated on
// its idempotency key.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/wardgate/wardgate/gateway/pki"
)

// Liveness settings shared with the gateway: with a keep-alive every
// 3 s and a 10 s idle timeout, either side notices a dead peer or path
// within about 10 s.
const (
	KeepAlivePeriod = 3 * time.Second
	MaxIdleTimeout  = 10 * time.Second
)

// TelemetrySink stores telemetry batches that gateways upload.
type TelemetrySink interface {
	// Ingest stores body for the site unless (site, key) was stored
	// before, and reports whether it was a duplicate. It returns only
	// once the batch is durable.
	Ingest(ctx context.Context, siteID, idempotencyKey string, body []byte) (duplicate bool, err error)
}

// Options configures a Server.
type Options struct {
	// DataDir holds the hub's CAs, TLS key, stateless reset key and
	// database.
	DataDir string
	// RepoDir is the TUF repository served to gateways.
	RepoDir string
	// ListenAddr is the UDP address for QUIC, such as "127.0.0.1:4443".
	ListenAddr string
	// AdminAddr is the TCP address for /metrics and /v1/stats; empty
	// disables it.
	AdminAddr string
	// Hostnames are the DNS names the hub's certificate is valid for,
	// besides "wardhub", 127.0.0.1 and ::1.
	Hostnames []string
	// DB is the hub's database; the caller opens and closes it.
	DB *badger.DB
	// Telemetry receives telemetry uploads; nil rejects them with 503.
	Telemetry TelemetrySink
	// Handler, when set, serves extra routes (such as the analytics
	// query API) on the admin listener.
	AdminHandler http.Handler
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Gatherer     prometheus.Gatherer
}

// Server is a running hub. Create it with New and run it with Run.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	gwCA    *pki.Authority
	tlsConf *tls.Config

	udp     *net.UDPConn
	tr      *quic.Transport
	admin   net.Listener
	notices *broadcaster

	mu     sync.Mutex
	active map[*quic.Conn]string // connection -> site id
	stats  Stats
}

// Stats counts what the hub has seen since it started.
type Stats struct {
	ConnectionsAccepted int            `json:"connections_accepted"`
	ConnectionsActive   int            `json:"connections_active"`
	ConnectionsBySite   map[string]int `json:"connections_by_site"`
	TelemetryBatches    int            `json:"telemetry_batches"`
	TelemetryDuplicates int            `json:"telemetry_duplicates"`
	InstallResults      int            `json:"install_results"`
	NoticesSent         int            `json:"notices_sent"`
}

// New loads or creates the hub's keys and binds its listeners. Nothing is
// served until Run.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.DB == nil {
		return nil, errors.New("hub needs a database")
	}
	gwCA, err := pki.LoadOrCreateAuthority(filepath.Join(opts.DataDir, "ca"), "gateway-ca", "Wardgate gateway CA")
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger.With("component", "hub"),
		metrics: newMetrics(opts.Registerer),
		gwCA:    gwCA,
		active:  map[*quic.Conn]string{},
		notices: newBroadcaster(),
		stats:   Stats{ConnectionsBySite: map[string]int{}},
	}
	cert, err := s.serverCert()
	if err != nil {
		return nil, err
	}
	s.tlsConf = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    gwCA.Pool(),
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{http3.NextProtoH3},
	}
	resetKey, err := loadOrCreateResetKey(filepath.Join(opts.DataDir, "stateless-reset.key"))
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("invalid listen address %q: %w", opts.ListenAddr, err)
	}
	if s.udp, err = net.ListenUDP("udp", addr); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", opts.ListenAddr, err)
	}
	s.tr = &quic.Transport{Conn: s.udp, StatelessResetKey: resetKey}
	if opts.AdminAddr != "" {
		if s.admin, err = net.Listen("tcp", opts.AdminAddr); err != nil {
			s.udp.Close()
			return nil, fmt.Errorf("listening on admin address %s: %w", opts.AdminAddr, err)
		}
	}
	return s, nil
}

// Addr returns the UDP address the hub listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// AdminAddr returns the admin listener's address, or nil.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

// GatewayCA returns the CA that signs gateway client certificates and
// the hub's own server certificate.
func (s *Server) GatewayCA() *pki.Authority { return s.gwCA }

// Stats returns a copy of the hub's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ConnectionsActive = len(s.active)
	st.ConnectionsBySite = make(map[string]int, len(s.stats.ConnectionsBySite))
	for k, v := range s.stats.ConnectionsBySite {
		st.ConnectionsBySite[k] = v
	}
	return st
}

// Notify sends a notice to every connected gateway's control stream.
func (s *Server) Notify(n Notice) {
	s.mu.Lock()
	s.stats.NoticesSent++
	s.mu.Unlock()
	s.notices.publish(n)
}

// Run serves until ctx ends, then closes every connection and listener.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.tr.Listen(s.tlsConf, &quic.Config{
		KeepAlivePeriod: KeepAlivePeriod,
		MaxIdleTimeout:  MaxIdleTimeout,
	})
	if err != nil {
		return fmt.Errorf("starting QUIC listener: %w", err)
	}
	h3 := &http3.Server{
		Handler: s.routes(),
		Logger:  s.log,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errc <- h3.ServeListener(&countingListener{Listener: ln, s: s})
	}()
	go func() {
		defer wg.Done()
		s.watchRepository(ctx)
	}()
	var adminSrv *http.Server
	if s.admin != nil {
		adminSrv = &http.Server{Handler: s.adminRoutes(), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := adminSrv.Serve(s.admin); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.log.Info("hub serving", "addr", s.Addr().String(), "repo", s.opts.RepoDir)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	// Stop order: the notice streams end first so HTTP/3 shutdown does
	// not wait on them, then HTTP/3 closes its connections, then the
	// listener and UDP socket go.
	s.notices.close()
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = h3.Shutdown(shutCtx)
	cancel()
	_ = h3.Close()
	_ = ln.Close()
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	_ = s.tr.Close()
	_ = s.udp.Close()
	wg.Wait()
	s.log.Info("hub stopped")
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) && !errors.Is(runErr, quic.ErrServerClosed) && !errors.Is(runErr, net.ErrClosed) {
		return runErr
	}
	return nil
}

// IssueGateway issues a client certificate for a gateway of siteID.
func (s *Server) IssueGateway(siteID string, lifetime time.Duration) (tls.Certificate, error) {
	return IssueGateway(s.gwCA, siteID, lifetime)
}

// IssueGateway issues a gateway client certificate whose common name is
// the site id.
func IssueGateway(ca *pki.Authority, siteID string, lifetime time.Duration) (tls.Certificate, error) {
	return ca.IssuePair(pki.Template{
		Subject:  pkix.Name{CommonName: siteID, Organization: []string{"Wardgate site"}},
		Lifetime: lifetime,
		Client:   true,
	})
}

func (s *Server) serverCert() (tls.Certificate, error) {
	dir := filepath.Join(s.opts.DataDir, "tls")
	certFile, keyFile := filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub.key")
	if pair, err := pki.LoadPair(certFile, keyFile); err == nil && time.Until(pair.Leaf.NotAfter) > 30*24*time.Hour && sameNames(pair.Leaf, s.opts.Hostnames) {
		return pair, nil
	}
	pair, err := s.gwCA.IssuePair(pki.Template{
		Subject:  pkix.Name{CommonName: "wardhub"},
		DNSNames: append([]string{"wardhub", "localhost"}, s.opts.Hostnames...),
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Lifetime: 2 * 365 * 24 * time.Hour,
		Server:   true,
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := pki.WritePair(certFile, keyFile, pair); err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}

func sameNames(c *x509.Certificate, want []string) bool {
	have := map[string]bool{}
	for _, n := range c.DNSNames {
		have[n] = true
	}
	for _, n := range want {
		if !have[n] {
			return false
		}
	}
	return true
}

// loadOrCreateResetKey keeps the stateless reset key across restarts, so
// a gateway whose connection state the hub lost on restart gets a
// stateless reset at once instead of waiting out its idle timeout.
func loadOrCreateResetKey(name string) (*quic.StatelessResetKey, error) {
	var key quic.StatelessResetKey
	data, err := os.ReadFile(name)
	if err == nil && len(data) == len(key) {
		copy(key[:], data)
		return &key, nil
	}
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(name, key[:], 0o600); err != nil {
		return nil, fmt.Errorf("writing stateless reset key: %w", err)
	}
	return &key, nil
}

type connKey struct{}

// siteOf returns the site id of the gateway that sent r.
func siteOf(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

// countingListener records each accepted connection and its site, and
// forgets it when the connection ends. quic.Listener returns connections
// after the handshake, so the peer certificate is known.
type countingListener struct {
	*quic.Listener
	s *Server
}

func (l *countingListener) Accept(ctx context.Context) (*quic.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	site := ""
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		site = certs[0].Subject.CommonName
	}
	s := l.s
	s.mu.Lock()
	s.active[c] = site
	s.stats.ConnectionsAccepted++
	s.stats.ConnectionsBySite[site]++
	s.mu.Unlock()
	s.metrics.connections.Inc()
	s.metrics.active.Inc()
	s.log.Info("gateway connected", "site", site, "remote", c.RemoteAddr().String())
	go func() {
		<-c.Context().Done()
		s.mu.Lock()
		delete(s.active, c)
		s.mu.Unlock()
		s.metrics.active.Dec()
		s.log.Info("gateway disconnected", "site", site, "cause", context.Cause(c.Context()))
	}()
	return c, nil
}

type metrics struct {
	connections prometheus.Counter
	active      prometheus.Gauge
	uploads     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardhub_connections_total", Help: "Gateway QUIC connections accepted.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardhub_connections_active", Help: "Gateway QUIC connections open now.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardhub_uploads_total", Help: "Uploads received from gateways, by kind and result.",
		}, []string{"kind", "result"}),
	}
	reg.MustRegister(m.connections, m.active, m.uploads)
	return m
}

func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if s.opts.AdminHandler != nil {
		mux.Handle("/", s.opts.AdminHandler)
	}
	return mux
}
