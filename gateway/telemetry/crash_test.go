package telemetry_test

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
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/gateway/store"
	"github.com/wardgate/wardgate/gateway/telemetry"
)

// The crash tests run the gateway side in a child process: the test binary
// re-runs itself with childEnv set, and childMain acts as the gateway's
// telemetry service (real badger, ingest endpoint on loopback, relay
// uploading to the parent's hub).
const childEnv = "WARDGATE_TELEMETRY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			return n
		}
	}
	return def
}

func childMain() int {
	dir, hubURL, addrFile := os.Getenv("TG_DIR"), os.Getenv("TG_HUB"), os.Getenv("TG_ADDRFILE")
	// badger memory-maps sparsely allocated files: opening it on a file
	// system with no room left faults the process, so exit first.
	if min := envInt("TG_MINFREE", 0) / 4; min > 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(dir), &st); err == nil && int64(st.Bavail)*int64(st.Bsize) < min {
			fmt.Fprintf(os.Stderr, "child: data directory %s has %d bytes free, need %d: free some space\n", dir, int64(st.Bavail)*int64(st.Bsize), min)
			return 5
		}
	}
	opts := dbOptions(dir)
	if envInt("TG_SMALLDB", 0) == 1 {
		opts = opts.WithMemTableSize(2 << 20).WithBaseTableSize(1 << 20).WithValueLogFileSize(4 << 20).WithBlockCacheSize(1 << 20).WithValueThreshold(64 << 10)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The gateway's store does the same before every open.
	if err := store.RemoveEmptyMemtables(dir, log); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 3
	}
	db, err := badger.Open(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: opening badger:", err)
		return 3
	}
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{
		Dir: dir, MinFreeBytes: envInt("TG_MINFREE", 1<<20), MaxBytes: envInt("TG_MAXBYTES", 64<<20), Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: opening queue:", err)
		return 3
	}
	up := &telemetry.HTTPUploader{Client: &http.Client{Transport: siteTransport{testSite}, Timeout: 2 * time.Second}, URL: hubURL}
	relay, err := telemetry.NewRelay(q, up, telemetry.RelayOptions{
		SiteID: testSite, Period: time.Second, MinCellDevices: 1, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		SealDelay: 20 * time.Millisecond, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: creating relay:", err)
		return 3
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: listening:", err)
		return 3
	}
	srv := &http.Server{Handler: telemetry.NewIngestHandler(q, headerIdentify, telemetry.IngestOptions{
		RatePerDevice: 1e6, Burst: 1e6, RetryAfter: time.Second, Logger: log,
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tmp := addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil || os.Rename(tmp, addrFile) != nil {
		fmt.Fprintln(os.Stderr, "child: writing address file failed")
		return 3
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go relay.Run(ctx)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = relay.Close()
	code := 0
	if err := relay.Flush(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "child: flush:", err)
		code = 4
	}
	_ = q.Close()
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "child: closing badger:", err)
		code = 4
	}
	return code
}

// gatewayProc runs childMain in a child process.
type gatewayProc struct {
	t      *testing.T
	dir    string
	hubURL string
	env    []string
	cmd    *exec.Cmd
	exited chan error
	addr   atomic.Pointer[string]
	stderr *syncBuffer
}

// syncBuffer is a bytes.Buffer safe to read while the child writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newGatewayProc(t *testing.T, dir, hubURL string, env ...string) *gatewayProc {
	g := &gatewayProc{t: t, dir: dir, hubURL: hubURL, env: env}
	none := ""
	g.addr.Store(&none)
	t.Cleanup(func() {
		if g.cmd != nil && g.exited != nil {
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
	})
	return g
}

func (g *gatewayProc) start() {
	g.t.Helper()
	if err := g.tryStart(); err != nil {
		g.t.Fatal(err)
	}
}

// tryStart starts the child and waits until it listens; it returns an
// error holding the child's stderr if the child exits first.
func (g *gatewayProc) tryStart() error {
	g.t.Helper()
	addrFile := filepath.Join(g.t.TempDir(), "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "TG_DIR="+g.dir, "TG_HUB="+g.hubURL, "TG_ADDRFILE="+addrFile)
	cmd.Env = append(cmd.Env, g.env...)
	g.stderr = &syncBuffer{}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting gateway process: %w", err)
	}
	g.cmd = cmd
	g.exited = make(chan error, 1)
	go func() { g.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil {
			a := string(b)
			g.addr.Store(&a)
			return nil
		}
		select {
		case err := <-g.exited:
			g.exited = nil
			return fmt.Errorf("gateway process exited before listening: %v\n%s", err, g.stderr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway process did not listen within 30s\n%s", g.stderr)
		}
	}
}

// kill sends SIGKILL and waits for the process to die.
func (g *gatewayProc) kill() {
	g.t.Helper()
	none := ""
	g.addr.Store(&none)
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
	g.exited = nil
}

// stop sends SIGTERM (the child flushes) and checks the exit status.
func (g *gatewayProc) stop() {
	g.t.Helper()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	err := <-g.exited
	g.exited = nil
	none := ""
	g.addr.Store(&none)
	if err != nil {
		g.t.Fatalf("gateway process exit after SIGTERM: got %v, want success\n%s", err, g.stderr)
	}
}

// alive reports whether the child is still running.
func (g *gatewayProc) alive() bool {
	select {
	case err := <-g.exited:
		g.exited = nil
		g.t.Errorf("gateway process died: %v\n%s", err, g.stderr)
		return false
	default:
		return true
	}
}

// fleet simulates devices that keep sending batches and resend each
// unacknowledged batch, with the same batch id, until it is acknowledged.
type fleet struct {
	addr     func() string
	stopping atomic.Bool
	wg       sync.WaitGroup
	client   *http.Client

	ackedEvents  atomic.Int64
	ackedSum     atomic.Int64
	ackedBatch   atomic.Int64
	status       sync.Map // status code -> *atomic.Int64
	lastErrBody  atomic.Pointer[string]
	noRetryAfter atomic.Int64
}

func startFleet(devices int, addr func() string) *fleet {
	f := &fleet{addr: addr, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: devices}}}
	for d := range devices {
		f.wg.Add(1)
		go f.device(d)
	}
	return f
}

