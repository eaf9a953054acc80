// Package gateway is the running Wardgate appliance: it wires the
// database, the TUF mirror and blob cache, the device inventory, policy,
// the telemetry relay and the tunnel to the hub, serves the device API
// on the clinical VLANs and the admin listener, and owns the order in
// which all of it starts and stops.
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cache/blob"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/store"
	"github.com/wardgate/wardgate/gateway/tunnel"
	"github.com/wardgate/wardgate/policy"
)

// Gateway is one running appliance. Create it with New, run it with Run;
// Run closes everything New opened.
type Gateway struct {
	cfg    config.Config
	log    *slog.Logger
	reg    *prometheus.Registry
	siteID string

	db        *badger.DB
	audit     *audit.Store
	blobs     *blob.Store
	mirror    *cache.Mirror
	inventory *discovery.Inventory
	policy    *policy.Evaluator
	tunnel    *tunnel.Client
	outbox    *outbox
	discovery *discoveryService
	telemetry *telemetryService
	admin     *adminState

	deviceTLS *tls.Config
	deviceLns []net.Listener
	adminLn   net.Listener

	refreshNow chan struct{}
	ready      chan struct{}
	readyOnce  sync.Once
}

// New opens the data directory and binds every listener, so that a bad
// config or a busy port fails before anything runs. On error nothing is
// left open.
func New(cfg config.Config, log *slog.Logger) (_ *Gateway, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        cfg,
		log:        log,
		reg:        prometheus.NewRegistry(),
		refreshNow: make(chan struct{}, 1),
		ready:      make(chan struct{}),
	}
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			g.closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	if g.db, err = store.Open(filepath.Join(cfg.DataDir, "db"), log); err != nil {
		return nil, err
	}
	if g.audit, err = audit.Open(g.db); err != nil {
		return nil, err
	}
	if g.blobs, err = blob.Open(filepath.Join(cfg.DataDir, "blobs"), g.db, blob.Options{
		MaxBytes:   cfg.Cache.MaxBytes,
		Logger:     log.With("component", "blobs"),
		Registerer: g.reg,
	}); err != nil {
		return nil, fmt.Errorf("opening blob cache: %w", err)
	}
	if g.inventory, err = discovery.OpenInventory(g.db, discovery.InventoryOptions{
		Logger:     log.With("component", "inventory"),
		Registerer: g.reg,
		OnEvent:    g.auditInventoryEvent,
	}); err != nil {
		return nil, fmt.Errorf("opening inventory: %w", err)
	}
	if g.policy, err = newPolicyEvaluator(cfg); err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	creds := cfg.CredentialsDir()
	g.siteID = readSiteID(creds)
	if err := g.setupUpstream(creds); err != nil {
		return nil, err
	}
	if g.deviceTLS, err = g.deviceTLSConfig(creds); err != nil {
		return nil, err
	}
	if g.telemetry, err = newTelemetryService(g); err != nil {
		return nil, err
	}
	for _, addr := range cfg.DeviceAPI.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening for devices on %s: %w", addr, err)
		}
		g.deviceLns = append(g.deviceLns, ln)
	}
	if cfg.Admin.Listen != "" {
		if g.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return nil, fmt.Errorf("listening for admin on %s: %w", cfg.Admin.Listen, err)
		}
	}
	if err := g.setupAdmin(); err != nil {
		return nil, err
	}
	if g.discovery, err = newDiscoveryService(g); err != nil {
		return nil, err
	}
	return g, nil
}

