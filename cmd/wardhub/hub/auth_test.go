package hub

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/pki"
)

func testServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	ca, err := GatewayCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{opts: Options{DataDir: dir, RepoDir: dir}, gwCA: ca, registry: reg, metrics: newMetrics(prometheus.NewRegistry()), conns: newConnTracker()}
}

func TestCertificateChecks(t *testing.T) {
	s := testServer(t)
	enrolled, _ := NewSiteID()
	revoked, _ := NewSiteID()
	for _, id := range []string{enrolled, revoked} {
		if err := s.registry.PutSite(Site{ID: id, EnrolledAt: time.Now(), Method: "token"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.registry.Revoke(revoked, "lost"); err != nil {
		t.Fatal(err)
	}
	rogue, err := pki.NewAuthority("rogue", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := NewSiteID()
	issue := func(ca *pki.Authority, site string, life time.Duration, client bool) *x509.Certificate {
		pair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: site}, Lifetime: life, Client: client, Server: !client})
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	tests := []struct {
		name      string
		cert      *x509.Certificate
		wantTLS   bool // handshake refused outright
		wantCode  string
		checkTime time.Time
	}{
		{"good", issue(s.gwCA, enrolled, time.Hour, true), false, "", time.Now()},
		{"revoked", issue(s.gwCA, revoked, time.Hour, true), false, RejectRevoked, time.Now()},
		{"expired", issue(s.gwCA, enrolled, -time.Minute, true), false, RejectExpired, time.Now()},
		{"not yet valid", issue(s.gwCA, enrolled, time.Hour, true), false, RejectNotYetValid, time.Now().Add(-time.Hour)},
		{"unknown site", issue(s.gwCA, unknown, time.Hour, true), false, RejectUnknownSite, time.Now()},
		{"other CA", issue(rogue, enrolled, time.Hour, true), true, "", time.Now()},
		{"server certificate", issue(s.gwCA, enrolled, time.Hour, false), true, "", time.Now()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.verifyClientCert([][]byte{tc.cert.Raw}, nil)
			if (err != nil) != tc.wantTLS {
				t.Fatalf("verifyClientCert: %v, want refused %t", err, tc.wantTLS)
			}
			if tc.wantTLS {
				return
			}
			_, rej := s.checkCert(tc.cert, tc.checkTime)
			got := ""
			if rej != nil {
				got = rej.Code
			}
			if got != tc.wantCode {
				t.Errorf("checkCert refusal %q, want %q", got, tc.wantCode)
			}
		})
	}
	if err := s.verifyClientCert(nil, nil); err != nil {
		t.Errorf("no certificate at all was refused at TLS (%v); want it to reach enrolment", err)
	}
}

func TestGuardNamesTheReason(t *testing.T) {
	s := testServer(t)
	h := s.guard(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/v1/hello", nil))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get(RejectHeader) != RejectNoClientCert {
		t.Errorf("request without a certificate: %d %q, want 401 %q", rec.Code, rec.Header().Get(RejectHeader), RejectNoClientCert)
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("TLS-inspecting proxy")) {
		t.Errorf("refusal body %q does not name the likely cause", rec.Body.String())
	}
	site, _ := NewSiteID()
	_ = s.registry.PutSite(Site{ID: site, EnrolledAt: time.Now()})
	pair, _ := IssueGateway(s.gwCA, site, time.Hour)
	req := httptest.NewRequest(http.MethodGet, "/v1/hello", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{pair.Leaf}}
	rec = httptest.NewRecorder()
	h(rec, req)
	if rec.Code != http.StatusTeapot {
		t.Errorf("enrolled site got %d, want the handler's answer", rec.Code)
	}
}

func TestTargetsServeRangesInLargeWrites(t *testing.T) {
	s := testServer(t)
	data := make([]byte, 1<<20+7)
	_, _ = rand.Read(data)
	name := filepath.Join(s.opts.RepoDir, "t.bin")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, rng  string
		wantStatus int
		want       []byte
	}{
		{"whole", "", http.StatusOK, data},
		{"range", "bytes=1000-299999", http.StatusPartialContent, data[1000:300000]},
		{"suffix", "bytes=-7", http.StatusPartialContent, data[len(data)-7:]},
		{"past the end", "bytes=99999999-", http.StatusRequestedRangeNotSatisfiable, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/tuf/targets/t.bin", nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			rec := httptest.NewRecorder()
			s.serveFile(rec, req, name)
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Errorf("body of %d bytes differs from the %d bytes wanted", len(body), len(tc.want))
			}
		})
	}
}
