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
// within about 10 s. HTTP/2 over TCP pings after 3 s of silence and gives
// up 5 s later.
const (
	KeepAlivePeriod = 3 * time.Second
	MaxIdleTimeout  = 10 * time.Second
	h2PingAfter     = 3 * time.Second
	h2PingTimeout   = 5 * time.Second
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
	// DataDir holds the hub's CAs, TLS key, stateless reset key, site
	// registry and database.
	DataDir string
	// RepoDir is the TUF repository served to gateways.
	RepoDir string
	// ListenAddr is the UDP address for QUIC, such as "127.0.0.1:4443".
	ListenAddr string
	// TCPListenAddr is the TCP address for HTTP/2 over TLS, the transport
	// of networks that block UDP. Empty means the same host and port as
	// the QUIC socket; "none" disables it.
	TCPListenAddr string
	// AdminAddr is the TCP address for /metrics and /v1/stats; empty
	// disables it.
	AdminAddr string
	// Hostnames are the DNS names the hub's certificate is valid for,
	// besides "wardhub", 127.0.0.1 and ::1.
	Hostnames []string
	// CertLifetime is the lifetime of issued gateway certificates; zero
	// means DefaultCertLifetime.
	CertLifetime time.Duration
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
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	gwCA     *pki.Authority
	tlsConf  *tls.Config
	registry *Registry
	conns    *connTracker
	enrolMu  sync.Mutex

	udp     *net.UDPConn
	tr      *quic.Transport
	tcp     net.Listener
	admin   net.Listener
	notices *broadcaster

	mu     sync.Mutex
	stats  Stats
	stop   context.CancelFunc
	killed bool
}

// Stats counts what the hub has seen since it started.
type Stats struct {
	ConnectionsAccepted int `json:"connections_accepted"`
	ConnectionsActive   int `json:"connections_active"`
	// ConnectionsBySite counts accepted connections per site.
	ConnectionsBySite      map[string]int `json:"connections_by_site"`
	ConnectionsByTransport map[string]int `json:"connections_by_transport"`
	// OpenBySite counts the connections open now per site.
	OpenBySite map[string]int `json:"open_by_site"`
	// MaxOpenBySite is the most connections a site had open at once,
	// counted before an older connection is closed as superseded.
	MaxOpenBySite map[string]int `json:"max_open_by_site"`
	// Superseded counts older connections closed because their site
	// connected again.
	Superseded          int `json:"superseded"`
	TelemetryBatches    int `json:"telemetry_batches"`
	TelemetryDuplicates int `json:"telemetry_duplicates"`
	InstallResults      int `json:"install_results"`
	InstallDuplicates   int `json:"install_duplicates"`
	NoticesSent         int `json:"notices_sent"`
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
	gwCA, err := GatewayCA(opts.DataDir)
	if err != nil {
		return nil, err
	}
	reg, err := OpenRegistry(opts.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "hub"),
		metrics:  newMetrics(opts.Registerer),
		gwCA:     gwCA,
		registry: reg,
		conns:    newConnTracker(),
		notices:  newBroadcaster(),
	}
	cert, err := s.serverCert()
	if err != nil {
		return nil, err
	}
	s.tlsConf = &tls.Config{
		Certificates: []tls.Certificate{cert},
		// Certificates are checked by verifyClientCert and refused with
		// a reason by guard, so a gateway learns why it is refused.
		ClientAuth:            tls.RequestClientCert,
		VerifyPeerCertificate: s.verifyClientCert,
		MinVersion:            tls.VersionTLS13,
	}
	resetKey, err := loadOrCreateResetKey(filepath.Join(opts.DataDir, "stateless-reset.key"))
	if err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		return nil, err
	}
	s.tr = &quic.Transport{Conn: s.udp, StatelessResetKey: resetKey}
	if opts.AdminAddr != "" {
		if s.admin, err = net.Listen("tcp", opts.AdminAddr); err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("listening on admin address %s: %w", opts.AdminAddr, err)
		}
	}
	return s, nil
}

// bind opens the UDP socket and, unless disabled, the TCP listener on
// the same port. With an ephemeral port, a port whose TCP side is taken
// is given up and another one tried.
func (s *Server) bind() error {
	addr, err := net.ResolveUDPAddr("udp", s.opts.ListenAddr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: %w", s.opts.ListenAddr, err)
	}
	for attempt := 0; ; attempt++ {
		if s.udp, err = net.ListenUDP("udp", addr); err != nil {
			return fmt.Errorf("listening on %s: %w", s.opts.ListenAddr, err)
		}
		if s.opts.TCPListenAddr == "none" {
			return nil
		}
		tcpAddr := s.opts.TCPListenAddr
		if tcpAddr == "" {
			tcpAddr = s.udp.LocalAddr().String()
		}
		s.tcp, err = net.Listen("tcp", tcpAddr)
		if err == nil {
			return nil
		}
		s.udp.Close()
		if addr.Port != 0 || s.opts.TCPListenAddr != "" || attempt >= 10 {
			return fmt.Errorf("listening on TCP %s: %w", tcpAddr, err)
		}
	}
}

