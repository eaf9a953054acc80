package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// goTUFDevice is a device running go-tuf v2.4.2 against the gateway's
// mirror with its own metadata folder, so rollback protection carries
// over between its runs like on a real device.
type goTUFDevice struct {
	t       testing.TB
	dir     string
	base    string
	root    []byte
	refTime time.Time // zero: the real clock
	timeout time.Duration
}

func newGoTUFDevice(t testing.TB, g *gw, root []byte) *goTUFDevice {
	return &goTUFDevice{t: t, dir: t.TempDir(), base: g.mirrorURL(), root: root, timeout: 5 * time.Second}
}

// fetch refreshes and downloads target through the mirror's targets path,
// returning its verified bytes. Panics in go-tuf are returned as errors.
func (d *goTUFDevice) fetch(target string) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-tuf panicked: %v", r)
		}
	}()
	cfg, err := config.New(d.base+"/metadata", d.root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = d.dir
	cfg.LocalTargetsDir = filepath.Join(d.dir, "targets")
	cfg.RemoteTargetsURL = d.base + "/targets"
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(&http.Client{Timeout: d.timeout})
	cfg.Fetcher = f
	if err := os.MkdirAll(cfg.LocalTargetsDir, 0o700); err != nil {
		return nil, err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	if !d.refTime.IsZero() {
		up.UnsafeSetRefTime(d.refTime)
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	tf, err := up.GetTargetInfo(target)
	if err != nil {
		return nil, fmt.Errorf("target info: %w", err)
	}
	_, data, err = up.DownloadTarget(tf, filepath.Join(d.dir, "targets", "download"), "")
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	return data, nil
}

// tufJSDevice runs cache/testdata/tufjs/device.js (tuf-js 4.1.0 from npm)
// with its own metadata folder.
type tufJSDevice struct {
	t   testing.TB
	dir string
	g   *gw
	// deadline bounds one whole update, as a device's own watchdog would.
	deadline time.Duration
}

// tufJSDir is the harness folder; its node_modules come from `npm ci`.
const tufJSDir = "testdata/tufjs"

// haveTufJS reports whether node and the tuf-js harness are installed.
func haveTufJS() bool {
	if _, err := exec.LookPath("node"); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(tufJSDir, "node_modules", "tuf-js", "package.json"))
	return err == nil
}

func newTufJSDevice(t testing.TB, g *gw, root []byte) *tufJSDevice {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: install Debian's nodejs (Node 20) and run `npm ci` in cache/testdata/tufjs to run the tuf-js device")
	}
	if _, err := os.Stat(filepath.Join(tufJSDir, "node_modules", "tuf-js", "package.json")); err != nil {
		t.Skip("tuf-js is not installed: run `npm ci` in cache/testdata/tufjs (scripts/test-deps.sh does)")
	}
	d := &tufJSDevice{t: t, dir: t.TempDir(), g: g, deadline: 20 * time.Second}
	for _, sub := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(d.dir, "metadata"), "root.json", root)
	return d
}

func (d *tufJSDevice) fetch(target string) ([]byte, error) {
	d.t.Helper()
	arg, err := json.Marshal(map[string]any{
		"metadataBaseUrl": d.g.mirrorURL() + "/metadata",
		"targetBaseUrl":   d.g.mirrorURL() + "/targets",
		"metadataDir":     filepath.Join(d.dir, "metadata"),
		"targetDir":       filepath.Join(d.dir, "targets"),
		"target":          target,
		"timeoutMs":       5000,
		"deadlineMs":      d.deadline.Milliseconds(),
	})
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := exec.CommandContext(d.t.Context(), "node", filepath.Join(tufJSDir, "device.js"), string(arg))
	cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("running tuf-js device: %v: %s", err, stderr.String())
	}
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		Path  string `json:"path"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		d.t.Fatalf("tuf-js device printed %q: %v", out, err)
	}
	if !res.OK {
		return nil, errors.New(res.Error)
	}
	return os.ReadFile(res.Path)
}

// curlGet downloads url with curl, as a device without a TUF client
// would, passing extra arguments; it returns the body and the status.
func curlGet(t testing.TB, url string, args ...string) ([]byte, int, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "body")
	argv := append([]string{"-s", "-S", "--max-time", "20", "-o", out, "-w", "%{http_code}"}, args...)
	argv = append(argv, url)
	cmd := exec.CommandContext(t.Context(), "curl", argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code, err := cmd.Output()
	body, _ := os.ReadFile(out)
	status := 0
	fmt.Sscanf(string(code), "%d", &status)
	if err != nil {
		return body, status, fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return body, status, nil
}

func needCurl(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: install Debian's curl to run the plain-download device")
	}
}

// standardRepo is an upstream repository with a release and its SBOM in
// the top-level targets role, a delegated role with a file whose name
// needs escaping, and a rotated root (so devices walk 1.root.json to
// 2.root.json and stop at an exact 404 for 3.root.json).
func standardRepo(t testing.TB) (*tufRepo, map[string][]byte) {
	t.Helper()
	r := newTUFRepo(t)
	files := map[string][]byte{
		"pump/3.2.0/pump.img":          randomBytes(t, 300<<10),
		"pump/3.2.0/sbom.cdx.json":     []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5"}`),
		"team/monitor/5.1.0/mon+1.img": randomBytes(t, 70<<10),
	}
	r.addTarget(metadata.TARGETS, "pump/3.2.0/pump.img", files["pump/3.2.0/pump.img"],
		&TargetMeta{Kind: KindRelease, Version: "3.2.0", Models: []string{"IP-200"}, SBOM: "pump/3.2.0/sbom.cdx.json"})
	r.addTarget(metadata.TARGETS, "pump/3.2.0/sbom.cdx.json", files["pump/3.2.0/sbom.cdx.json"],
		&TargetMeta{Kind: KindSBOM, Release: "pump/3.2.0/pump.img"})
	r.delegate(metadata.TARGETS, "team monitor", []string{"team/monitor/*/*"}, false)
	r.addTarget("team monitor", "team/monitor/5.1.0/mon+1.img", files["team/monitor/5.1.0/mon+1.img"],
		&TargetMeta{Kind: KindRelease, Version: "5.1.0", Models: []string{"MON-5"}})
	r.rotate(metadata.TIMESTAMP)
	r.publish()
	return r, files
}

