package hub

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// RejectHeader carries the code of a refusal, so that a gateway can tell
// the hub's refusal from a proxy's error page.
const RejectHeader = "Wardhub-Reject"

// Refusal codes, sent in RejectHeader and in the body's "reject" field.
const (
	RejectNoClientCert  = "no_client_certificate"
	RejectUnknownSite   = "unknown_site"
	RejectRevoked       = "revoked"
	RejectExpired       = "certificate_expired"
	RejectNotYetValid   = "certificate_not_yet_valid"
	RejectTokenUnknown  = "token_unknown"
	RejectTokenUsed     = "token_used"
	RejectTokenExpired  = "token_expired"
	RejectBadEnrolment  = "bad_enrolment_request"
	RejectEnrolDisabled = "enrolment_unavailable"
)

// Reject is the body of every refusal: a code a program can act on and a
// detail a person can.
type Reject struct {
	Code   string `json:"reject"`
	Site   string `json:"site,omitempty"`
	Detail string `json:"detail"`
	status int
}

func (r *Reject) Error() string { return r.Code + ": " + r.Detail }

func writeReject(w http.ResponseWriter, rej *Reject) {
	w.Header().Set(RejectHeader, rej.Code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rej.status)
	_ = json.NewEncoder(w).Encode(rej)
}

// verifyClientCert checks that a presented client certificate chains to
// the gateway CA. It checks the chain at a time inside the certificate's
// validity, so that an expired or not-yet-valid certificate of a real
// site completes the handshake and gets a refusal that names the reason
// instead of a bare TLS alert. No certificate at all passes too: only
// enrolment serves such a connection, and every other route rejects it
// with a reason.
func (s *Server) verifyClientCert(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return nil
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parsing client certificate: %w", err)
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	at := time.Now()
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.gwCA.Pool(),
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("client certificate is not from the gateway CA: %w", err)
	}
	return nil
}

// authorize decides whether the gateway behind r may use the hub now.
func (s *Server) authorize(r *http.Request) (string, *Reject) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", &Reject{Code: RejectNoClientCert, status: http.StatusUnauthorized,
			Detail: "the hub received no client certificate on this connection; if the gateway sent one, a TLS-inspecting proxy between gateway and hub is terminating TLS: exempt the hub's address from TLS inspection"}
	}
	cert := r.TLS.PeerCertificates[0]
	return s.checkCert(cert, time.Now())
}

// checkCert applies the registry and the clock to a verified client
// certificate.
func (s *Server) checkCert(cert *x509.Certificate, now time.Time) (string, *Reject) {
	site := cert.Subject.CommonName
	rec, ok := s.registry.Site(site)
	switch {
	case !ok:
		return site, &Reject{Code: RejectUnknownSite, Site: site, status: http.StatusForbidden,
			Detail: fmt.Sprintf("site %q is not enrolled with this hub: enrol the gateway with a token from `wardhub token create`", site)}
	case rec.Revoked():
		why := ""
		if rec.RevokeReason != "" {
			why = " (" + rec.RevokeReason + ")"
		}
		return site, &Reject{Code: RejectRevoked, Site: site, status: http.StatusForbidden,
			Detail: fmt.Sprintf("site %s was revoked at %s%s: enrol the gateway again with a new token to restore it", site, rec.RevokedAt.Format(time.RFC3339), why)}
	case now.After(cert.NotAfter):
		return site, &Reject{Code: RejectExpired, Site: site, status: http.StatusForbidden,
			Detail: fmt.Sprintf("the certificate of site %s expired at %s: enrol the gateway again with a new token", site, cert.NotAfter.UTC().Format(time.RFC3339))}
	case now.Before(cert.NotBefore):
		return site, &Reject{Code: RejectNotYetValid, Site: site, status: http.StatusForbidden,
			Detail: fmt.Sprintf("the certificate of site %s is valid only from %s: the gateway's or the hub's clock is wrong", site, cert.NotBefore.UTC().Format(time.RFC3339))}
	}
	return site, nil
}

// guard serves h only to an enrolled, unrevoked site with a valid
// certificate, and refuses everyone else with a reason.
func (s *Server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, rej := s.authorize(r)
		if rej != nil {
			s.metrics.rejects.WithLabelValues(rej.Code).Inc()
			writeReject(w, rej)
			return
		}
		h(w, r)
	}
}

// errorReject turns an enrolment error into the refusal sent to the gateway.
func errorReject(err error) *Reject {
	switch {
	case errors.Is(err, ErrTokenUnknown):
		return &Reject{Code: RejectTokenUnknown, status: http.StatusForbidden, Detail: "the enrolment token is not known to this hub: check it, or create one with `wardhub token create`"}
	case errors.Is(err, ErrTokenUsed):
		return &Reject{Code: RejectTokenUsed, status: http.StatusForbidden, Detail: "the enrolment token was already used: each token enrols one gateway; create another with `wardhub token create`"}
	case errors.Is(err, ErrTokenExpired):
		return &Reject{Code: RejectTokenExpired, status: http.StatusForbidden, Detail: "the enrolment token has expired: create another with `wardhub token create`"}
	}
	return &Reject{Code: RejectBadEnrolment, status: http.StatusBadRequest, Detail: err.Error()}
}
