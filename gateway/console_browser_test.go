package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/gateway"
)

// chromiumPath finds Debian's chromium. Without it the test skips, except
// as root, where `make test` has installed it and its absence is a fault.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Geteuid() == 0 {
		t.Fatal("chromium is not installed: run ./scripts/test-deps.sh (Debian packages chromium and chromium-driver)")
	}
	t.Skip("chromium is not installed and the test does not run as root: install the Debian packages chromium and chromium-driver")
	return ""
}

// browser starts a headless chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelT)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

type shots struct {
	t   *testing.T
	dir string
	n   int
}

func newShots(t *testing.T) *shots {
	dir := t.ArtifactDir()
	t.Logf("console screenshots in %s (keep them with go test -artifacts -outputdir DIR)", dir)
	return &shots{t: t, dir: dir}
}

func (s *shots) take(ctx context.Context, name string) {
	s.t.Helper()
	s.save(ctx, name, chromedp.FullScreenshot(100))
}

// takeView saves the visible part of a long page.
func (s *shots) takeView(ctx context.Context, name string) {
	s.t.Helper()
	s.save(ctx, name, chromedp.CaptureScreenshot())
}

func (s *shots) save(ctx context.Context, name string, shot chromedp.Action[[]byte]) {
	s.t.Helper()
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	s.n++
	p := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// run runs browser steps, each batch within 30 seconds; on failure it
// saves what the page showed.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(90)); serr == nil {
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), "failed.png"), png, 0o644)
		}
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v; the page says:\n%s", what, err, body)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// testAdvisory is an OSV record written for this test around the
// BouncyCastle 1.8.1 package in the pump release's SBOM.
const testAdvisory = `{
  "schema_version": "1.6.0",
  "id": "GHSA-wg00-test-0001",
  "aliases": ["CVE-2026-99001"],
  "modified": "2026-01-10T00:00:00Z",
  "published": "2026-01-05T00:00:00Z",
  "summary": "Test advisory: signature check bypass in BouncyCastle before 1.8.2",
  "affected": [{
    "package": {"ecosystem": "NuGet", "name": "BouncyCastle", "purl": "pkg:nuget/BouncyCastle"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.8.2"}]}]
  }],
  "database_specific": {"severity": "HIGH"}
}`

