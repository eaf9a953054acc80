package tunnel_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway/tunnel"
	"github.com/wardgate/wardgate/gateway/tunnel/nettest"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (h *testHub) token(ttl time.Duration) string {
	h.t.Helper()
	tok, err := h.server().Registry().CreateToken(ttl, "ward 7 gateway")
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *testHub) pin() string {
	h.t.Helper()
	ca, err := hub.GatewayCA(h.data)
	if err != nil {
		h.t.Fatal(err)
	}
	return hub.CAFingerprint(ca.Cert)
}

func enrolOpts(h *testHub, token string) tunnel.EnrollOptions {
	return tunnel.EnrollOptions{Addr: h.hubAddr(), Transport: tunnel.TransportQUIC, Token: token, HubCASHA256: h.pin()}
}

func TestEnrolWithTokenThenConnect(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	key := newKey(t)
	opts := enrolOpts(h, h.token(time.Hour))
	opts.Key = key
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := tunnel.Enroll(ctx, opts)
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if !strings.HasPrefix(e.SiteID, "site-") || e.Certificate.Leaf.Subject.CommonName != e.SiteID {
		t.Errorf("enrolled as %q with certificate for %q, want a site id and a matching certificate", e.SiteID, e.Certificate.Leaf.Subject.CommonName)
	}
	site, ok := h.server().Registry().Site(e.SiteID)
	if !ok || site.Method != "token" || site.Note != "ward 7 gateway" {
		t.Errorf("registry has %+v (found %t), want a token site with the token's note", site, ok)
	}
	c, _ := h.client(&tls.Config{Certificates: []tls.Certificate{e.Certificate}, RootCAs: h.caPool(), ServerName: "wardhub"}, nil)
	waitFor(t, 10*time.Second, "the enrolled gateway to connect", c.Connected)
	if err := upload(c, "first", 5*time.Second); err != nil {
		t.Errorf("upload as the enrolled site: %v", err)
	}
}