// setupUpstream builds the tunnel and the mirror. Without enrolment
// credentials the gateway still serves what its cache holds.
func (g *Gateway) setupUpstream(creds string) error {
	root, _ := os.ReadFile(filepath.Join(creds, "root.json"))
	var client *http.Client
	if g.cfg.Upstream.Hub != "" {
		opts, err := tunnelOptions(g.cfg, creds, g.log, g.reg, g.onNotice)
		if err != nil {
			return err
		}
		if g.tunnel, err = tunnel.New(opts); err != nil {
			return err
		}
		client = g.tunnel.HTTPClient()
	} else {
		g.log.Warn("no upstream hub configured: serving the local cache only")
		client = &http.Client{Transport: offlineTransport{}}
	}
	var err error
	g.mirror, err = cache.NewMirror(cache.MirrorOptions{
		Name:                 g.cfg.Upstream.Repository,
		DB:                   g.db,
		Blobs:                g.blobs,
		Client:               client,
		BaseURL:              "https://wardhub/v1/tuf",
		TrustedRoot:          root,
		RequestTimeout:       time.Duration(g.cfg.Upstream.RequestTimeout),
		Grace:                time.Duration(g.cfg.Mirror.Grace),
		ExpiryWarning:        time.Duration(g.cfg.Mirror.ExpiryWarning),
		ExpiredDownloadGrace: noneIfZero(g.cfg.Mirror.ExpiredDownloadGrace),
		StallTimeout:         time.Duration(g.cfg.Mirror.StallTimeout),
		FillAttempts:         g.cfg.Mirror.FillAttempts,
		Online:               g.upstreamOnline,
		Logger:               g.log,
		Registerer:           g.reg,
	})
	if err != nil {
		return fmt.Errorf("opening mirror: %w", err)
	}
	g.outbox = newOutbox(g.db, client, g.log)
	return nil
}

// Registry returns the gateway's metrics registry.
func (g *Gateway) Registry() *prometheus.Registry { return g.reg }

// DeviceAddrs returns the device API listener addresses.
func (g *Gateway) DeviceAddrs() []net.Addr {
	var out []net.Addr
	for _, ln := range g.deviceLns {
		out = append(out, ln.Addr())
	}
	return out
}

// AdminAddr returns the admin listener's address, or nil.
func (g *Gateway) AdminAddr() net.Addr {
	if g.adminLn == nil {
		return nil
	}
	return g.adminLn.Addr()
}

// Tunnel returns the upstream tunnel, or nil when no hub is configured.
func (g *Gateway) Tunnel() *tunnel.Client { return g.tunnel }

// Mirror returns the TUF mirror.
func (g *Gateway) Mirror() *cache.Mirror { return g.mirror }

// Audit returns the audit store.
func (g *Gateway) Audit() *audit.Store { return g.audit }

// Ready is closed once the first refresh attempt has finished.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Run serves until ctx ends and then shuts down in order.
func (g *Gateway) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(bg)
			g.log.Debug("stopped", "task", name)
		}()
	}
	if g.tunnel != nil {
		start("tunnel", func(c context.Context) { _ = g.tunnel.Run(c) })
		start("refresh", g.refreshLoop)
		start("outbox", g.outbox.run)
	} else {
		g.readyOnce.Do(func() { close(g.ready) })
	}
	start("blobs", func(c context.Context) { _ = g.blobs.Run(c) })
	start("mirror", func(c context.Context) { _ = g.mirror.Run(c) })
	start("inventory", func(c context.Context) { _ = g.inventory.Run(c) })
	start("telemetry", g.telemetry.run)
	start("discovery", g.discovery.run)
	start("admin", g.runAdmin)

	devSrv := &http.Server{
		Handler:           g.deviceRoutes(),
		TLSConfig:         g.deviceTLS,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       cache.ConnContext,
		// No HTTP/2: the device TLS config offers only http/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, len(g.deviceLns)+1)
	var srvWG sync.WaitGroup
	for _, ln := range g.deviceLns {
		srvWG.Add(1)
		go func(ln net.Listener) {
			defer srvWG.Done()
			if err := devSrv.Serve(tls.NewListener(ln, g.deviceTLS)); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("device API on %s: %w", ln.Addr(), err)
			}
		}(ln)
	}
	var adminSrv *http.Server
	if g.adminLn != nil {
		adminSrv = &http.Server{Handler: g.adminRoutes(), ReadHeaderTimeout: 10 * time.Second}
		srvWG.Add(1)
		go func() {
			defer srvWG.Done()
			if err := adminSrv.Serve(g.adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin listener: %w", err)
			}
		}()
	}
	g.log.Info("gateway serving", "device_api", addrList(g.DeviceAddrs()), "admin", g.cfg.Admin.Listen, "site", g.siteID)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	g.log.Info("gateway shutting down")
	// The mDNS goodbye goes out first, so devices stop sending new work.
	g.discovery.close()
	// Stop order:
	// 1. device listeners drain, so no check-in or telemetry batch is
	//    acknowledged after the queue stops;
	// 2. the telemetry relay flushes what devices sent, while the tunnel
	//    is still up;
	// 3. background tasks stop, the tunnel last among them;
	// 4. the blob store records a clean shutdown, then badger closes.
	drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = devSrv.Shutdown(drain)
	if adminSrv != nil {
		_ = adminSrv.Shutdown(drain)
	}
	cancel()
	srvWG.Wait()
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	g.telemetry.flush(flush)
	g.outbox.flush(flush)
	cancel()
	stopBG()
	wg.Wait()
	if g.tunnel != nil {
		_ = g.tunnel.Close()
	}
	closeErr := g.closeAll()
	g.log.Info("gateway stopped")
	return errors.Join(runErr, closeErr)
}