func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	f := startFleet(t, e)
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	shot := newShots(t)
	base := e.adminURL()

	// Log in: the console sends an anonymous visitor to the login page.
	run(t, ctx, "opening the console", chromedp.Navigate(base+"/console/devices"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(loc, "/console/login") {
		t.Fatalf("anonymous visit landed on %s, want the login page", loc)
	}
	shot.take(ctx, "login")
	run(t, ctx, "logging in", chromedp.SendKeys(chromedp.CSS("#token"), approver), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#devices")))

	// The devices appear, with a device page holding history and versions.
	devs := text(t, ctx, "#devices")
	for _, s := range []string{"SIM-0001", "SIM-0012", "IP-200", "MON-5", "XR-1"} {
		if !strings.Contains(devs, s) {
			t.Errorf("devices page lacks %s:\n%s", s, devs)
		}
	}
	shot.take(ctx, "devices")
	run(t, ctx, "opening a device", chromedp.Navigate(base+"/console/devices/Acme%20Medical/SIM-0001"), chromedp.WaitVisible(chromedp.CSS("ol.history")))
	if h := text(t, ctx, "main"); !strings.Contains(h, "checkin") || !strings.Contains(h, "3.1.0") || !strings.Contains(h, "not-approved") {
		t.Errorf("device page lacks its history, version or withhold reason:\n%s", h)
	}
	shot.take(ctx, "device")
	run(t, ctx, "opening the overview", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS(".tiles")))
	shot.take(ctx, "overview")

	// Approve the pump release: its rollout starts with a canary wave.
	run(t, ctx, "opening releases", chromedp.Navigate(base+"/console/releases"), chromedp.WaitVisible(chromedp.CSS(`button.approve[data-target="`+pumpTarget+`"]`)))
	run(t, ctx, "approving", chromedp.Click(chromedp.CSS(`button.approve[data-target="`+pumpTarget+`"]`)), chromedp.WaitVisible(chromedp.CSS(".rollout")))
	if flash := text(t, ctx, ".flash"); !strings.Contains(flash, "Approved "+pumpTarget) {
		t.Errorf("after approving: flash %q", flash)
	}
	updatedWidth := func(wave int) float64 {
		js := fmt.Sprintf(`parseFloat(document.querySelectorAll('.rollout [data-wave="%d"] rect.seg.updated')[0].getAttribute('width'))`, wave)
		w, err := chromedp.Run(ctx, chromedp.Evaluate[float64](js))
		if err != nil {
			t.Fatalf("reading the bar of wave %d: %v", wave+1, err)
		}
		return w
	}
	if w := updatedWidth(0); w != 0 {
		t.Errorf("wave 1 shows %v%% updated before any device installed", w)
	}
	shot.take(ctx, "rollout-started")

	// The canary installs; the page's own refresh moves its bar.
	if n := f.round(); n != 1 {
		t.Fatalf("first round: %d devices installed, want the one canary", n)
	}
	// settled waits for the bars' CSS transitions to end, so screenshots
	// show where the bars arrived.
	settled := func() {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getAnimations().length === 0`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Fatalf("waiting for the bars to settle: %v", err)
		}
	}
	waitBar := func(wave int, want float64) {
		t.Helper()
		js := fmt.Sprintf(`(() => { const r = document.querySelectorAll('.rollout [data-wave="%d"] rect.seg.updated')[0]; return r && parseFloat(r.getAttribute('width')) >= %v; })()`, wave, want-0.01)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(200*time.Millisecond))); err != nil {
			t.Fatalf("wave %d bar did not reach %v%% updated: %v (now %v%%)", wave+1, want, err, updatedWidth(wave))
		}
	}
	waitBar(0, 100)
	settled()
	shot.take(ctx, "rollout-canary-done")
	if n := f.round(); n != 5 {
		t.Fatalf("second round: %d devices installed, want the other 5", n)
	}
	waitBar(1, 100)
	run(t, ctx, "reloading releases", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(".rollout")))
	if st := text(t, ctx, ".rollout [data-state]"); st != "completed" {
		t.Errorf("rollout state %q after every device updated, want completed", st)
	}
	shot.take(ctx, "rollout-completed")

	run(t, ctx, "opening windows", chromedp.Navigate(base+"/console/windows"), chromedp.WaitVisible(chromedp.CSS(".tl-row")))
	if w := text(t, ctx, ".timeline"); !strings.Contains(w, "patient-monitors") || !strings.Contains(w, "blackouts") {
		t.Errorf("windows page lacks the monitors' group or its blackout:\n%s", w)
	}
	shot.take(ctx, "windows")

	// Exposure: before advisories there is a clear empty state; with one
	// loaded, the CVE id finds the updated pumps.
	run(t, ctx, "opening exposure", chromedp.Navigate(base+"/console/exposure"), chromedp.WaitVisible(chromedp.CSS("#vuln-id")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "No advisories loaded") {
		t.Errorf("exposure page without advisories: %q", s)
	}
	shot.take(ctx, "exposure-empty")
	if _, err := e.gw.Advisories().Add(context.Background(), []byte(testAdvisory), advisory.Source{Origin: "import", Name: "test-advisory.json"}); err != nil {
		t.Fatalf("loading the test advisory: %v", err)
	}
	run(t, ctx, "searching a CVE", chromedp.SendKeys(chromedp.CSS("#vuln-id"), "CVE-2026-99001"), chromedp.Click(chromedp.CSS("#find")),
		chromedp.WaitVisible(chromedp.CSS("#exposed")))
	exposed := text(t, ctx, "#exposed")
	if !strings.Contains(exposed, "Acme Medical/SIM-0001") || !strings.Contains(exposed, "affected") {
		t.Errorf("exposure of CVE-2026-99001 does not list SIM-0001 as affected:\n%s", exposed)
	}
	shot.take(ctx, "exposure")

	// The browser itself is refused a form without its CSRF token, and a
	// viewer is refused the approve form even with one.
	post := func(ctx context.Context, withCSRF bool) int {
		t.Helper()
		js := fmt.Sprintf(`(async () => {
			const body = new URLSearchParams({target: %q});
			if (%t) { body.set("csrf", document.querySelector('input[name="csrf"]').value); }
			const r = await fetch("/console/releases/approve", {method: "POST", body, redirect: "manual"});
			return r.status;
		})()`, monitorTarget, withCSRF)
		code, err := chromedp.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("posting the approve form from the page: %v", err)
		}
		return code
	}
	if code := post(ctx, false); code != 403 {
		t.Errorf("approve form without its CSRF token: %d, want 403", code)
	}
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	run(t, ctx, "logging out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	run(t, ctx, "logging in as a viewer", chromedp.Navigate(base+"/console/releases"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), viewer), chromedp.Click(chromedp.CSS("#login")), chromedp.WaitVisible(chromedp.CSS(".release")))
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("button.approve").length`)); n != 0 {
		t.Errorf("a viewer sees %d approve buttons, want none", n)
	}
	if code := post(ctx, true); code != 403 {
		t.Errorf("approve form posted by a viewer: %d, want 403", code)
	}
	shot.take(ctx, "viewer-releases")

	run(t, ctx, "opening audit", chromedp.Navigate(base+"/console/audit?action=approval"), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	if a := text(t, ctx, "table.audit"); !strings.Contains(a, "approval.grant") || !strings.Contains(a, "token:"+strings.Split(approver, "_")[1]) {
		t.Errorf("audit page lacks the approval by the approver's token:\n%s", a)
	}
	run(t, ctx, "opening audit", chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	shot.takeView(ctx, "audit")
}
