package gateway_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/pki"
)

// TestAdminOverTLSSendsHSTS serves the admin listener over HTTPS and
// checks the console's cookies and HSTS.
func TestAdminOverTLSSendsHSTS(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	cfg := e.adminConfig()
	ca, err := pki.NewAuthority("admin test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.Admin.TLSCert, cfg.Admin.TLSKey = "admin.pem", "admin.key"
	if err := pki.WritePair(filepath.Join(cfg.DataDir, "admin.pem"), filepath.Join(cfg.DataDir, "admin.key"), pair); err != nil {
		t.Fatal(err)
	}
	e.startGateway(cfg)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("https://" + e.gw.AdminAddr().String() + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
		t.Errorf("no HSTS header over TLS")
	}
	for _, ck := range resp.Cookies() {
		if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
			t.Errorf("cookie %s: Secure %t HttpOnly %t SameSite %v; want Secure, HttpOnly, Strict", ck.Name, ck.Secure, ck.HttpOnly, ck.SameSite)
		}
	}
	if plain, err := http.Get("http://" + e.gw.AdminAddr().String() + "/healthz"); err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("the TLS admin listener answered plain HTTP")
		}
	}
}
