package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway"
)

// copyBundle copies the env's bundle into a new folder and applies edit.
func copyBundle(t *testing.T, e *env, edit func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(e.bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		data, err := os.ReadFile(filepath.Join(e.bundle, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, en.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit(dir)
	return dir
}

func TestImportCredentialsRejects(t *testing.T) {
	e := newEnv(t)
	write := func(name, content string) func(string) {
		return func(dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	copyFrom := func(name, from string) func(string) {
		return func(dir string) {
			data, err := os.ReadFile(filepath.Join(dir, from))
			if err != nil {
				t.Fatal(err)
			}
			write(name, string(data))(dir)
		}
	}
	tests := []struct {
		name string
		edit func(string)
		want string
	}{
		{"empty key", write("gateway.key", ""), "certificate and key"},
		{"not a root", write("root.json", "{}"), "not a TUF root"},
		{"no CA", write("hub-ca.pem", "nothing"), "hub-ca.pem holds no PEM"},
		{"traversal site id", write("site-id", "../../etc"), "site-id"},
		{"site id of another certificate", write("site-id", "site-0123456789abcdef"), "certificate is for site"},
		{"key of another certificate", copyFrom("gateway.key", "hub-ca.pem"), "certificate and key"},
		{"certificate from another CA", copyFrom("hub-ca.pem", "device-ca.pem"), "not issued by the CA in hub-ca.pem"},
	}
	cfg := e.gatewayConfig()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gateway.ImportCredentials(cfg, copyBundle(t, e, tt.edit), false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.CredentialsDir(), "gateway.pem")); err == nil {
				t.Errorf("a rejected bundle wrote credentials")
			}
		})
	}
}

func TestImportCredentialsNeedsForce(t *testing.T) {
	e := newEnv(t)
	cfg := e.gatewayConfig()
	first, err := gateway.ImportCredentials(cfg, e.bundle, false)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	second, err := hub.Enroll(e.hubData, e.repo.Dir(), other, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.ImportCredentials(cfg, other, false); err == nil || !strings.Contains(err.Error(), first) {
		t.Errorf("replacing %s without -force: got %v, want an error naming it", first, err)
	}
	got, err := gateway.ImportCredentials(cfg, other, true)
	if err != nil || got != second {
		t.Errorf("replacing with force: got %q, %v; want %q", got, err, second)
	}
	if _, err := gateway.ImportCredentials(cfg, other, false); err != nil {
		t.Errorf("re-importing the same site: %v", err)
	}
}
