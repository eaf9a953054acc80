package hub

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/gateway/pki"
)

// DefaultCertLifetime is the lifetime of a gateway certificate. Gateways
// renew after two thirds of it.
const DefaultCertLifetime = 90 * 24 * time.Hour

// maxEnrolBody bounds an enrolment or renewal request.
const maxEnrolBody = 64 << 10

// EnrolRequest is the body of POST /v1/enroll. The gateway made the key;
// the hub sees only the signing request.
type EnrolRequest struct {
	Token string `json:"token"`
	// CSR is a PEM "CERTIFICATE REQUEST" signed by the gateway's new key.
	CSR string `json:"csr"`
}

// EnrolResponse is the response to a successful enrolment: everything the
// gateway stores besides its own key.
type EnrolResponse struct {
	SiteID string `json:"site_id"`
	// Certificate is the issued certificate as PEM.
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
	// HubCA is the CA of the hub's server certificate and of gateway
	// certificates, as PEM.
	HubCA string `json:"hub_ca"`
	// DeviceCA is the manufacturer's device CA, as PEM.
	DeviceCA string `json:"device_ca"`
	// TUFRoot is the repository's current root.json, verbatim: the
	// gateway's trust anchor for updates.
	TUFRoot []byte `json:"tuf_root"`
}

// RenewRequest is the body of POST /v1/renew, sent over a connection
// authenticated with the site's current certificate.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse carries the renewed certificate.
type RenewResponse struct {
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
}

// ParseCSR decodes and checks a PEM certificate signing request: its
// signature must verify and its key must be ECDSA P-256/P-384 or Ed25519.
func ParseCSR(pemData string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(pemData))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr is not a PEM \"CERTIFICATE REQUEST\" block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature does not verify: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("csr key uses an unsupported curve: use P-256 or P-384")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("csr key type %T is not supported: use ECDSA P-256", csr.PublicKey)
	}
	return csr, nil
}

func keyHash(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxEnrolBody+1))
	if err != nil {
		return fmt.Errorf("reading request: %w", err)
	}
	if len(data) > maxEnrolBody {
		return fmt.Errorf("request is larger than %d bytes", maxEnrolBody)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding request: %w", err)
	}
	return nil
}

// serveEnrol turns a token and a signing request into a site and its
// certificate. A gateway that lost the response may send the same token
// with the same key again and gets the same site back; any other reuse of
// a token is refused.
func (s *Server) serveEnrol(w http.ResponseWriter, r *http.Request) {
	var req EnrolRequest
	if err := decodeJSON(r, &req); err != nil {
		writeReject(w, errorReject(err))
		return
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		writeReject(w, errorReject(err))
		return
	}
	resp, err := s.enrol(req.Token, csr, time.Now().UTC())
	if err != nil {
		rej := errorReject(err)
		s.metrics.enrolments.WithLabelValues(rej.Code).Inc()
		s.log.Warn("enrolment refused", "reason", rej.Code, "remote", r.RemoteAddr)
		writeReject(w, rej)
		return
	}
	s.metrics.enrolments.WithLabelValues("enrolled").Inc()
	s.log.Info("gateway enrolled", "site", resp.SiteID, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) enrol(token string, csr *x509.CertificateRequest, now time.Time) (*EnrolResponse, error) {
	s.enrolMu.Lock()
	defer s.enrolMu.Unlock()
	kh := keyHash(csr.PublicKey)
	siteID, err := NewSiteID()
	if err != nil {
		return nil, err
	}
	rec, err := s.registry.consumeToken(token, siteID, now, kh)
	var site Site
	switch {
	case errors.Is(err, ErrTokenUsed) && rec.UsedKey == kh && now.Before(rec.ExpiresAt):
		// The same gateway again, with the same key: repeat the response.
		existing, ok := s.registry.Site(rec.UsedBy)
		switch {
		case !ok:
			// The first attempt consumed the token but stopped before
			// the site was written.
			site = Site{ID: rec.UsedBy, EnrolledAt: now, Method: "token", Token: rec.ID, Note: rec.Note}
		case existing.Revoked():
			return nil, ErrTokenUsed
		default:
			site = existing
		}
	case err != nil:
		return nil, err
	default:
		site = Site{ID: siteID, EnrolledAt: now, Method: "token", Token: rec.ID, Note: rec.Note}
	}
	cert, err := s.issueFor(site.ID, csr.PublicKey)
	if err != nil {
		return nil, err
	}
	site.Certificates = append(site.Certificates, IssuedCert{Serial: cert.SerialNumber.Text(16), IssuedAt: now, NotAfter: cert.NotAfter})
	if err := s.registry.PutSite(site); err != nil {
		return nil, err
	}
	root, err := os.ReadFile(filepath.Join(s.opts.RepoDir, "metadata", "root.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the repository root: %w", err)
	}
	deviceCA, err := DeviceCA(s.opts.DataDir)
	if err != nil {
		return nil, err
	}
	return &EnrolResponse{
		SiteID:      site.ID,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		NotAfter:    cert.NotAfter,
		HubCA:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.gwCA.Cert.Raw})),
		DeviceCA:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: deviceCA.Cert.Raw})),
		TUFRoot:     root,
	}, nil
}

