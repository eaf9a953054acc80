package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/cmd/wardhub/repo"
	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/store"
)

// env is a hub with a TUF repository of two releases, and a gateway
// enrolled with it, all on loopback in a temporary folder.
type env struct {
	t       *testing.T
	dir     string
	repo    *repo.Repo
	hubData string
	bundle  string
	hubAddr string
	log     *slog.Logger

	hub       *hub.Server
	hubDB     *badger.DB
	analytics *analytics.Store
	hubStop   context.CancelFunc
	hubDone   chan error

	cfg    config.Config
	gw     *gateway.Gateway
	gwStop context.CancelFunc
	gwDone chan error
}

// Releases of the test repository.
const (
	pumpTarget    = "infusion-pump/3.2.0/pump.img"
	monitorTarget = "patient-monitor/5.1.0/monitor.img"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, hubData: filepath.Join(dir, "hub"), bundle: filepath.Join(dir, "bundle")}
	e.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := repo.Init(filepath.Join(dir, "repo"), filepath.Join(dir, "repo-keys"))
	if err != nil {
		t.Fatalf("repo init: %v", err)
	}
	e.repo = r
	e.addRelease(pumpTarget, 3<<20, cache.TargetMeta{Kind: cache.KindRelease, Product: "infusion-pump", Version: "3.2.0", Models: []string{"IP-200"}, HardwareRevisions: []string{"B", "C"}}, "../testdata/sbom/medical-device.cdx.json")
	e.addRelease(monitorTarget, 1<<20, cache.TargetMeta{Kind: cache.KindRelease, Product: "patient-monitor", Version: "5.1.0", Models: []string{"MON-5"}}, "../testdata/sbom/zephyr-firmware.spdx")
	if _, err := hub.Enroll(e.hubData, r.Dir(), e.bundle, 24*time.Hour); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	t.Cleanup(func() {
		e.stopGateway()
		e.stopHub()
	})
	return e
}

// addRelease publishes a release of size random bytes with an SBOM.
func (e *env) addRelease(target string, size int, meta cache.TargetMeta, sbomFile string) {
	e.t.Helper()
	img := filepath.Join(e.dir, filepath.Base(target))
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(img, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if sbomFile != "" {
		meta.SBOM = filepath.ToSlash(filepath.Join(filepath.Dir(target), filepath.Base(sbomFile)))
		if err := e.repo.AddTarget(meta.SBOM, sbomFile, cache.TargetMeta{Kind: cache.KindSBOM, Release: target}); err != nil {
			e.t.Fatalf("adding SBOM: %v", err)
		}
	}
	if err := e.repo.AddTarget(target, img, meta); err != nil {
		e.t.Fatalf("adding %s: %v", target, err)
	}
	if err := e.repo.Publish(); err != nil {
		e.t.Fatalf("publishing: %v", err)
	}
}

func (e *env) startHub() {
	e.t.Helper()
	if e.hubDB == nil {
		db, err := store.Open(filepath.Join(e.hubData, "db"), e.log)
		if err != nil {
			e.t.Fatal(err)
		}
		e.hubDB = db
		an, err := analytics.Open(db, analytics.Options{Logger: e.log})
		if err != nil {
			e.t.Fatal(err)
		}
		e.analytics = an
	}
	addr := e.hubAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	srv, err := hub.New(hub.Options{
		DataDir:    e.hubData,
		RepoDir:    e.repo.Dir(),
		ListenAddr: addr,
		DB:         e.hubDB,
		Telemetry:  e.analytics,
		Logger:     e.log,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		e.t.Fatalf("starting hub: %v", err)
	}
	e.hub, e.hubAddr = srv, srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.hubStop, e.hubDone = cancel, make(chan error, 1)
	go func() { e.hubDone <- srv.Run(ctx) }()
}

// stopHub stops the hub, keeping its database open for later checks.
func (e *env) stopHub() {
	if e.hubStop == nil {
		return
	}
	e.hubStop()
	if err := <-e.hubDone; err != nil {
		e.t.Errorf("hub stopped with error: %v", err)
	}
	e.hubStop = nil
}

func (e *env) closeHubDB() {
	if e.hubDB != nil {
		_ = e.hubDB.Close()
		e.hubDB = nil
	}
}

func (e *env) gatewayConfig() config.Config {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(e.dir, "gateway")
	cfg.Upstream.Hub = e.hubAddr
	cfg.Upstream.ServerName = "wardhub"
	cfg.DeviceAPI.Listen = []string{"127.0.0.1:0"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Telemetry.MinCellDevices = 1
	return cfg
}

func (e *env) startGateway(cfg config.Config) {
	e.t.Helper()
	if _, err := gateway.ImportCredentials(cfg, e.bundle, true); err != nil {
		e.t.Fatal(err)
	}
	g, err := gateway.New(cfg, e.log)
	if err != nil {
		e.t.Fatalf("starting gateway: %v", err)
	}
	e.cfg, e.gw = cfg, g
	ctx, cancel := context.WithCancel(context.Background())
	e.gwStop, e.gwDone = cancel, make(chan error, 1)
	go func() { e.gwDone <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case <-time.After(30 * time.Second):
		e.t.Fatal("gateway not ready within 30s")
	}
}

func (e *env) stopGateway() {
	if e.gwStop == nil {
		return
	}
	e.gwStop()
	if err := <-e.gwDone; err != nil {
		e.t.Errorf("gateway stopped with error: %v", err)
	}
	e.gwStop = nil
}

func (e *env) gatewayURL() string {
	return "https://" + e.gw.DeviceAddrs()[0].String()
}

func (e *env) deviceCA() *pki.Authority {
	e.t.Helper()
	ca, err := hub.DeviceCA(e.hubData)
	if err != nil {
		e.t.Fatal(err)
	}
	return ca
}

func (e *env) gatewayCA() *tls.Config {
	e.t.Helper()
	pool, err := pki.LoadPool(gateway.DeviceAPICA(e.cfg.DataDir))
	if err != nil {
		e.t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool}
}

func (e *env) trustedRoot() []byte {
	e.t.Helper()
	root, err := os.ReadFile(filepath.Join(e.bundle, "root.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	return root
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

var _ io.Writer = testWriter{}
