package tunnel

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxEnrolResponse bounds the hub's response to enrolment or renewal.
const maxEnrolResponse = 1 << 20

// EnrollOptions configures Enroll.
type EnrollOptions struct {
	// Addr, TCPAddr, ServerName, Transport and Proxy are as in Options.
	Addr, TCPAddr, ServerName, Transport string
	Proxy                                *Proxy
	// Token is the one-time enrolment token from `wardhub token create`.
	Token string
	// Key is the gateway's new private key; it never leaves the gateway.
	Key crypto.Signer
	// HubCA trusts the hub by its CA certificates. HubCASHA256 instead
	// pins the CA by the SHA-256 of its DER encoding, in hex; the hub
	// sends the CA in its chain. One of the two is required.
	HubCA       *x509.CertPool
	HubCASHA256 string
	Logger      *slog.Logger
}

// Enrolment is the hub's issue to one gateway: the site, its
// certificate, and the trust anchors the gateway stores.
type Enrolment struct {
	SiteID string
	// Certificate holds the issued certificate with Key.
	Certificate tls.Certificate
	// HubCA, DeviceCA are PEM; TUFRoot is root.json as the hub has it.
	HubCA, DeviceCA, TUFRoot []byte
}

type enrolRequest struct {
	Token string `json:"token"`
	CSR   string `json:"csr"`
}

type enrolResponse struct {
	SiteID      string    `json:"site_id"`
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
	HubCA       string    `json:"hub_ca"`
	DeviceCA    string    `json:"device_ca"`
	TUFRoot     []byte    `json:"tuf_root"`
}