// serveRenew issues a new certificate to a site over a connection that
// its current, still valid certificate authenticated.
func (s *Server) serveRenew(w http.ResponseWriter, r *http.Request) {
	site := siteOf(r)
	var req RenewRequest
	if err := decodeJSON(r, &req); err != nil {
		writeReject(w, errorReject(err))
		return
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		writeReject(w, errorReject(err))
		return
	}
	cert, err := s.issueFor(site, csr.PublicKey)
	if err != nil {
		http.Error(w, "issuing certificate failed", http.StatusInternalServerError)
		return
	}
	if err := s.registry.addCertificate(site, IssuedCert{Serial: cert.SerialNumber.Text(16), IssuedAt: time.Now().UTC(), NotAfter: cert.NotAfter}); err != nil {
		http.Error(w, "recording certificate failed", http.StatusInternalServerError)
		return
	}
	if key := r.Context().Value(connKey{}); key != nil {
		s.conns.renewed(key, cert)
	}
	s.metrics.renewals.Inc()
	s.log.Info("gateway certificate renewed", "site", site, "not_after", cert.NotAfter)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(RenewResponse{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		NotAfter:    cert.NotAfter,
	})
}

func (s *Server) issueFor(site string, pub crypto.PublicKey) (*x509.Certificate, error) {
	return s.gwCA.Issue(pub, pki.Template{
		Subject:  pkix.Name{CommonName: site, Organization: []string{"Wardgate site"}},
		Lifetime: s.certLifetime(),
		Client:   true,
	})
}

func (s *Server) certLifetime() time.Duration {
	if s.opts.CertLifetime > 0 {
		return s.opts.CertLifetime
	}
	return DefaultCertLifetime
}

// Enroll issues a new site's credentials bundle into outDir: the
// gateway's client certificate and key bound to a random site id, the
// hub CA, the device CA, and the repository's current root as the
// gateway's TUF trust anchor. It records the site in the registry and
// returns the site id. Token enrolment, where the key never leaves the
// gateway, is preferred; bundles serve demos and tests.
func Enroll(dataDir, repoDir, outDir string, lifetime time.Duration) (string, error) {
	ca, err := pki.LoadOrCreateAuthority(filepath.Join(dataDir, "ca"), "gateway-ca", "Wardgate gateway CA")
	if err != nil {
		return "", err
	}
	deviceCA, err := DeviceCA(dataDir)
	if err != nil {
		return "", err
	}
	reg, err := OpenRegistry(dataDir)
	if err != nil {
		return "", err
	}
	siteID, err := NewSiteID()
	if err != nil {
		return "", err
	}
	pair, err := IssueGateway(ca, siteID, lifetime)
	if err != nil {
		return "", err
	}
	root, err := os.ReadFile(filepath.Join(repoDir, "metadata", "root.json"))
	if err != nil {
		return "", fmt.Errorf("reading the repository root (run `wardhub repo init` first?): %w", err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", err
	}
	if err := pki.WritePair(filepath.Join(outDir, "gateway.pem"), filepath.Join(outDir, "gateway.key"), pair); err != nil {
		return "", err
	}
	if err := pki.WriteCert(filepath.Join(outDir, "hub-ca.pem"), ca.Cert); err != nil {
		return "", err
	}
	if err := pki.WriteCert(filepath.Join(outDir, "device-ca.pem"), deviceCA.Cert); err != nil {
		return "", err
	}
	for name, content := range map[string][]byte{"root.json": root, "site-id": []byte(siteID + "\n")} {
		if err := os.WriteFile(filepath.Join(outDir, name), content, 0o600); err != nil {
			return "", err
		}
	}
	now := time.Now().UTC()
	if err := reg.PutSite(Site{ID: siteID, EnrolledAt: now, Method: "bundle", Certificates: []IssuedCert{{
		Serial: pair.Leaf.SerialNumber.Text(16), IssuedAt: now, NotAfter: pair.Leaf.NotAfter,
	}}}); err != nil {
		return "", err
	}
	return siteID, nil
}

// DeviceCA loads or creates the manufacturer's device CA, which signs
// device client certificates.
func DeviceCA(dataDir string) (*pki.Authority, error) {
	return pki.LoadOrCreateAuthority(filepath.Join(dataDir, "ca"), "device-ca", "Wardgate device CA")
}

// GatewayCA loads or creates the CA that signs gateway certificates and
// the hub's server certificate.
func GatewayCA(dataDir string) (*pki.Authority, error) {
	return pki.LoadOrCreateAuthority(filepath.Join(dataDir, "ca"), "gateway-ca", "Wardgate gateway CA")
}

// CAFingerprint is the SHA-256 of a CA certificate's DER encoding, in
// hex: the value `wardgate enroll -hub-ca-sha256` pins.
func CAFingerprint(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.Raw)
	return hex.EncodeToString(sum[:])
}
