package tunnel

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Renewal: a certificate is renewed once less than a third of its
// lifetime (at most 30 days) is left, over the open connection, with a
// new key. The new certificate is used from the next connection on; the
// hub counts the open connection as renewed, so nothing is dropped.
const (
	maxRenewBefore   = 30 * 24 * time.Hour
	renewRetryMin    = time.Minute
	renewRetryMax    = time.Hour
	minRenewInterval = time.Hour
)

// RenewTime returns when a certificate valid from notBefore to notAfter
// is due for renewal.
func RenewTime(notBefore, notAfter time.Time) time.Time {
	before := min(notAfter.Sub(notBefore)/3, maxRenewBefore)
	return notAfter.Add(-before)
}

// renewLoop renews the certificate when it is due, until ctx ends.
func (c *Client) renewLoop(ctx context.Context) {
	failures := 0
	var last time.Time
	for {
		cert := c.Certificate()
		if cert.Leaf == nil {
			if len(cert.Certificate) == 0 {
				return
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				return
			}
			cert.Leaf = leaf
		}
		due := RenewTime(cert.Leaf.NotBefore, cert.Leaf.NotAfter)
		if !last.IsZero() {
			due = maxTime(due, last.Add(c.renewInterval()))
		}
		if !sleep(ctx, time.Until(due)) {
			return
		}
		err := c.Renew(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures, last = 0, time.Now()
			continue
		}
		delay := fullJitter(renewRetryMin, renewRetryMax, failures)
		failures++
		c.log.Warn("certificate renewal failed; retrying", "err", err, "retry_in", delay.Round(time.Second), "expires", cert.Leaf.NotAfter)
		if !sleep(ctx, delay) {
			return
		}
	}
}

func (c *Client) renewInterval() time.Duration {
	if c.opts.RenewMinInterval > 0 {
		return c.opts.RenewMinInterval
	}
	return minRenewInterval
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Renew requests from the hub a new certificate for a new key over the open
// connection, saves it with SaveCertificate, and presents it from the
// next connection on.
func (c *Client) Renew(ctx context.Context) error {
	if c.opts.SaveCertificate == nil {
		return errors.New("renewal needs SaveCertificate")
	}
	err := c.renew(ctx)
	result := "renewed"
	if err != nil {
		result = "failed"
	}
	c.metrics.renewals.WithLabelValues(result).Inc()
	return err
}

func (c *Client) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the new key: %w", err)
	}
	old := c.Certificate()
	site := ""
	if leaf, err := x509.ParseCertificate(old.Certificate[0]); err == nil {
		site = leaf.Subject.CommonName
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: site}}, key)
	if err != nil {
		return fmt.Errorf("creating the signing request: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "https://wardhub/v1/renew", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// Each attempt issues a fresh certificate, so a repeat is harmless.
	var idem [8]byte
	_, _ = rand.Read(idem[:])
	req.Header.Set("Idempotency-Key", "renew-"+hex.EncodeToString(idem[:]))
	resp, err := c.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("asking the hub to renew: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if r := refusalFrom(resp); r != nil {
			return r
		}
		return fmt.Errorf("renewal: hub responded %s", resp.Status)
	}
	var out struct {
		Certificate string `json:"certificate"`
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrolResponse))
	if err != nil {
		return fmt.Errorf("reading the renewal response: %w", err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("decoding the renewal response: %w", err)
	}
	leaf, err := checkIssued(out.Certificate, key, c.opts.TLS.RootCAs, site)
	if err != nil {
		return err
	}
	pair := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	if err := c.opts.SaveCertificate(pair); err != nil {
		return fmt.Errorf("saving the renewed certificate: %w", err)
	}
	c.cert.Store(&pair)
	c.mu.Lock()
	c.renewedAt = time.Now()
	c.mu.Unlock()
	c.metrics.certExpiry.Set(float64(leaf.NotAfter.Unix()))
	c.log.Info("gateway certificate renewed", "site", site, "not_after", leaf.NotAfter)
	return nil
}
