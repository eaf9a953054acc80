package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/tunnel"
	"github.com/wardgate/wardgate/gateway/tunnel/nettest"
)

// runGateway starts a gateway on cfg as it is, without importing the
// bundle, and waits until it is ready.
func (e *env) runGateway(cfg config.Config) {
	e.t.Helper()
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

func hubPin(t *testing.T, e *env) string {
	t.Helper()
	ca, err := hub.GatewayCA(e.hubData)
	if err != nil {
		t.Fatal(err)
	}
	return hub.CAFingerprint(ca.Cert)
}

func TestEnrolWithTokenThenServe(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	token, err := e.hub.Registry().CreateToken(time.Hour, "St Example, ward 4")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.gatewayConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	site, err := gateway.Enroll(ctx, cfg, gateway.EnrollOptions{Token: token, HubCASHA256: hubPin(t, e), Logger: e.log})
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	for _, name := range []string{"gateway.pem", "gateway.key", "hub-ca.pem", "device-ca.pem", "root.json", "site-id"} {
		if _, err := os.Stat(filepath.Join(cfg.CredentialsDir(), name)); err != nil {
			t.Errorf("credentials lack %s: %v", name, err)
		}
	}
	if _, err := gateway.Enroll(ctx, cfg, gateway.EnrollOptions{Token: token, HubCASHA256: hubPin(t, e)}); err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Errorf("second enrolment: %v, want a refusal that says the gateway is enrolled", err)
	}
	e.runGateway(cfg)
	waitFor(t, 10*time.Second, "the tunnel", e.gw.Tunnel().Connected)
	if got := e.gw.Tunnel().Status().Site; got != site {
		t.Errorf("hub greeted the gateway as %q, want the enrolled site %s", got, site)
	}
	if v := e.gw.Mirror().Status().TimestampVersion; v == 0 {
		t.Error("mirror has no verified metadata: the enrolled gateway could not refresh")
	}
}

func TestInterruptedRenewalIsFinishedAtStart(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	cfg := e.gatewayConfig()
	if _, err := gateway.ImportCredentials(cfg, e.bundle, true); err != nil {
		t.Fatal(err)
	}
	site, _ := os.ReadFile(filepath.Join(cfg.CredentialsDir(), "site-id"))
	ca, err := hub.GatewayCA(e.hubData)
	if err != nil {
		t.Fatal(err)
	}
	next, err := hub.IssueGateway(ca, strings.TrimSpace(string(site)), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A renewal stopped after the new key moved into place and before
	// the new certificate did.
	creds := cfg.CredentialsDir()
	if err := pki.WritePair(filepath.Join(creds, "gateway.pem.next"), filepath.Join(creds, "gateway.key"), next); err != nil {
		t.Fatal(err)
	}
	e.runGateway(cfg)
	waitFor(t, 10*time.Second, "the tunnel with the renewed certificate", e.gw.Tunnel().Connected)
	if got := e.gw.Tunnel().Certificate().Leaf.SerialNumber; got.Cmp(next.Leaf.SerialNumber) != 0 {
		t.Errorf("gateway presents serial %s, want the renewed %s", got, next.Leaf.SerialNumber)
	}
	if _, err := os.Stat(filepath.Join(creds, "gateway.pem.next")); err == nil {
		t.Error("gateway.pem.next is still there after start")
	}
}

func TestRevokedGatewaySaysWhyInStatus(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	waitFor(t, 10*time.Second, "the tunnel", e.gw.Tunnel().Connected)
	site := e.gw.Tunnel().Status().Site
	if _, err := e.hub.Registry().Revoke(site, "decommissioned"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the revocation to show as the tunnel error", func() bool {
		err := e.gw.Tunnel().LastError()
		return err != nil && strings.Contains(err.Error(), "revoked")
	})
	if ts := e.gw.Tunnel().Status(); ts.State != tunnel.StateRefused || !strings.Contains(ts.Refusal, "decommissioned") {
		t.Errorf("tunnel status %q refusal %q, want refused with the hub's reason", ts.State, ts.Refusal)
	}
}

func TestFallbackThroughConfiguredProxy(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	relay, err := nettest.NewUDPRelay(e.hubAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	relay.Block(true, true)
	proxy, err := nettest.NewConnectProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.RequireAuth("wardgate", "pump-room-7")
	cfg := e.gatewayConfig()
	cfg.Upstream.Hub = relay.Addr()
	cfg.Tunnel.TCPHub = e.hubAddr
	cfg.Tunnel.Proxy = "http://" + proxy.Addr()
	cfg.Tunnel.ProxyUsername = "wardgate"
	cfg.Tunnel.ProxyPasswordFile = "proxy.pw"
	cfg.Tunnel.QUICReprobeInterval = config.Duration(time.Second)
	cfg.Tunnel.BandwidthLimit = 4 << 20
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "proxy.pw"), []byte("pump-room-7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startGateway(cfg)
	if v := e.gw.Mirror().Status().TimestampVersion; v == 0 {
		t.Fatal("mirror did not refresh over the proxy")
	}
	if tr := e.gw.Tunnel().Transport(); tr != tunnel.TransportTCP {
		t.Errorf("transport with UDP blocked = %q, want tcp", tr)
	}
	relay.Block(false, false)
	waitFor(t, 10*time.Second, "the tunnel to move back to QUIC", func() bool { return e.gw.Tunnel().Transport() == tunnel.TransportQUIC })
}
