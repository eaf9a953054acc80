package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wardgate/wardgate/gateway/config"
)

// bundleFiles are the files of a credentials bundle from `wardhub enroll`.
var bundleFiles = []string{"gateway.pem", "gateway.key", "hub-ca.pem", "device-ca.pem", "root.json", "site-id"}

// ImportCredentials copies a credentials bundle into the gateway's
// credentials folder and returns the site id. Every file must be present,
// so a partial bundle changes nothing.
func ImportCredentials(cfg config.Config, bundleDir string) (string, error) {
	files := map[string][]byte{}
	for _, name := range bundleFiles {
		data, err := os.ReadFile(filepath.Join(bundleDir, name))
		if err != nil {
			return "", fmt.Errorf("credentials bundle %s is incomplete: %w", bundleDir, err)
		}
		files[name] = data
	}
	dst := cfg.CredentialsDir()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o600); err != nil {
			return "", fmt.Errorf("writing credentials: %w", err)
		}
	}
	return strings.TrimSpace(string(files["site-id"])), nil
}
