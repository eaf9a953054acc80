package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/tunnel"
)

// bundleFiles are the files of a credentials bundle from `wardhub enroll`.
var bundleFiles = []string{"gateway.pem", "gateway.key", "hub-ca.pem", "device-ca.pem", "root.json", "site-id"}

// Certificate files in the credentials folder. A renewal writes the
// ".next" files first, then renames the key and the certificate into
// place; loadGatewayPair finishes a renewal that a crash interrupted.
const (
	certFile = "gateway.pem"
	keyFile  = "gateway.key"
	nextExt  = ".next"
)

// ImportCredentials checks a credentials bundle and copies it into the
// gateway's credentials folder, returning the site id. Every file must be
// present and valid, so a bad bundle changes nothing. An existing
// enrolment is replaced only with force.
func ImportCredentials(cfg config.Config, bundleDir string, force bool) (string, error) {
	files := map[string][]byte{}
	for _, name := range bundleFiles {
		data, err := os.ReadFile(filepath.Join(bundleDir, name))
		if err != nil {
			return "", fmt.Errorf("credentials bundle %s is incomplete: %w", bundleDir, err)
		}
		files[name] = data
	}
	site, err := checkBundle(files)
	if err != nil {
		return "", fmt.Errorf("credentials bundle %s is invalid: %w", bundleDir, err)
	}
	dst := cfg.CredentialsDir()
	if old := readSiteID(dst); old != "" && old != site && !force {
		return "", fmt.Errorf("this gateway is enrolled as %s; the bundle is for %s: pass -force to replace the enrolment", old, site)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o600); err != nil {
			return "", fmt.Errorf("writing credentials: %w", err)
		}
	}
	return site, nil
}

// checkBundle validates a bundle's files: the key matches the
// certificate, the CA files hold certificates, the hub CA issued the
// certificate, the TUF root parses, and the site id is a plain name. It
// returns the site id.
func checkBundle(files map[string][]byte) (string, error) {
	pair, err := tls.X509KeyPair(files[certFile], files[keyFile])
	if err != nil {
		return "", fmt.Errorf("gateway certificate and key: %w", err)
	}
	for _, name := range []string{"hub-ca.pem", "device-ca.pem"} {
		if !x509.NewCertPool().AppendCertsFromPEM(files[name]) {
			return "", fmt.Errorf("%s holds no PEM certificate", name)
		}
	}
	// The hub accepts only a certificate that its CA issued for client
	// authentication, so a bundle mixed from two enrolments would fail at
	// every connection. The check runs at the certificate's start time, so
	// an expired certificate is imported and the hub's refusal names the
	// expiry when the gateway connects.
	hubCA := x509.NewCertPool()
	hubCA.AppendCertsFromPEM(files["hub-ca.pem"])
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots: hubCA, CurrentTime: pair.Leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", fmt.Errorf("gateway.pem was not issued by the CA in hub-ca.pem (%v): use the files of one `wardhub enroll` run together", err)
	}
	if _, err := metadata.Root().FromBytes(files["root.json"]); err != nil {
		return "", fmt.Errorf("root.json is not a TUF root: %w", err)
	}
	site := strings.TrimSpace(string(files["site-id"]))
	if !validSiteID(site) {
		return "", fmt.Errorf("site-id %q must be 8 to 64 letters, digits, '-' or '_'", site)
	}
	if cn := pair.Leaf.Subject.CommonName; cn != site {
		return "", fmt.Errorf("the certificate is for site %q but site-id says %q", cn, site)
	}
	return site, nil
}

func validSiteID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// EnrollOptions configures Enroll.
type EnrollOptions struct {
	// Hub is the hub's address, host:port; empty means upstream.hub.
	Hub string
	// Token is the one-time enrolment token from `wardhub token create`.
	Token string
	// HubCAFile is a PEM file of the hub CA; HubCASHA256 instead pins
	// the CA by the SHA-256 of its DER encoding. One is required.
	HubCAFile   string
	HubCASHA256 string
	// Force replaces an existing enrolment.
	Force  bool
	Logger *slog.Logger
}

