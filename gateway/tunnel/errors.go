package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/quic-go/quic-go"
)

// Wire names the hub uses for refusals; see cmd/wardhub/hub.
const (
	rejectHeader       = "Wardhub-Reject"
	rejectNoClientCert = "no_client_certificate"
	// errorCodeRefused is the QUIC application error code of a hub that
	// closes the connection of a site it no longer serves.
	errorCodeRefused quic.ApplicationErrorCode = 0x5741
	maxRejectBody                              = 8 << 10
)

// DialError is a failed attempt to open a connection.
type DialError struct {
	Transport string
	Addr      string
	// Via is the proxy's address, or "".
	Via string
	Err error
}

func (e *DialError) Error() string {
	via := ""
	if e.Via != "" {
		via = " through proxy " + e.Via
	}
	return fmt.Sprintf("dialing hub %s over %s%s: %v", e.Addr, e.Transport, via, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// RefusedError is the hub's refusal of this gateway: revoked, expired,
// unknown, or a refusal code from enrolment. Retrying does not help until
// someone acts on Detail.
type RefusedError struct {
	// Code is the hub's refusal code, such as "revoked".
	Code   string `json:"reject"`
	Site   string `json:"site,omitempty"`
	Detail string `json:"detail"`
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the hub refuses this gateway (%s): %s", e.Code, e.Detail)
}

// InspectionError reports that TLS inspection on the path breaks the
// tunnel's mutual TLS.
type InspectionError struct {
	// Kind is "foreign_certificate" (the far end presented a certificate
	// that is not from the hub CA) or "client_certificate_stripped" (the
	// hub received no client certificate).
	Kind string
	// Addr is the hub address dialled; Via the proxy's address or "".
	Addr, Via string
	// Subject and Issuer describe the foreign certificate.
	Subject, Issuer string
	Err             error
}

func (e *InspectionError) Error() string {
	where := "a TLS-inspecting firewall on the path"
	if e.Via != "" {
		where = "the proxy " + e.Via
	}
	switch e.Kind {
	case "foreign_certificate":
		return fmt.Sprintf("TLS inspection detected: the certificate presented for the hub at %s (subject %q) was issued by %q, not by the hub CA; %s is intercepting TLS, which breaks the gateway's mutual TLS. Exempt %s from TLS inspection", e.Addr, e.Subject, e.Issuer, where, e.Addr)
	default:
		return fmt.Sprintf("TLS inspection detected: the hub received no client certificate from this gateway; %s terminates TLS and does not pass the gateway's certificate on. Exempt %s from TLS inspection", where, e.Addr)
	}
}

func (e *InspectionError) Unwrap() error { return e.Err }

// inspectionFrom recognises a handshake that failed because the far end
// showed a certificate outside the hub CA, which on the TCP path means
// something on the way re-signs TLS.
func inspectionFrom(err error, serverName, addr, via string) *InspectionError {
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return nil
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if !errors.As(cve.Err, &ua) && !errors.As(cve.Err, &hn) {
		return nil
	}
	leaf := cve.UnverifiedCertificates[0]
	return &InspectionError{Kind: "foreign_certificate", Addr: addr, Via: via, Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), Err: err}
}

// refusalFrom reads a hub refusal from a non-200 response. It returns
// nil when the response does not carry the hub's refusal header, which
// means something other than the hub responded.
func refusalFrom(resp *http.Response) *RefusedError {
	code := resp.Header.Get(rejectHeader)
	if code == "" {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRejectBody))
	return parseRefusal(code, body)
}

// parseRefusal decodes a refusal body; a body that does not decode still
// yields the code from the header.
func parseRefusal(code string, body []byte) *RefusedError {
	r := &RefusedError{}
	if err := json.Unmarshal(body, r); err != nil || r.Code == "" {
		r = &RefusedError{Detail: "the hub sent no detail"}
	}
	r.Code = sanitize(code, 64)
	r.Site = sanitize(r.Site, 64)
	r.Detail = sanitize(r.Detail, 1024)
	return r
}

// refusalFromClose reads the refusal from a QUIC close by the hub.
func refusalFromClose(err error) *RefusedError {
	var app *quic.ApplicationError
	if !errors.As(err, &app) || !app.Remote || app.ErrorCode != errorCodeRefused {
		return nil
	}
	code, detail, _ := strings.Cut(app.ErrorMessage, ": ")
	if code == "superseded" {
		return nil
	}
	return &RefusedError{Code: sanitize(code, 64), Detail: sanitize(detail, 1024)}
}

// sanitize keeps a peer's text printable and bounded before it reaches
// logs and metrics.
func sanitize(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// pathFailure reports whether a QUIC dial failed for want of a working
// UDP path (no response, unreachable), as opposed to a response from the
// hub. Only a path failure sends the tunnel to TCP.
func pathFailure(err error) bool {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	var te *quic.TransportError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return false
	case errors.As(err, &idle), errors.As(err, &hs):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &oe), errors.As(err, &ne):
		return true
	}
	return false
}

// causeOf names an error's kind for the reconnect metric's label.
func causeOf(err error) string {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	var reset *quic.StatelessResetError
	var app *quic.ApplicationError
	var transport *quic.TransportError
	var refused *RefusedError
	var insp *InspectionError
	var pe *ProxyError
	var netErr net.Error
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &insp):
		return "tls_inspection"
	case errors.As(err, &refused):
		return "refused"
	case errors.As(err, &pe):
		return "proxy_refused"
	case errors.As(err, &idle):
		return "idle_timeout"
	case errors.As(err, &hs):
		return "handshake_timeout"
	case errors.As(err, &reset):
		return "stateless_reset"
	case errors.As(err, &app):
		if refusalFromClose(err) != nil {
			return "refused"
		}
		return "closed_by_peer"
	case errors.As(err, &transport):
		if transport.ErrorCode.IsCryptoError() {
			return "tls"
		}
		return "transport"
	case errors.Is(err, errSwitchToQUIC):
		return "moved_to_quic"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed_by_peer"
	case errors.As(err, &netErr):
		return "network"
	default:
		return "other"
	}
}