func (f *fleet) count(code int) int64 {
	v, ok := f.status.Load(code)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (f *fleet) device(d int) {
	defer f.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(d), uint64(time.Now().UnixNano())))
	serial := fmt.Sprintf("SN-%06d", d)
	for n := 0; ; n++ {
		if f.stopping.Load() {
			return
		}
		events := 1 + rng.IntN(20)
		var sum int64
		evs := make([]map[string]any, events)
		for i := range evs {
			v := rng.IntN(100)
			sum += int64(v)
			evs[i] = map[string]any{"kind": "counter", "name": "dose.count", "value": v, "serial": serial}
		}
		body, _ := json.Marshal(map[string]any{"schema": 1, "batch_id": fmt.Sprintf("d%d-b%d", d, n), "events": evs})
		for {
			code, dup := f.post(serial, body)
			v, _ := f.status.LoadOrStore(code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			if code == http.StatusOK {
				// A duplicate response means an earlier attempt was stored
				// but its response was lost: it counts once, now.
				_ = dup
				f.ackedEvents.Add(int64(events))
				f.ackedSum.Add(sum)
				f.ackedBatch.Add(1)
				break
			}
			time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
		}
		time.Sleep(time.Duration(2+rng.IntN(8)) * time.Millisecond)
	}
}

func (f *fleet) post(serial string, body []byte) (int, bool) {
	addr := f.addr()
	if addr == "" {
		return 0, false
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/telemetry", bytes.NewReader(body))
	if err != nil {
		return 0, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-Serial", serial)
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		f.noRetryAfter.Add(1)
	}
	if resp.StatusCode != http.StatusOK {
		s := string(b)
		f.lastErrBody.Store(&s)
		return resp.StatusCode, false
	}
	var ir telemetry.IngestResponse
	_ = json.Unmarshal(b, &ir)
	return resp.StatusCode, ir.Duplicate
}

// finish stops new batches and waits until every batch is acknowledged.
func (f *fleet) finish(t *testing.T) {
	t.Helper()
	f.stopping.Store(true)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("devices still have unacknowledged batches after 60s")
	}
}

// flakyHub wraps the hub's upload endpoint to simulate a flapping tunnel:
// requests fail before reaching the store, or after it stored them (an
// unknown outcome for the gateway), and some are slow.
type flakyHub struct {
	next       http.Handler
	failBefore float64
	failAfter  float64
	maxDelay   time.Duration
	off        atomic.Bool
	before     atomic.Int64
	after      atomic.Int64
	dups       atomic.Int64
}

type captureWriter struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) { c.code = code }
func (c *captureWriter) Write(b []byte) (int, error) {
	return c.buf.Write(b)
}