// Enroll sends a signing request for opts.Key with the one-time token to
// the hub, over the tunnel's transports but with server-only TLS, and
// returns the issued certificate after checking it.
func Enroll(ctx context.Context, opts EnrollOptions) (*Enrolment, error) {
	if opts.Token == "" {
		return nil, errors.New("enrolment needs a token: create one with `wardhub token create`")
	}
	if opts.Key == nil {
		return nil, errors.New("enrolment needs the gateway's new key")
	}
	if opts.HubCA == nil && opts.HubCASHA256 == "" {
		return nil, errors.New("enrolment needs the hub CA: give its PEM file or its SHA-256 fingerprint")
	}
	pin, err := parsePin(opts.HubCASHA256)
	if err != nil {
		return nil, err
	}
	if opts.ServerName == "" {
		opts.ServerName = "wardhub"
	}
	tlsConf := &tls.Config{ServerName: opts.ServerName, RootCAs: opts.HubCA, Certificates: []tls.Certificate{{}}}
	if pin != nil {
		tlsConf.InsecureSkipVerify = true // VerifyConnection does the full check against the pinned CA.
		tlsConf.VerifyConnection = pinnedVerifier(pin, opts.ServerName)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c, err := New(Options{
		Addr: opts.Addr, TCPAddr: opts.TCPAddr, TLS: tlsConf, Transport: opts.Transport, Proxy: opts.Proxy,
		Logger: log, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "wardgate"}}, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("creating the signing request: %w", err)
	}
	body, _ := json.Marshal(enrolRequest{Token: opts.Token, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	var resp enrolResponse
	// The hub responds to a repeat of the same token and key with the
	// same site, so a lost response is safe to request again.
	var lastErr error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if lastErr = c.enrolOnce(ctx, body, &resp); lastErr == nil {
			break
		}
		var refused *RefusedError
		var insp *InspectionError
		var cve *tls.CertificateVerificationError
		if errors.As(lastErr, &refused) || errors.As(lastErr, &insp) {
			return nil, lastErr
		}
		if errors.As(lastErr, &cve) {
			return nil, fmt.Errorf("the hub's certificate is not from the hub CA given (check the CA file or the fingerprint from `wardhub token create`): %w", lastErr)
		}
		log.Warn("enrolment attempt failed", "attempt", attempt+1, "err", lastErr)
		sleep(ctx, time.Second)
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return checkEnrolment(&resp, opts.Key, opts.HubCA, pin)
}

// enrolOnce dials, posts the request, and closes the connection.
func (c *Client) enrolOnce(ctx context.Context, body []byte, out *enrolResponse) error {
	var l link
	var err error
	for _, t := range c.transportOrder() {
		l, _, err = c.dial(ctx, t)
		if err == nil {
			break
		}
		if !(t == TransportQUIC && c.opts.Transport == TransportAuto && pathFailure(err)) {
			return err
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		l.Close("enrolment done")
		<-l.Done()
	}()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "https://wardhub/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("sending the enrolment request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if r := refusalFrom(resp); r != nil {
			return r
		}
		return fmt.Errorf("enrolment: %s response without a hub refusal code: a proxy or another server responded instead of the hub", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrolResponse+1))
	if err != nil {
		return fmt.Errorf("reading the enrolment response: %w", err)
	}
	return parseEnrolResponse(data, out)
}

// parseEnrolResponse decodes the hub's enrolment response.
func parseEnrolResponse(data []byte, out *enrolResponse) error {
	if len(data) > maxEnrolResponse {
		return errors.New("enrolment response is larger than 1 MiB")
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the enrolment response: %w", err)
	}
	if out.SiteID == "" || out.Certificate == "" || out.HubCA == "" || out.DeviceCA == "" || len(out.TUFRoot) == 0 {
		return errors.New("enrolment response lacks the site id, certificate, CAs or TUF root")
	}
	return nil
}

// checkEnrolment verifies what the hub issued: the certificate is for
// our key and the site, from the hub CA we trust, and the CA the response
// names is that one.
func checkEnrolment(r *enrolResponse, key crypto.Signer, pool *x509.CertPool, pin []byte) (*Enrolment, error) {
	caCerts, err := parseCerts([]byte(r.HubCA))
	if err != nil {
		return nil, fmt.Errorf("hub CA in the enrolment response: %w", err)
	}
	if pin != nil {
		sum := sha256.Sum256(caCerts[0].Raw)
		if !bytes.Equal(sum[:], pin) {
			return nil, errors.New("the hub CA in the enrolment response does not match the pinned fingerprint")
		}
		pool = x509.NewCertPool()
		pool.AddCert(caCerts[0])
	}
	if _, err := parseCerts([]byte(r.DeviceCA)); err != nil {
		return nil, fmt.Errorf("device CA in the enrolment response: %w", err)
	}
	if !json.Valid(r.TUFRoot) {
		return nil, errors.New("TUF root in the enrolment response is not JSON")
	}
	leaf, err := checkIssued(r.Certificate, key, pool, r.SiteID)
	if err != nil {
		return nil, err
	}
	return &Enrolment{
		SiteID:      r.SiteID,
		Certificate: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
		HubCA:       []byte(r.HubCA),
		DeviceCA:    []byte(r.DeviceCA),
		TUFRoot:     r.TUFRoot,
	}, nil
}

// checkIssued parses an issued certificate and checks that it carries
// key, names site (when given) and chains to pool for client auth.
func checkIssued(pemCert string, key crypto.Signer, pool *x509.CertPool, site string) (*x509.Certificate, error) {
	certs, err := parseCerts([]byte(pemCert))
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	leaf := certs[0]
	if key == nil || pool == nil {
		return nil, errors.New("checking the issued certificate needs the gateway's key and the hub CA")
	}
	want, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, want) {
		return nil, errors.New("the issued certificate is not for the gateway's key")
	}
	if site != "" && leaf.Subject.CommonName != site {
		return nil, fmt.Errorf("the issued certificate names %q, not site %q", leaf.Subject.CommonName, site)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the issued certificate does not chain to the hub CA: %w", err)
	}
	return leaf, nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// parsePin reads a SHA-256 fingerprint in hex, with or without colons.
func parsePin(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s, "sha256:"), ":", ""))
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("hub CA fingerprint %q is not 64 hex digits: copy it from `wardhub token create`", s)
	}
	return b, nil
}

// pinnedVerifier checks the hub's chain against the one CA in it whose
// fingerprint is pin.
func pinnedVerifier(pin []byte, serverName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("hub presented no certificate")
		}
		var ca *x509.Certificate
		for _, c := range cs.PeerCertificates[1:] {
			sum := sha256.Sum256(c.Raw)
			if bytes.Equal(sum[:], pin) {
				ca = c
			}
		}
		leaf := cs.PeerCertificates[0]
		if ca == nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates,
				Err: x509.UnknownAuthorityError{Cert: leaf}}
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: serverName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
}
