package gateway_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
)

// TestMetricsPassPromtool scrapes a running gateway that has served a
// fleet, approved a rollout and forwards its audit trail, checks the
// exposition with Debian's promtool, and checks that docs/METRICS.md
// documents every wardgate_ metric it exposes.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed: install the Debian package prometheus (./scripts/test-deps.sh does)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	e := newEnv(t)
	e.startHub()
	cfg := e.adminConfig()
	cfg.Audit.Syslog.Address, cfg.Audit.Syslog.Transport = ln.Addr().String(), "tcp"
	e.startGateway(cfg)
	f := startFleet(t, e)
	admin := newToken(t, e.gw, "Ada Admin", gateway.RoleAdmin)
	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", admin, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	f.round()

	resp, err := http.Get(e.adminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	_ = os.WriteFile(filepath.Join(t.ArtifactDir(), "metrics.txt"), body, 0o644)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	doc, err := os.ReadFile("../docs/METRICS.md")
	if err != nil {
		t.Fatalf("reading docs/METRICS.md: %v", err)
	}
	var missing []string
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (wardgate_\w+) `).FindAllSubmatch(body, -1) {
		name := string(m[1])
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("docs/METRICS.md does not document %d exposed metrics (add a row for each, with its labels):\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}