func (f *flakyHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.maxDelay > 0 {
		time.Sleep(rand.N(f.maxDelay))
	}
	if !f.off.Load() && rand.Float64() < f.failBefore {
		f.before.Add(1)
		panic(http.ErrAbortHandler)
	}
	cw := &captureWriter{ResponseWriter: w, code: 200}
	f.next.ServeHTTP(cw, r)
	if bytes.Contains(cw.buf.Bytes(), []byte(`"duplicate":true`)) {
		f.dups.Add(1)
	}
	if !f.off.Load() && rand.Float64() < f.failAfter {
		f.after.Add(1)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(cw.code)
	_, _ = w.Write(cw.buf.Bytes())
}

// checkExactlyOnce compares the hub with what the devices saw acknowledged.
func checkExactlyOnce(t *testing.T, h *hub, f *fleet) {
	t.Helper()
	ctx := context.Background()
	ups, err := h.store.Uploads(ctx, testSite)
	if err != nil {
		t.Fatal(err)
	}
	var events uint64
	seqs := make(map[uint64]bool)
	for _, u := range ups {
		events += u.Events
		if seqs[u.Seq] {
			t.Errorf("upload seq %d stored twice", u.Seq)
		}
		seqs[u.Seq] = true
	}
	for s := uint64(1); s <= uint64(len(ups)); s++ {
		if !seqs[s] {
			t.Errorf("upload seq %d missing at the hub (have %d uploads)", s, len(ups))
		}
	}
	if want := uint64(f.ackedEvents.Load()); events != want {
		t.Errorf("hub events: got %d, want %d acknowledged to devices", events, want)
	}
	rows, err := h.store.Query(ctx, analytics.Query{Kind: "counter", Name: "dose.count", GroupBy: []string{analytics.DimMetric}})
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	var cellEvents uint64
	for _, r := range rows {
		sum += r.Sum
		cellEvents += r.Events
	}
	if want := f.ackedSum.Load(); int64(sum) != want || cellEvents != events {
		t.Errorf("hub cells: got sum %v over %d events, want %d over %d", sum, cellEvents, want, events)
	}
	t.Logf("%d batches, %d events acknowledged; %d uploads at the hub", f.ackedBatch.Load(), f.ackedEvents.Load(), len(ups))
}

func trials(t *testing.T) int {
	if testing.Short() {
		return 10
	}
	return 50
}

// killSwitch lets the hub kill the gateway process at a chosen point of an
// upload: as the request arrives, or after the store has made it durable
// but before the gateway hears back.
type killSwitch struct {
	mu    sync.Mutex
	phase string // "", "arrive" or "stored"
	kill  func()
	hits  map[string]int
}

func (k *killSwitch) arm(phase string, kill func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.phase, k.kill = phase, kill
}

func (k *killSwitch) at(phase string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.phase == phase && k.kill != nil {
		k.kill()
		k.kill, k.phase = nil, ""
		if k.hits == nil {
			k.hits = make(map[string]int)
		}
		k.hits[phase]++
	}
}

func (k *killSwitch) fired() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kill == nil
}

type killingHub struct {
	next http.Handler
	ks   *killSwitch
}

func (h killingHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.ks.at("arrive")
	cw := &captureWriter{ResponseWriter: w, code: 200}
	h.next.ServeHTTP(cw, r)
	h.ks.at("stored")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(cw.code)
	_, _ = w.Write(cw.buf.Bytes())
}

func runCrashTrials(t *testing.T, flaky *flakyHub) {
	h := newHub(t)
	ks := &killSwitch{}
	target := http.Handler(killingHub{next: h.srv.Config.Handler, ks: ks})
	if flaky != nil {
		flaky.next = target
		target = flaky
	}
	hubSrv := httptestServer(t, target)
	g := newGatewayProc(t, t.TempDir(), hubSrv+"/v1/telemetry")
	f := startFleet(6, func() string { return *g.addr.Load() })
	modes := map[string]int{}
	for range trials(t) {
		g.start()
		pid := g.cmd.Process
		mode := []string{"ingest", "ingest", "arrive", "stored"}[rand.IntN(4)]
		modes[mode]++
		if mode == "ingest" {
			time.Sleep(time.Duration(20+rand.IntN(300)) * time.Millisecond)
			if !g.alive() {
				break
			}
			g.kill()
			continue
		}
		ks.arm(mode, func() { _ = pid.Signal(syscall.SIGKILL) })
		for deadline := time.Now().Add(1500 * time.Millisecond); !ks.fired() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		ks.arm("", nil)
		g.kill()
	}
	t.Logf("trials by kill point: %v; kills inside an upload: %v", modes, ks.hits)
	if ks.hits["arrive"] == 0 || ks.hits["stored"] == 0 {
		t.Errorf("kills inside an upload: got %v, want some on arrival and some after storing", ks.hits)
	}
	g.start()
	f.finish(t)
	if flaky != nil {
		// Let the final flush through.
		flaky.off.Store(true)
	}
	g.stop()
	checkExactlyOnce(t, h, f)
	if f.ackedEvents.Load() == 0 {
		t.Fatal("no events were acknowledged: the trials tested nothing")
	}
}

func TestCrashSIGKILLDuringIngestAndUpload(t *testing.T) {
	runCrashTrials(t, nil)
}

func TestCrashWithFlappingTunnel(t *testing.T) {
	fl := &flakyHub{failBefore: 0.3, failAfter: 0.3, maxDelay: 30 * time.Millisecond}
	runCrashTrials(t, fl)
	if fl.after.Load() == 0 || fl.before.Load() == 0 {
		t.Errorf("flapping: got %d failures before and %d after storing, want some of each", fl.before.Load(), fl.after.Load())
	}
	t.Logf("flapping: %d failed before, %d after storing, %d duplicate responses", fl.before.Load(), fl.after.Load(), fl.dups.Load())
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
