package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/wardgate/wardgate/cache/blob"
	"github.com/wardgate/wardgate/gateway/store"
)

// crashChildEnv, when set, makes TestCrashChild run a gateway mirror
// process instead of a test: the JSON value is a crashChild.
const crashChildEnv = "WARDGATE_CACHE_CRASH_CHILD"

type crashChild struct {
	Dir      string `json:"dir"`
	Upstream string `json:"upstream"`
	Root     []byte `json:"root"`
	AddrFile string `json:"addr_file"`
}

// TestCrashChild is the gateway process that TestSIGKILLDuringFills kills.
// Run on its own it skips.
func TestCrashChild(t *testing.T) {
	raw := os.Getenv(crashChildEnv)
	if raw == "" {
		t.Skip("runs only as the child process of TestSIGKILLDuringFills")
	}
	var c crashChild
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	// The gateway's store does the same before every open.
	if err := store.RemoveEmptyMemtables(filepath.Join(c.Dir, "db"), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(c.Dir, "db")).WithLogger(nil).WithSyncWrites(true).
		WithMemTableSize(8 << 20).WithNumMemtables(2).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := blob.Open(filepath.Join(c.Dir, "blobs"), db, blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	go func() { _ = bs.Run(ctx) }()
	m, err := NewMirror(MirrorOptions{
		Name: repoName, DB: db, Blobs: bs, Client: &http.Client{}, BaseURL: c.Upstream, TrustedRoot: c.Root,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(), FailureBackoff: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, mirror: m, blobs: bs}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.AddrFile+".tmp", []byte(ln.Addr().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(c.AddrFile+".tmp", c.AddrFile); err != nil {
		t.Fatal(err)
	}
	_ = http.Serve(ln, http.HandlerFunc(g.serve)) // until SIGKILL
}

// throttled serves data with Range support at a bounded rate, so a fill
// lasts long enough to be killed in the middle.
type throttled struct {
	*bytes.Reader
}

func (t throttled) Read(p []byte) (int, error) {
	time.Sleep(4 * time.Millisecond)
	return t.Reader.Read(p[:min(len(p), 32<<10)])
}

// TestSIGKILLDuringFills kills the gateway process at random points while
// devices download targets it is still filling from upstream, restarts
// it on the same data folder, and checks that no device ever received a
// complete, cleanly ended body that fails its hash, and that devices get
// the right bytes once the gateway is back.
func TestSIGKILLDuringFills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a process many times")
	}
	r := newTUFRepo(t)
	var images map[string][]byte
	// Each trial publishes new targets, so the kill lands in their fills
	// rather than after they were cached.
	newImages := func(trial int) {
		images = map[string][]byte{
			fmt.Sprintf("t%d/big.img", trial): randomBytes(t, 6<<20),
			fmt.Sprintf("t%d/mid.img", trial): randomBytes(t, 2<<20),
		}
		for p, d := range images {
			r.addTarget(metadata.TARGETS, p, d, nil)
		}
		r.publish()
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := strings.TrimPrefix(req.URL.Path, "/")
		data := r.get(name)
		if data == nil {
			http.NotFound(w, req)
			return
		}
		var rs io.ReadSeeker = bytes.NewReader(data)
		if strings.HasPrefix(name, "targets/") {
			rs = throttled{bytes.NewReader(data)}
		}
		http.ServeContent(w, req, "", time.Time{}, rs)
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()

	const trials = 8
	clean, aborted := 0, 0
	for trial := range trials {
		newImages(trial)
		addr, stop := startCrashChild(t, dir, up.URL, r.rootBytes(1))
		var wg sync.WaitGroup
		var mu sync.Mutex
		for p, want := range images {
			for _, url := range []string{"http://" + addr + "/v1/blobs/sha256/" + sha256hex(want), "http://" + addr + "/tuf/" + repoName + "/targets/" + hashedName(p, sha256hex(want))} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get(url)
					if err != nil {
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil && resp.StatusCode == http.StatusOK:
						clean++
						if !bytes.Equal(body, want) {
							t.Errorf("trial %d: %s ended cleanly with %d bytes of sha256 %s, want %s", trial, url, len(body), sha256hex(body), sha256hex(want))
						}
					case err != nil:
						aborted++
					}
				}()
			}
		}
		time.Sleep(time.Duration(rand.IntN(900)) * time.Millisecond)
		stop()
		wg.Wait()
	}
	// Back up for good: every target is served whole and right.
	addr, stop := startCrashChild(t, dir, up.URL, r.rootBytes(1))
	defer stop()
	for _, want := range images {
		url := "http://" + addr + "/v1/blobs/sha256/" + sha256hex(want)
		var body []byte
		waitFor(t, "the restarted gateway to serve "+url, func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, err = io.ReadAll(resp.Body)
			return err == nil && resp.StatusCode == http.StatusOK
		})
		if !bytes.Equal(body, want) {
			t.Fatalf("after the crashes: %s served sha256 %s, want %s", url, sha256hex(body), sha256hex(want))
		}
	}
	t.Logf("%d trials: %d downloads ended cleanly with the right bytes, %d were cut by the kill", trials, clean, aborted)
	if aborted == 0 {
		t.Errorf("no download was cut by a kill in %d trials: the kills did not land during fills", trials)
	}
}

// startCrashChild starts the gateway process and returns its address and
// a function that SIGKILLs it and waits for it.
func startCrashChild(t *testing.T, dir, upstreamURL string, root []byte) (string, func()) {
	t.Helper()
	addrFile := filepath.Join(dir, "addr")
	_ = os.Remove(addrFile)
	cfg, err := json.Marshal(crashChild{Dir: dir, Upstream: upstreamURL, Root: root, AddrFile: addrFile})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+string(cfg))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	t.Cleanup(stop)
	var addr []byte
	waitFor(t, "the gateway process to listen", func() bool {
		addr, err = os.ReadFile(addrFile)
		if err != nil && cmd.ProcessState != nil {
			t.Fatalf("gateway process exited: %s", out.String())
		}
		return err == nil
	})
	return string(addr), stop
}
