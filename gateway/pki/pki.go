// Package pki issues and loads the X.509 material of a Wardgate
// deployment: the hub's gateway CA and device CA, the certificates they
// issue, and the PEM files that hold them. Keys are ECDSA P-256, which
// every TLS stack that devices and browsers run accepts.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Authority is a CA certificate with its private key.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewKey generates an ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewAuthority creates a self-signed CA named commonName.
func NewAuthority(commonName string, lifetime time.Duration) (*Authority, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Template describes a certificate to issue.
type Template struct {
	Subject  pkix.Name
	DNSNames []string
	IPs      []net.IP
	Lifetime time.Duration
	Client   bool // ExtKeyUsageClientAuth
	Server   bool // ExtKeyUsageServerAuth
}

// Issue signs a certificate for pub.
func (a *Authority) Issue(pub crypto.PublicKey, t Template) (*x509.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      t.Subject,
		DNSNames:     t.DNSNames,
		IPAddresses:  t.IPs,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(t.Lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if t.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if t.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate for %q: %w", t.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// IssuePair generates a key and issues a certificate for it, returned as
// a tls.Certificate whose chain ends below the authority.
func (a *Authority) IssuePair(t Template) (tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := a.Issue(key.Public(), t)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// Pool returns a certificate pool holding only the authority.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// LoadOrCreateAuthority loads DIR/NAME.pem and DIR/NAME.key, creating a
// new authority there when neither exists.
func LoadOrCreateAuthority(dir, name, commonName string) (*Authority, error) {
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if _, err := os.Stat(certFile); err == nil {
		return LoadAuthority(certFile, keyFile)
	}
	a, err := NewAuthority(commonName, 20*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := WriteCert(certFile, a.Cert); err != nil {
		return nil, err
	}
	if err := WriteKey(keyFile, a.Key); err != nil {
		return nil, err
	}
	return a, nil
}

// LoadAuthority reads a CA certificate and key from PEM files.
func LoadAuthority(certFile, keyFile string) (*Authority, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading CA %s: %w", certFile, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key %s cannot sign", keyFile)
	}
	return &Authority{Cert: pair.Leaf, Key: signer}, nil
}

// WriteCert writes cert as PEM, mode 0644.
func WriteCert(name string, certs ...*x509.Certificate) error {
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return writeFile(name, data, 0o644)
}

// WriteKey writes key as PKCS #8 PEM, mode 0600.
func WriteKey(name string, key crypto.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	return writeFile(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// WritePair writes a tls.Certificate's chain and key.
func WritePair(certFile, keyFile string, pair tls.Certificate) error {
	var certs []*x509.Certificate
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	if err := WriteCert(certFile, certs...); err != nil {
		return err
	}
	return WriteKey(keyFile, pair.PrivateKey)
}

// LoadPool reads every certificate in a PEM file into a pool.
func LoadPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", name)
	}
	return pool, nil
}

// LoadPair reads a certificate chain and key.
func LoadPair(certFile, keyFile string) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading certificate %s: %w", certFile, err)
	}
	return pair, nil
}

func writeFile(name string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return errors.Join(fmt.Errorf("writing %s: %w", name, err), os.Remove(tmp))
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}