// Enroll creates the gateway's key, has the hub sign it with a one-time
// token over the tunnel's transports, and stores the certificate, the
// site id, the hub and device CAs and the TUF root in the credentials
// folder. The key never leaves the gateway. It returns the site id.
func Enroll(ctx context.Context, cfg config.Config, opts EnrollOptions) (string, error) {
	creds := cfg.CredentialsDir()
	if _, err := os.Stat(filepath.Join(creds, certFile)); err == nil && !opts.Force {
		return "", fmt.Errorf("the gateway is already enrolled as %q (credentials in %s): pass -force to enrol again", readSiteID(creds), creds)
	}
	hubAddr := opts.Hub
	if hubAddr == "" {
		hubAddr = cfg.Upstream.Hub
	}
	if _, _, err := net.SplitHostPort(hubAddr); err != nil {
		return "", fmt.Errorf("hub address %q is not host:port: pass -hub or set upstream.hub", hubAddr)
	}
	var pool *x509.CertPool
	if opts.HubCAFile != "" {
		p, err := pki.LoadPool(opts.HubCAFile)
		if err != nil {
			return "", err
		}
		pool = p
	}
	if pool == nil && opts.HubCASHA256 == "" {
		return "", errors.New("enrolment needs the hub CA: pass -hub-ca FILE or -hub-ca-sha256 FINGERPRINT (both printed by `wardhub token create`)")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tcpAddr := cfg.Tunnel.TCPHub
	if tcpAddr == "" {
		tcpAddr = hubAddr
	}
	proxy, err := tunnelProxy(cfg, tcpAddr)
	if err != nil {
		return "", err
	}
	key, err := pki.NewKey()
	if err != nil {
		return "", fmt.Errorf("creating the gateway key: %w", err)
	}
	e, err := tunnel.Enroll(ctx, tunnel.EnrollOptions{
		Addr: hubAddr, TCPAddr: tcpAddr, ServerName: cfg.Upstream.ServerName, Transport: cfg.Tunnel.Transport, Proxy: proxy,
		Token: opts.Token, Key: key, HubCA: pool, HubCASHA256: opts.HubCASHA256, Logger: log,
	})
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(creds, 0o700); err != nil {
		return "", fmt.Errorf("creating the credentials folder: %w", err)
	}
	// The certificate goes last: until it is in place the gateway does
	// not count as enrolled.
	for name, data := range map[string][]byte{
		"hub-ca.pem": e.HubCA, "device-ca.pem": e.DeviceCA, "root.json": e.TUFRoot, "site-id": []byte(e.SiteID + "\n"),
	} {
		if err := writeSynced(filepath.Join(creds, name), data); err != nil {
			return "", fmt.Errorf("writing credentials: %w", err)
		}
	}
	if err := saveGatewayPair(creds, e.Certificate); err != nil {
		return "", err
	}
	return e.SiteID, nil
}

// saveGatewayPair stores a certificate and key so that a crash at any
// point leaves either the old pair or the new one.
func saveGatewayPair(creds string, pair tls.Certificate) error {
	cert, key := filepath.Join(creds, certFile), filepath.Join(creds, keyFile)
	if err := pki.WritePair(cert+nextExt, key+nextExt, pair); err != nil {
		return fmt.Errorf("writing the gateway certificate: %w", err)
	}
	return finishPair(creds)
}

// finishPair moves a complete ".next" pair into place: the key first,
// then the certificate. The ".next" key exists only once the ".next"
// certificate was written, so it is safe to finish from either step.
func finishPair(creds string) error {
	cert, key := filepath.Join(creds, certFile), filepath.Join(creds, keyFile)
	if _, err := os.Stat(key + nextExt); err == nil {
		if err := os.Rename(key+nextExt, key); err != nil {
			return fmt.Errorf("installing the gateway key: %w", err)
		}
	}
	if _, err := os.Stat(cert + nextExt); err == nil {
		if err := os.Rename(cert+nextExt, cert); err != nil {
			return fmt.Errorf("installing the gateway certificate: %w", err)
		}
	}
	if d, err := os.Open(creds); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadGatewayPair reads the gateway's certificate and key, first
// finishing a renewal that stopped half-way.
func loadGatewayPair(creds string) (tls.Certificate, error) {
	if err := finishPair(creds); err != nil {
		return tls.Certificate{}, err
	}
	return pki.LoadPair(filepath.Join(creds, certFile), filepath.Join(creds, keyFile))
}

func writeSynced(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// tunnelProxy resolves tunnel.proxy: the environment, none, or the
// configured proxy with its password file.
func tunnelProxy(cfg config.Config, tcpAddr string) (*tunnel.Proxy, error) {
	var p *tunnel.Proxy
	var err error
	switch cfg.Tunnel.Proxy {
	case config.ProxyDirect:
		return nil, nil
	case "":
		p, err = tunnel.ProxyFromEnvironment(tcpAddr)
	default:
		p, err = tunnel.ParseProxy(cfg.Tunnel.Proxy)
	}
	if err != nil || p == nil {
		return nil, err
	}
	if cfg.Tunnel.ProxyUsername != "" {
		pw, err := os.ReadFile(config.Path(cfg.DataDir, cfg.Tunnel.ProxyPasswordFile))
		if err != nil {
			return nil, fmt.Errorf("reading tunnel.proxy_password_file: %w", err)
		}
		p.Username, p.Password = cfg.Tunnel.ProxyUsername, strings.TrimRight(string(pw), "\r\n")
	}
	return p, nil
}

// tunnelOptions builds the tunnel from the config and the credentials
// folder. Renewed certificates are saved back into that folder.
func tunnelOptions(cfg config.Config, creds string, log *slog.Logger, reg prometheus.Registerer, onNotice func(tunnel.Notice)) (tunnel.Options, error) {
	pair, err := loadGatewayPair(creds)
	if err != nil {
		return tunnel.Options{}, fmt.Errorf("upstream.hub is set but the gateway is not enrolled (run `wardgate enroll`): %w", err)
	}
	pool, err := pki.LoadPool(filepath.Join(creds, "hub-ca.pem"))
	if err != nil {
		return tunnel.Options{}, err
	}
	tcpAddr := cfg.Tunnel.TCPHub
	if tcpAddr == "" {
		tcpAddr = cfg.Upstream.Hub
	}
	proxy, err := tunnelProxy(cfg, tcpAddr)
	if err != nil {
		return tunnel.Options{}, err
	}
	if proxy != nil {
		log.Info("tunnel TCP fallback goes through a proxy", "proxy", proxy.String())
	}
	return tunnel.Options{
		Addr:    cfg.Upstream.Hub,
		TCPAddr: tcpAddr,
		TLS: &tls.Config{
			Certificates: []tls.Certificate{pair},
			RootCAs:      pool,
			ServerName:   cfg.Upstream.ServerName,
		},
		Transport:       cfg.Tunnel.Transport,
		Proxy:           proxy,
		ReprobeInterval: time.Duration(cfg.Tunnel.QUICReprobeInterval),
		BandwidthLimit:  int64(cfg.Tunnel.BandwidthLimit),
		SaveCertificate: func(p tls.Certificate) error { return saveGatewayPair(creds, p) },
		OnNotice:        onNotice,
		Logger:          log,
		Registerer:      reg,
	}, nil
}
