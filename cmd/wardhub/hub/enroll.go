package hub

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/gateway/pki"
)

// Enroll issues a new site's credentials bundle into outDir: the
// gateway's client certificate and key bound to a random site id, the
// hub CA, the device CA, and the repository's current root as the
// gateway's TUF trust anchor. It returns the site id.
func Enroll(dataDir, repoDir, outDir string, lifetime time.Duration) (string, error) {
	ca, err := pki.LoadOrCreateAuthority(filepath.Join(dataDir, "ca"), "gateway-ca", "Wardgate gateway CA")
	if err != nil {
		return "", err
	}
	deviceCA, err := DeviceCA(dataDir)
	if err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	siteID := "site-" + hex.EncodeToString(id[:])
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
	return siteID, nil
}

// DeviceCA loads or creates the manufacturer's device CA, which signs
// device client certificates.
func DeviceCA(dataDir string) (*pki.Authority, error) {
	return pki.LoadOrCreateAuthority(filepath.Join(dataDir, "ca"), "device-ca", "Wardgate device CA")
}