func (s *Server) closeSockets() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// Addr returns the UDP address the hub listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// TCPAddr returns the TCP address of the HTTP/2 listener, or nil.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

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

// Registry returns the hub's site registry.
func (s *Server) Registry() *Registry { return s.registry }

// Stats returns a copy of the hub's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	s.conns.fill(&st)
	return st
}

// Notify sends a notice to every connected gateway's control stream.
func (s *Server) Notify(n Notice) {
	s.mu.Lock()
	s.stats.NoticesSent++
	s.mu.Unlock()
	s.notices.publish(n)
}

// Kill stops the hub the way a crash would: its sockets close without a
// word to the gateways, so they learn of it only from the next hub's
// stateless resets or from their idle timeouts. Run returns afterwards.
// It exists for recovery tests and drills.
func (s *Server) Kill() {
	s.mu.Lock()
	s.killed = true
	stop := s.stop
	s.mu.Unlock()
	_ = s.udp.Close()
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if stop != nil {
		stop()
	}
}

// Run serves until ctx ends, then closes every connection and listener.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.stop = cancel
	killed := s.killed
	s.mu.Unlock()
	if killed {
		return nil
	}
	quicConf := s.tlsConf.Clone()
	quicConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := s.tr.Listen(quicConf, &quic.Config{
		KeepAlivePeriod: KeepAlivePeriod,
		MaxIdleTimeout:  MaxIdleTimeout,
	})
	if err != nil {
		return fmt.Errorf("starting QUIC listener: %w", err)
	}
	routes := s.routes()
	h3 := &http3.Server{
		Handler: routes,
		Logger:  s.log,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(3)
	go func() {
		defer wg.Done()
		errc <- h3.ServeListener(&countingListener{Listener: ln, s: s})
	}()
	go func() {
		defer wg.Done()
		s.watchRepository(ctx)
	}()
	go func() {
		defer wg.Done()
		s.enforce(ctx)
	}()
	var h2 *http.Server
	if s.tcp != nil {
		h2 = s.newH2Server(routes)
		tcpConf := s.tlsConf.Clone()
		tcpConf.NextProtos = []string{"h2"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h2.Serve(tls.NewListener(s.tcp, tcpConf)); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- err
			}
		}()
	}
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
	s.log.Info("hub serving", "addr", s.Addr().String(), "tcp", addrString(s.TCPAddr()), "repo", s.opts.RepoDir)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	// Stop order: the notice streams end first so HTTP/3 shutdown does
	// not wait on them, then HTTP/3 and HTTP/2 close their connections,
	// then the listeners and sockets go.
	s.notices.close()
	s.mu.Lock()
	killed = s.killed
	s.mu.Unlock()
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 2*time.Second)
	if !killed {
		_ = h3.Shutdown(shutCtx)
	}
	if h2 != nil {
		if !killed {
			_ = h2.Shutdown(shutCtx)
		}
		_ = h2.Close()
	}
	cancelShut()
	_ = h3.Close()
	_ = ln.Close()
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	_ = s.tr.Close()
	s.closeSockets()
	wg.Wait()
	s.log.Info("hub stopped", "killed", killed)
	if killed {
		return nil
	}
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) && !errors.Is(runErr, quic.ErrServerClosed) && !errors.Is(runErr, net.ErrClosed) {
		return runErr
	}
	return nil
}

// newH2Server serves the gateway routes over HTTP/2 on TLS over TCP,
// with pings that drop a dead gateway within about 8 seconds.
func (s *Server) newH2Server(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ConnState:         s.tcpConnState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: h2PingAfter,
			PingTimeout:     h2PingTimeout,
		},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP2(true)
	return srv
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
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
		return s.withCA(pair), nil
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
	return s.withCA(pair), nil
}

// withCA appends the CA to the hub's chain, so that a gateway enrolling
// with only the CA's fingerprint can check it.
func (s *Server) withCA(pair tls.Certificate) tls.Certificate {
	if len(pair.Certificate) == 1 {
		pair.Certificate = append(pair.Certificate, s.gwCA.Cert.Raw)
	}
	return pair
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

type metrics struct {
	connections *prometheus.CounterVec
	active      prometheus.Gauge
	uploads     *prometheus.CounterVec
	rejects     *prometheus.CounterVec
	enrolments  *prometheus.CounterVec
	renewals    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardhub_connections_total", Help: "Gateway connections accepted, by transport (quic, tcp).",
		}, []string{"transport"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardhub_connections_active", Help: "Gateway connections open now.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardhub_uploads_total", Help: "Uploads received from gateways, by kind and result.",
		}, []string{"kind", "result"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardhub_refusals_total", Help: "Requests and connections refused, by reason.",
		}, []string{"reason"}),
		enrolments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardhub_enrolments_total", Help: "Enrolment requests, by result.",
		}, []string{"result"}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardhub_renewals_total", Help: "Gateway certificates renewed.",
		}),
	}
	reg.MustRegister(m.connections, m.active, m.uploads, m.rejects, m.enrolments, m.renewals)
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