func TestDevicesVerifyThroughTheMirror(t *testing.T) {
	repo, files := standardRepo(t)
	up := newUpstream(t, repo)
	g := newGW(t, up)
	g.mustRefresh()
	root := repo.rootBytes(1)

	for name, want := range files {
		t.Run("go-tuf/"+name, func(t *testing.T) {
			got, err := newGoTUFDevice(t, g, root).fetch(name)
			if err != nil {
				t.Fatalf("go-tuf device: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("go-tuf device got %d bytes that differ from the %d published", len(got), len(want))
			}
		})
	}
	for name, want := range files {
		t.Run("tuf-js/"+name, func(t *testing.T) {
			got, err := newTufJSDevice(t, g, root).fetch(name)
			if err != nil {
				t.Fatalf("tuf-js device: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("tuf-js device got %d bytes that differ from the %d published", len(got), len(want))
			}
		})
	}
	for name, want := range files {
		t.Run("curl/"+name, func(t *testing.T) {
			needCurl(t)
			body, status, err := curlGet(t, g.blobURL(want), "--fail")
			if err != nil || status != http.StatusOK {
				t.Fatalf("curl: status %d, err %v", status, err)
			}
			if sha256hex(body) != sha256hex(want) {
				t.Fatalf("curl got sha256 %s, want %s", sha256hex(body), sha256hex(want))
			}
		})
	}
	t.Run("exact 404 for the next root", func(t *testing.T) {
		resp, _, err := get(t, g.mirrorURL()+"/metadata/3.root.json")
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("3.root.json: got %v %v, want exactly 404", resp.StatusCode, err)
		}
		for v := int64(1); v <= 2; v++ {
			resp, body, err := get(t, fmt.Sprintf("%s/metadata/%d.root.json", g.mirrorURL(), v))
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, repo.rootBytes(v)) {
				t.Fatalf("%d.root.json: status %d, verbatim %v", v, resp.StatusCode, bytes.Equal(body, repo.rootBytes(v)))
			}
		}
	})
	t.Run("every hash prefix", func(t *testing.T) {
		tf := repo.targets.Signed.Targets["pump/3.2.0/pump.img"]
		for alg, h := range tf.Hashes {
			resp, body, err := get(t, g.mirrorURL()+"/targets/pump/3.2.0/"+h.String()+".pump.img")
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, files["pump/3.2.0/pump.img"]) {
				t.Errorf("target under its %s prefix: status %d, err %v", alg, resp.StatusCode, err)
			}
		}
	})
	t.Run("verbatim metadata", func(t *testing.T) {
		for _, name := range []string{"timestamp.json", "2.snapshot.json", "2.targets.json", "1.team%20monitor.json"} {
			resp, body, err := get(t, g.mirrorURL()+"/metadata/"+name)
			want := repo.get("metadata/" + strings.ReplaceAll(name, "%20", " "))
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Errorf("%s: status %d, %d bytes, want the %d upstream bytes verbatim", name, resp.StatusCode, len(body), len(want))
			}
		}
	})
}
