package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/pki"
)

// DeviceAPICA returns the path of the CA that signs the gateway's device
// API certificate; devices are given it to verify the gateway.
func DeviceAPICA(dataDir string) string { return filepath.Join(dataDir, "tls", "device-api-ca.pem") }

// EnsureDeviceAPICert creates the device API CA and server certificate in
// DATA/tls unless a valid one is there.
func EnsureDeviceAPICert(cfg config.Config) (tls.Certificate, error) {
	dir := filepath.Join(cfg.DataDir, "tls")
	ca, err := pki.LoadOrCreateAuthority(dir, "device-api-ca", "Wardgate device API CA")
	if err != nil {
		return tls.Certificate{}, err
	}
	certFile, keyFile := filepath.Join(dir, "device-api.pem"), filepath.Join(dir, "device-api.key")
	if pair, err := pki.LoadPair(certFile, keyFile); err == nil && time.Until(pair.Leaf.NotAfter) > 30*24*time.Hour {
		return pair, nil
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, l := range cfg.DeviceAPI.Listen {
		host, _, _ := net.SplitHostPort(l)
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	pair, err := ca.IssuePair(pki.Template{
		Subject:  pkix.Name{CommonName: cfg.DeviceAPI.ServerName},
		DNSNames: []string{cfg.DeviceAPI.ServerName, "localhost"},
		IPs:      ips,
		Lifetime: 2 * 365 * 24 * time.Hour,
		Server:   true,
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	return pair, pki.WritePair(certFile, keyFile, pair)
}

func (g *Gateway) deviceTLSConfig(creds string) (*tls.Config, error) {
	pair, err := EnsureDeviceAPICert(g.cfg)
	if err != nil {
		return nil, fmt.Errorf("preparing device API certificate: %w", err)
	}
	caFile := config.Path(creds, g.cfg.DeviceAPI.DeviceCA)
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		if len(g.cfg.DeviceAPI.Listen) > 0 {
			g.log.Warn("no device CA: every device will be rejected until device_api.device_ca names a CA bundle", "file", caFile, "err", err)
		}
		pool = nil
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: devices download images of hundreds of megabytes,
		// and Go's HTTP/2 server moved them at about half the throughput
		// and twice the CPU per byte of HTTP/1.1 over the same TLS
		// (docs/BENCHMARKS.md). A device needs no multiplexing for its few
		// requests.
		NextProtos: []string{"http/1.1"},
	}
	if pool == nil {
		conf.ClientCAs = emptyPool()
	}
	return conf, nil
}

func timeDuration(d cache.Duration) time.Duration { return time.Duration(d) }

// hashKey derives an idempotency key that identifies an event without
// revealing the device it came from.
func hashKey(site, dedup string) string {
	sum := sha256.Sum256([]byte(site + "\x00" + dedup))
	return site + "-" + hex.EncodeToString(sum[:16])
}
