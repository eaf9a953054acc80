package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func wg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func mustWG(t *testing.T, args ...string) string {
	t.Helper()
	out, err := wg(t, args...)
	if err != nil {
		t.Fatalf("wardgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var tokenLine = regexp.MustCompile(`(?m)^(wgt_[0-9a-f]{12}_[A-Za-z0-9_-]{43})$`)

// TestAdminCommandsStoppedAndRunning walks the bootstrap flow: init
// writes the first admin token; token commands work on the stopped
// gateway's data folder and, while it runs, through the admin API;
// status, audit, backup and restore work both ways.
func TestAdminCommandsStoppedAndRunning(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wardgate.toml")
	mustWG(t, "init", "-config", cfgPath, "-data", filepath.Join(dir, "data"))
	cfgText, _ := os.ReadFile(cfgPath)
	admin := freePort(t)
	cfgText = bytes.Replace(cfgText, []byte(`listen = "127.0.0.1:9090"`), []byte(`listen = "`+admin+`"`), 1)
	cfgText = bytes.Replace(cfgText, []byte(`listen = ["127.0.0.1:8443"]`), []byte(`listen = ["`+freePort(t)+`"]`), 1)
	if err := os.WriteFile(cfgPath, cfgText, 0o640); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "data", "credentials", "admin.token")
	if st, err := os.Stat(tokFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("first admin token file: %v %v, want mode 0600", err, st)
	}
	if out := mustWG(t, "init", "-config", cfgPath, "-keep-config"); !strings.Contains(out, "an admin token exists already") {
		t.Errorf("second init: %s", out)
	}

	out := mustWG(t, "token", "create", "-config", cfgPath, "-name", "Vera Viewer", "-role", "viewer")
	viewer := tokenLine.FindString(out)
	if viewer == "" {
		t.Fatalf("token create printed no token:\n%s", out)
	}
	if out := mustWG(t, "token", "list", "-config", cfgPath); !strings.Contains(out, "Vera Viewer") || !strings.Contains(out, "first admin") {
		t.Errorf("token list:\n%s", out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var logs bytes.Buffer
		done <- run(ctx, []string{"serve", "-config", cfgPath}, &logs, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r, err := http.Get("http://" + admin + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := mustWG(t, "status", "-config", cfgPath); !strings.Contains(out, "tunnel") || !strings.Contains(out, "offline") {
		t.Errorf("status:\n%s", out)
	}
	if out := mustWG(t, "devices", "-config", cfgPath); !strings.HasPrefix(out, "MANUFACTURER") {
		t.Errorf("devices:\n%s", out)
	}
	// With the gateway running, the admin token file is used for the API.
	out = mustWG(t, "token", "create", "-config", cfgPath, "-name", "Otto Operator", "-role", "operator", "-ttl", "24h")
	if tokenLine.FindString(out) == "" {
		t.Fatalf("token create while running:\n%s", out)
	}
	if out, err := wg(t, "token", "create", "-config", cfgPath, "-token", viewer, "-name", "x", "-role", "admin"); err == nil || !strings.Contains(out+err.Error(), "403") {
		t.Errorf("a viewer created a token: %v %s", err, out)
	}
	if out := mustWG(t, "audit", "verify", "-config", cfgPath); !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify while running: %s", out)
	}
	export := filepath.Join(dir, "audit.csv")
	mustWG(t, "audit", "export", "-config", cfgPath, "-format", "csv", "-o", export, "-from", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if data, _ := os.ReadFile(export); !bytes.Contains(data, []byte("token.create")) || !bytes.HasPrefix(data, []byte("seq,time,actor")) {
		t.Errorf("exported CSV:\n%s", data)
	}
	backup := filepath.Join(dir, "backup.tar")
	if out := mustWG(t, "backup", "-config", cfgPath, backup); !strings.Contains(out, "backup: wrote") {
		t.Errorf("backup: %s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	done <- nil

	// Restore into a fresh data folder and check it offline.
	restored := filepath.Join(dir, "restored.toml")
	if err := os.WriteFile(restored, bytes.Replace(cfgText, []byte(filepath.Join(dir, "data")), []byte(filepath.Join(dir, "data2")), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	if out := mustWG(t, "restore", "-config", restored, backup); !strings.Contains(out, "restore done") {
		t.Errorf("restore: %s", out)
	}
	if out := mustWG(t, "token", "list", "-config", restored); !strings.Contains(out, "Otto Operator") {
		t.Errorf("restored tokens:\n%s", out)
	}
	if out := mustWG(t, "audit", "verify", "-config", restored); !strings.Contains(out, "audit chain intact") {
		t.Errorf("restored audit verify: %s", out)
	}
}