func TestEnrolmentTokenRules(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	enrol := func(token string, key *ecdsa.PrivateKey, mutate func(*tunnel.EnrollOptions)) (*tunnel.Enrolment, error) {
		o := enrolOpts(h, token)
		o.Key = key
		if mutate != nil {
			mutate(&o)
		}
		return tunnel.Enroll(ctx, o)
	}
	refusal := func(err error) string {
		var r *tunnel.RefusedError
		if errors.As(err, &r) {
			return r.Code
		}
		return ""
	}

	t.Run("one token, one site; the same key may ask again", func(t *testing.T) {
		tok, key := h.token(time.Hour), newKey(t)
		first, err := enrol(tok, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, err := enrol(tok, key, nil)
		if err != nil || again.SiteID != first.SiteID {
			t.Errorf("repeat with the same key: site %v err %v, want site %s", again, err, first.SiteID)
		}
		if _, err := enrol(tok, newKey(t), nil); refusal(err) != hub.RejectTokenUsed {
			t.Errorf("second gateway with the token: %v, want refusal %q", err, hub.RejectTokenUsed)
		}
	})
	t.Run("two gateways race for one token", func(t *testing.T) {
		tok := h.token(time.Hour)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = enrol(tok, newKey(t), nil)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else if refusal(err) != hub.RejectTokenUsed {
				t.Errorf("losing enrolment failed with %v, want refusal %q", err, hub.RejectTokenUsed)
			}
		}
		if won != 1 {
			t.Errorf("%d gateways enrolled with one token, want 1", won)
		}
	})
	tests := []struct {
		name   string
		token  func() string
		mutate func(*tunnel.EnrollOptions)
		want   string
		text   string
	}{
		{"expired token", func() string { tok := h.token(time.Millisecond); time.Sleep(5 * time.Millisecond); return tok }, nil, hub.RejectTokenExpired, ""},
		{"unknown token", func() string { return "wgt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, nil, hub.RejectTokenUnknown, ""},
		{"malformed token", func() string { return "guess" }, nil, hub.RejectTokenUnknown, ""},
		{"wrong hub CA fingerprint", func() string { return h.token(time.Hour) }, func(o *tunnel.EnrollOptions) {
			o.HubCASHA256 = strings.Repeat("ab", 32)
		}, "", "certificate"},
		{"bad fingerprint", func() string { return h.token(time.Hour) }, func(o *tunnel.EnrollOptions) { o.HubCASHA256 = "xyz" }, "", "64 hex digits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := enrol(tc.token(), newKey(t), tc.mutate)
			if err == nil {
				t.Fatal("enrolment succeeded, want it refused")
			}
			if tc.want != "" && refusal(err) != tc.want {
				t.Errorf("error %v, want refusal %q", err, tc.want)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q, want it to mention %q", err, tc.text)
			}
		})
	}
}

func TestEnrolOverTCPWhenUDPIsBlocked(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	relay, err := nettest.NewUDPRelay(h.hubAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	relay.Block(true, true)
	proxy, err := nettest.NewConnectProxy()
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	o := enrolOpts(h, h.token(time.Hour))
	o.Key, o.Addr, o.TCPAddr, o.Transport = newKey(t), relay.Addr(), h.hubAddr(), tunnel.TransportAuto
	o.Proxy = &tunnel.Proxy{Addr: proxy.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tunnel.Enroll(ctx, o); err != nil {
		t.Fatalf("enrol with UDP blocked: %v", err)
	}
	if n, _, _ := proxy.Stats(); n == 0 {
		t.Error("enrolment did not go through the proxy")
	}
}

func TestRenewalKeepsTheTunnel(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(o *hub.Options) { o.CertLifetime = time.Hour })
	h.start()
	// A bundle certificate that is already due for renewal and expires
	// in 4 seconds.
	conf, site := h.credentials(4 * time.Second)
	oldSerial := conf.Certificates[0].Leaf.SerialNumber
	var mu sync.Mutex
	var saved []tls.Certificate
	c, reg := h.client(conf, func(o *tunnel.Options) {
		o.SaveCertificate = func(p tls.Certificate) error {
			mu.Lock()
			saved = append(saved, p)
			mu.Unlock()
			return nil
		}
	})
	waitFor(t, 10*time.Second, "the renewal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(saved) > 0
	})
	mu.Lock()
	renewed := saved[0]
	mu.Unlock()
	if renewed.Leaf.Subject.CommonName != site || renewed.Leaf.SerialNumber.Cmp(oldSerial) == 0 {
		t.Errorf("renewed certificate for %q serial %s, want a new one for %s", renewed.Leaf.Subject.CommonName, renewed.Leaf.SerialNumber, site)
	}
	if got := c.Certificate().Leaf.SerialNumber; got.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Errorf("client presents serial %s next, want the renewed %s", got, renewed.Leaf.SerialNumber)
	}
	// The old certificate expires; the connection it opened stays up.
	time.Sleep(time.Until(conf.Certificates[0].Leaf.NotAfter) + 2*time.Second)
	if c.Dials() != 1 || !c.Connected() {
		t.Errorf("after the old certificate expired: %d dials, connected %t; want the first connection still up", c.Dials(), c.Connected())
	}
	// The next connection presents the renewed certificate, which the
	// hub accepts where it would refuse the expired one.
	h.kill()
	h.start()
	waitFor(t, 10*time.Second, "the reconnect with the renewed certificate", func() bool { return c.Dials() == 2 && c.Connected() })
	if v := metricValue(t, reg, "wardgate_tunnel_certificate_renewals_total", "result", "renewed"); v != 1 {
		t.Errorf("renewals counted %v, want 1 (renewal must not repeat at once)", v)
	}
	rec, _ := h.server().Registry().Site(site)
	if len(rec.Certificates) != 2 {
		t.Errorf("registry lists %d certificates for the site, want 2", len(rec.Certificates))
	}
}
