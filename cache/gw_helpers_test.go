package cache

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/blob"
)

// gw is a gateway's mirror with its own badger and blob store in a temp
// folder, served to devices over HTTP on loopback the way the device API
// routes it.
type gw struct {
	t      testing.TB
	dir    string
	db     *badger.DB
	blobs  *blob.Store
	mirror *Mirror
	reg    *prometheus.Registry
	srv    *httptest.Server
	clock  *testClock

	mu     sync.Mutex
	tamper func(w http.ResponseWriter, r *http.Request) bool
}

type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

const repoName = "default"

type gwOption func(*MirrorOptions, *blob.Options)

func newGW(t testing.TB, up *upstream, opts ...gwOption) *gw {
	t.Helper()
	g := &gw{t: t, dir: t.TempDir(), clock: &testClock{}}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(g.dir, "db")).WithLogger(nil).WithSyncWrites(true).
		WithMemTableSize(8 << 20).WithNumMemtables(2).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	g.db = db
	t.Cleanup(func() { _ = g.db.Close() })
	g.open(up, opts...)
	// The gateway's device server records each connection, so blob
	// responses tune it as in production.
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	g.srv.Config.ConnContext = ConnContext
	g.srv.Start()
	t.Cleanup(g.srv.Close)
	return g
}

// open opens the blob store and the mirror on the gateway's folder.
func (g *gw) open(up *upstream, opts ...gwOption) {
	g.t.Helper()
	g.reg = prometheus.NewRegistry()
	bo := blob.Options{Now: g.clock.Now}
	mo := MirrorOptions{
		Name:           repoName,
		DB:             g.db,
		Client:         &http.Client{Timeout: time.Minute},
		BaseURL:        up.srv.URL,
		TrustedRoot:    up.repo.rootBytes(1),
		RequestTimeout: 5 * time.Second,
		StallTimeout:   2 * time.Second,
		FailureBackoff: -1,
		Logger:         slog.New(slog.NewTextHandler(testLog{g.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer:     g.reg,
		Now:            g.clock.Now,
	}
	for _, o := range opts {
		o(&mo, &bo)
	}
	bs, err := blob.Open(filepath.Join(g.dir, "blobs"), g.db, bo)
	if err != nil {
		g.t.Fatal(err)
	}
	mo.Blobs = bs
	m, err := NewMirror(mo)
	if err != nil {
		g.t.Fatal(err)
	}
	g.blobs, g.mirror = bs, m
	g.t.Cleanup(g.close)
}

func (g *gw) close() {
	if g.mirror != nil {
		_ = g.mirror.Close()
		_ = g.blobs.Close()
		g.mirror, g.blobs = nil, nil
	}
}

func (g *gw) refresh() error {
	return g.mirror.Refresh(g.t.Context())
}

func (g *gw) mustRefresh() {
	g.t.Helper()
	if err := g.refresh(); err != nil {
		g.t.Fatalf("refresh: %v", err)
	}
}

func (g *gw) setTamper(f func(w http.ResponseWriter, r *http.Request) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tamper = f
}

// serve routes the way gateway/deviceapi.go does: the escaped path is
// split by hand and each part decoded once by the mirror.
func (g *gw) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	tamper := g.tamper
	g.mu.Unlock()
	if tamper != nil && tamper(w, r) {
		return
	}
	esc := r.URL.EscapedPath()
	if h, ok := strings.CutPrefix(esc, "/v1/blobs/sha256/"); ok {
		t, found := g.mirror.TargetBySHA256(h)
		if !found {
			http.NotFound(w, r)
			return
		}
		g.mirror.ServeTargetBlob(w, r, t)
		return
	}
	rest, ok := strings.CutPrefix(esc, "/tuf/"+repoName+"/")
	switch {
	case !ok:
		http.NotFound(w, r)
	case strings.HasPrefix(rest, "metadata/"):
		g.mirror.ServeMetadata(w, r, strings.TrimPrefix(rest, "metadata/"))
	case strings.HasPrefix(rest, "targets/"):
		g.mirror.ServeTarget(w, r, strings.TrimPrefix(rest, "targets/"))
	default:
		http.NotFound(w, r)
	}
}

func (g *gw) mirrorURL() string { return g.srv.URL + "/tuf/" + repoName }

func (g *gw) blobURL(data []byte) string {
	sum := sha256.Sum256(data)
	return g.srv.URL + "/v1/blobs/sha256/" + hex.EncodeToString(sum[:])
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// get fetches url with optional headers and returns the response and body.
func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type (
	ed25519Key  = ed25519.PrivateKey
	blobOptions = blob.Options
)

func itoa(n int) string { return strconv.Itoa(n) }

// counterValue sums the samples of the metric family name in reg.
func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			}
		}
	}
	return total
}