// closeAll closes what New opened, in reverse order.
func (g *Gateway) closeAll() error {
	var errs []error
	for _, ln := range g.deviceLns {
		_ = ln.Close()
	}
	if g.adminLn != nil {
		_ = g.adminLn.Close()
	}
	if g.discovery != nil {
		g.discovery.close()
	}
	if g.telemetry != nil {
		g.telemetry.close()
		g.telemetry = nil
	}
	if g.mirror != nil {
		// Upstream fills stop before the blob store they write to.
		errs = append(errs, g.mirror.Close())
	}
	if g.blobs != nil {
		errs = append(errs, g.blobs.Close())
		g.blobs = nil
	}
	if g.db != nil {
		errs = append(errs, g.db.Close())
		g.db = nil
	}
	return errors.Join(errs...)
}

// refreshLoop refreshes the mirror at start, on every "metadata" notice,
// and at the configured interval.
func (g *Gateway) refreshLoop(ctx context.Context) {
	interval := time.Duration(g.cfg.Upstream.RefreshInterval)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.refreshNow:
		}
		err := g.mirror.Refresh(ctx)
		g.readyOnce.Do(func() { close(g.ready) })
		next := interval
		if err != nil && ctx.Err() == nil {
			g.log.Warn("TUF refresh failed; serving the last verified state", "err", err)
			next = min(interval, 30*time.Second)
		} else if err == nil {
			st := g.mirror.Status()
			g.log.Info("TUF refresh done", "timestamp_version", st.TimestampVersion, "targets", st.Targets)
			g.telemetry.releasesChanged()
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

func (g *Gateway) onNotice(n tunnel.Notice) {
	switch n.Type {
	case "metadata", "entitlement", "withdrawn":
		select {
		case g.refreshNow <- struct{}{}:
		default:
		}
	}
}

// auditInventoryEvent records inventory changes found by background
// sweeps (stale, retired, mDNS sightings).
func (g *Gateway) auditInventoryEvent(ev discovery.Event) {
	g.recordAudit(context.Background(), audit.Record{
		Actor:   "gateway",
		Action:  "device." + ev.Kind,
		Subject: ev.Device.Manufacturer + "/" + ev.Device.Serial,
		Details: ev.Details,
	})
}

func (g *Gateway) recordAudit(ctx context.Context, r audit.Record) {
	if err := g.audit.Record(ctx, r); err != nil {
		g.log.Error("audit record lost", "action", r.Action, "subject", r.Subject, "err", err)
	}
}

func readSiteID(creds string) string {
	b, err := os.ReadFile(filepath.Join(creds, "site-id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func addrList(addrs []net.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Trusted reports true. NOTE: the gateway does not yet check clock
// synchronisation; an untrusted clock should close every window.
func (systemClock) Trusted() bool { return true }

// offlineTransport fails every upstream request of a gateway with no hub.
type offlineTransport struct{}

func (offlineTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no upstream hub configured")
}

// peerCert returns the verified client certificate of r.
func peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// noneIfZero maps a config duration where "0s" means none to the mirror's
// convention, where zero means the default and a negative value none.
func noneIfZero(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// upstreamOnline reports whether the tunnel to the hub is up, so the
// mirror answers "come back later" at once for an uncached target while
// it is down.
func (g *Gateway) upstreamOnline() bool { return g.tunnel != nil && g.tunnel.Connected() }
