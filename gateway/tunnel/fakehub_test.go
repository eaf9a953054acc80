package tunnel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/tunnel"
)

// fakeHub is an HTTP/3 server that responds to hello like the hub and then
// writes the given lines on the control stream: a hub that misbehaves.
type fakeHub struct {
	addr string
	ca   *pki.Authority
}

func newFakeHub(t *testing.T, lines []string) *fakeHub {
	t.Helper()
	ca, err := pki.NewAuthority("fake hub CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: "wardhub"}, DNSNames: []string{"wardhub"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"site":"site-fake"}`))
	})
	mux.HandleFunc("POST /v1/control", func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		w.WriteHeader(http.StatusOK)
		for _, l := range lines {
			_, _ = w.Write([]byte(l + "\n"))
			fl.Flush()
		}
		<-r.Context().Done()
	})
	mux.HandleFunc("POST /v1/telemetry", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"duplicate":false}`))
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		Handler: mux,
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{
			Certificates: []tls.Certificate{srvPair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(udp)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		udp.Close()
		<-done
	})
	return &fakeHub{addr: udp.LocalAddr().String(), ca: ca}
}

func (f *fakeHub) client(t *testing.T, onNotice func(tunnel.Notice)) (*tunnel.Client, *prometheus.Registry) {
	t.Helper()
	pair, err := hub.IssueGateway(f.ca, "site-fake", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := tunnel.New(tunnel.Options{
		Addr:       f.addr,
		TLS:        &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: f.ca.Pool(), ServerName: "wardhub"},
		Transport:  tunnel.TransportQUIC,
		OnNotice:   onNotice,
		Logger:     slog.New(slog.NewTextHandler(logTo(t), nil)),
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(context.Background())
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c, reg
}

// inspectionCert is the certificate a TLS-inspecting proxy shows for the
// hub: from its own CA, or, for a proxy that terminates TLS with a
// certificate the gateway trusts, from the hub CA.
func inspectionCert(t *testing.T, h *testHub, byHubCA bool) *tls.Certificate {
	t.Helper()
	var ca *pki.Authority
	var err error
	if byHubCA {
		ca, err = hub.GatewayCA(h.data)
	} else {
		ca, err = pki.NewAuthority("Hospital Inspection CA", time.Hour)
	}
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: "wardhub"}, DNSNames: []string{"wardhub"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}
