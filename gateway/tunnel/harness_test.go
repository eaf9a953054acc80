package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/store"
	"github.com/wardgate/wardgate/gateway/tunnel"
)

// testHub is a real hub on loopback with a repository folder of plain
// files (the hub serves targets verbatim) and an in-memory telemetry
// store that counts what it stores.
type testHub struct {
	t    testing.TB
	dir  string
	data string
	repo string
	db   *badger.DB
	sink *countingSink
	log  *slog.Logger
	opts func(*hub.Options)

	mu   sync.Mutex
	srv  *hub.Server
	addr string
	stop context.CancelFunc
	done chan error
}

func newTestHub(t testing.TB, opts func(*hub.Options)) *testHub {
	t.Helper()
	logTo(t)
	dir := t.TempDir()
	h := &testHub{t: t, dir: dir, data: filepath.Join(dir, "hub"), repo: filepath.Join(dir, "repo"), sink: newCountingSink(), opts: opts}
	h.log = slog.New(slog.NewTextHandler(logTo(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, d := range []string{filepath.Join(h.repo, "metadata"), filepath.Join(h.repo, "targets")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(h.repo, "metadata", "root.json"), []byte(`{"signed":{"_type":"root","version":1},"signatures":[]}`))
	db, err := store.Open(filepath.Join(h.data, "db"), h.log)
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	t.Cleanup(func() {
		h.shutdown()
		_ = db.Close()
	})
	return h
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// addTarget writes size random bytes as a target and returns them.
func (h *testHub) addTarget(name string, size int) []byte {
	h.t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	writeFile(h.t, filepath.Join(h.repo, "targets", name), data)
	return data
}

// start runs the hub, on the same UDP and TCP port as before if it ran.
func (h *testHub) start() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	addr := h.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	o := hub.Options{
		DataDir: h.data, RepoDir: h.repo, ListenAddr: addr, DB: h.db, Telemetry: h.sink,
		Logger: h.log, Registerer: prometheus.NewRegistry(),
	}
	if h.opts != nil {
		h.opts(&o)
	}
	var srv *hub.Server
	var err error
	// The old sockets of a restarted hub may take a moment to go.
	for range 50 {
		if srv, err = hub.New(o); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("starting hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.srv, h.addr, h.stop, h.done = srv, srv.Addr().String(), cancel, make(chan error, 1)
	go func() { h.done <- srv.Run(ctx) }()
}

// shutdown stops the hub cleanly, closing gateway connections with a close frame.
func (h *testHub) shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		return
	}
	h.stop()
	if err := <-h.done; err != nil {
		h.t.Errorf("hub stopped with error: %v", err)
	}
	h.stop = nil
}

// kill stops the hub as a crash would.
func (h *testHub) kill() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		return
	}
	h.srv.Kill()
	<-h.done
	h.stop = nil
}

func (h *testHub) server() *hub.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.srv
}

func (h *testHub) hubAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addr
}

// credentials enrols a site with a bundle and returns its TLS config.
func (h *testHub) credentials(lifetime time.Duration) (*tls.Config, string) {
	h.t.Helper()
	out := filepath.Join(h.dir, fmt.Sprintf("bundle-%d", time.Now().UnixNano()))
	site, err := hub.Enroll(h.data, h.repo, out, lifetime)
	if err != nil {
		h.t.Fatal(err)
	}
	pair, err := pki.LoadPair(filepath.Join(out, "gateway.pem"), filepath.Join(out, "gateway.key"))
	if err != nil {
		h.t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: h.caPool(), ServerName: "wardhub"}, site
}

func (h *testHub) caPool() *x509.CertPool {
	h.t.Helper()
	ca, err := hub.GatewayCA(h.data)
	if err != nil {
		h.t.Fatal(err)
	}
	return ca.Pool()
}

// client starts a tunnel client to the hub with quick liveness settings
// unless opts changes them.
func (h *testHub) client(tlsConf *tls.Config, opts func(*tunnel.Options)) (*tunnel.Client, *prometheus.Registry) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	o := tunnel.Options{
		Addr: h.hubAddr(), TLS: tlsConf, Transport: tunnel.TransportQUIC,
		Logger: slog.New(slog.NewTextHandler(logTo(h.t), &slog.HandlerOptions{Level: slog.LevelInfo})), Registerer: reg,
	}
	if opts != nil {
		opts(&o)
	}
	c, err := tunnel.New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(context.Background())
	}()
	h.t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c, reg
}

// countingSink stores telemetry batches once per key and counts every
// arrival.
type countingSink struct {
	mu       sync.Mutex
	stored   map[string][]byte
	arrivals map[string]int
}

func newCountingSink() *countingSink {
	return &countingSink{stored: map[string][]byte{}, arrivals: map[string]int{}}
}

func (s *countingSink) Ingest(_ context.Context, site, key string, body []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := site + "/" + key
	s.arrivals[k]++
	if prev, ok := s.stored[k]; ok {
		if !bytes.Equal(prev, body) {
			return false, fmt.Errorf("key %s reused with other content", key)
		}
		return true, nil
	}
	s.stored[k] = append([]byte(nil), body...)
	return false, nil
}

func (s *countingSink) counts() (stored int, arrivals int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.arrivals {
		arrivals += n
	}
	return len(s.stored), arrivals
}

func (s *countingSink) has(site, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.stored[site+"/"+key]
	return ok
}

// upload posts one telemetry batch with key, within timeout.
func upload(c *tunnel.Client, key string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://wardhub/v1/telemetry", bytes.NewReader([]byte(`{"batch":"`+key+`"}`)))
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("hub answered %s: %s", resp.Status, b)
	}
	return nil
}

// fetch downloads a target within timeout and returns its bytes.
func fetch(c *tunnel.Client, name string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/tuf/targets/"+name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// waitFor polls cond every 20 ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// watchOpen samples the client's and the hub's open connections for
// site until stop is called, and reports the most it saw of each.
func watchOpen(h *testHub, c *tunnel.Client, site string) (stop func() (gw, hubMax int)) {
	var mu sync.Mutex
	gwMax, hubMax := 0, 0
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			g := c.Open()
			n := 0
			if srv := h.server(); srv != nil {
				n = srv.Stats().OpenBySite[site]
			}
			mu.Lock()
			gwMax, hubMax = max(gwMax, g), max(hubMax, n)
			mu.Unlock()
			select {
			case <-quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return gwMax, hubMax
	}
}

// testWriter sends log lines to the test log until the test ends, and
// drops them after, when stray goroutines of closed connections log.
type testWriter struct{ s *logSink }

type logSink struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

var sinks sync.Map // testing.TB -> *logSink

func logTo(t testing.TB) testWriter {
	if s, ok := sinks.Load(t); ok {
		return testWriter{s.(*logSink)}
	}
	s := &logSink{t: t}
	sinks.Store(t, s)
	t.Cleanup(func() {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
		sinks.Delete(t)
	})
	return testWriter{s}
}

func (w testWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if !w.s.done {
		w.s.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}
