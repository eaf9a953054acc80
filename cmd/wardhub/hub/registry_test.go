package hub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenIsSingleUseAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	// Two registries on one folder stand for `wardhub serve` and another
	// hub process sharing the data folder.
	a, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	token, err := a.CreateToken(time.Hour, "ward 3")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, registryDir, "tokens", tokenID(token)+".json")); strings.Contains(string(data), token) {
		t.Fatal("token file holds the token itself")
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		reg := a
		if i%2 == 1 {
			reg = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = reg.consumeToken(token, "site-x", time.Now(), "key")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrTokenUsed):
			t.Errorf("losing use failed with %v, want ErrTokenUsed", err)
		}
	}
	if won != 1 {
		t.Errorf("%d uses of one token succeeded, want 1", won)
	}
}

func TestTokenRefusals(t *testing.T) {
	reg, err := OpenRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := reg.CreateToken(time.Millisecond, "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", expired, ErrTokenExpired},
		{"unknown", "wgt_" + strings.Repeat("A", 43), ErrTokenUnknown},
		{"not a token", "../../etc/passwd", ErrTokenUnknown},
		{"empty", "", ErrTokenUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := reg.consumeToken(tc.token, "site-x", time.Now(), "k"); !errors.Is(err, tc.want) {
				t.Errorf("consumeToken: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := reg.CreateToken(0, ""); err == nil {
		t.Error("CreateToken with no lifetime succeeded")
	}
}

func TestRevocationReachesARunningRegistry(t *testing.T) {
	dir := t.TempDir()
	running, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := NewSiteID()
	if err := cli.PutSite(Site{ID: id, EnrolledAt: time.Now(), Method: "bundle"}); err != nil {
		t.Fatal(err)
	}
	if s, ok := running.Site(id); !ok || s.Revoked() {
		t.Fatalf("running registry sees %+v (found %t), want the new active site", s, ok)
	}
	if _, err := cli.Revoke(id, "stolen"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := running.Reload(); err != nil {
			t.Fatal(err)
		}
		if s, _ := running.Site(id); s.Revoked() {
			if s.RevokeReason != "stolen" {
				t.Errorf("revoke reason %q, want %q", s.RevokeReason, "stolen")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("running registry never saw the revocation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := cli.Revoke("site-nope", ""); err == nil {
		t.Error("revoking a malformed site id succeeded")
	}
	if _, err := cli.Revoke("site-"+strings.Repeat("0", 32), ""); !errors.Is(err, ErrSiteUnknown) {
		t.Errorf("revoking an unknown site: %v, want ErrSiteUnknown", err)
	}
}

func FuzzParseSite(f *testing.F) {
	f.Add([]byte(`{"id":"site-0123456789abcdef0123456789abcdef","method":"token","revoked_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"id":"../x"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSite(data)
		if err == nil && !siteIDPattern.MatchString(s.ID) {
			t.Fatalf("accepted site with id %q", s.ID)
		}
	})
}

func csrPEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestParseCSR(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := csrPEM(t, p256)
	block, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"p256", good, ""},
		{"p224", csrPEM(t, p224), "curve"},
		{"rsa", csrPEM(t, rsaKey), "not supported"},
		{"tampered", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})), "csr"},
		{"certificate instead", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})), "CERTIFICATE REQUEST"},
		{"empty", "", "CERTIFICATE REQUEST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSR(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCSR error = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(csrPEM(f, key))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Fuzz(func(t *testing.T, in string) {
		csr, err := ParseCSR(in)
		if err != nil {
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
	})
}

func TestTrackerSupersedesOnlyActiveSites(t *testing.T) {
	tr := newConnTracker()
	closed := map[uint64]string{}
	mk := func(site string) *trackedConn {
		c := &trackedConn{site: site, transport: TransportQUIC}
		c.close = func(code, _ string) { closed[c.id] = code }
		return c
	}
	first := mk("site-a")
	if got := tr.add(first, true); len(got) != 0 {
		t.Fatalf("first connection superseded %d", len(got))
	}
	refused := mk("site-a")
	if got := tr.add(refused, false); len(got) != 0 {
		t.Errorf("a refused connection superseded %d connections, want none", len(got))
	}
	second := mk("site-a")
	got := tr.add(second, true)
	if len(got) != 2 {
		t.Fatalf("new active connection superseded %d, want both older ones", len(got))
	}
	enrol1, enrol2 := mk(""), mk("")
	tr.add(enrol1, false)
	if got := tr.add(enrol2, false); len(got) != 0 {
		t.Errorf("enrolment connections superseded each other")
	}
	var st Stats
	tr.fill(&st)
	if st.MaxOpenBySite["site-a"] != 3 || st.OpenBySite["site-a"] != 1 || st.Superseded != 2 {
		t.Errorf("stats max %d open %d superseded %d, want 3, 1 and 2", st.MaxOpenBySite["site-a"], st.OpenBySite["site-a"], st.Superseded)
	}
}
