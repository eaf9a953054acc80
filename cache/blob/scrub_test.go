package blob

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
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

func counterValue(tb testing.TB, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Errorf("reading counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

// scrubTrace records, from the scrub hook, the scrubbed bytes each time the
// scrub waits for a tick and when its first pass ends. It ignores later
// passes.
type scrubTrace struct {
	s    *Store
	mu   sync.Mutex
	at   []float64 // scrubbed bytes at each wait for a tick
	end  float64   // scrubbed bytes when the first pass ended
	done chan struct{}
}

func traceScrub(s *Store) *scrubTrace {
	tr := &scrubTrace{s: s, done: make(chan struct{})}
	s.scrubHook = tr.hook
	return tr
}

func (tr *scrubTrace) hook(point string) {
	var m dto.Metric
	_ = tr.s.m.scrubbedBytes.Write(&m)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	select {
	case <-tr.done:
		return
	default:
	}
	switch point {
	case "wait":
		tr.at = append(tr.at, m.GetCounter().GetValue())
	case "pass-done":
		tr.end = m.GetCounter().GetValue()
		close(tr.done)
	}
}

// waitPass waits for the end of the first scrub pass.
func (tr *scrubTrace) waitPass(t *testing.T) {
	t.Helper()
	select {
	case <-tr.done:
	case <-time.After(guard):
		t.Fatalf("the scrub did not finish a pass")
	}
}

// perTick returns the bytes read after each tick of the first pass.
func (tr *scrubTrace) perTick() []int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var reads []int64
	for i, v := range tr.at {
		next := tr.end
		if i+1 < len(tr.at) {
			next = tr.at[i+1]
		}
		reads = append(reads, int64(next-v))
	}
	return reads
}

// feedTicks sends ticks to the scrub whenever it waits for one, until the
// test ends.
func feedTicks(t *testing.T, s *Store) {
	ticks := make(chan time.Time)
	stop := make(chan struct{})
	s.scrubTicks = ticks
	go func() {
		for {
			select {
			case ticks <- time.Now():
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
}

func TestScrubRemovesDamagedBlobs(t *testing.T) {
	var ev events
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	env := newEnv(t, Options{
		OnEvent:       ev.record,
		Registerer:    reg,
		Logger:        slog.New(slog.NewJSONHandler(&logs, nil)),
		ScrubRate:     1 << 30,
		ScrubInterval: time.Hour,
	})
	s := env.store
	good := [][]byte{content(40, 50_000), content(41, 70_000)}
	var goodD []Digest
	for _, b := range good {
		goodD = append(goodD, fillWith(t, s, b))
	}
	flipped := content(42, 60_000)
	flippedD := fillWith(t, s, flipped)
	short := content(43, 60_000)
	shortD := fillWith(t, s, short)
	// Damage two files after their commit: one byte flipped in place, and
	// the last byte cut off.
	corrupt := bytes.Clone(flipped)
	corrupt[30_000] ^= 0x10
	if err := os.WriteFile(s.blobPath(flippedD.Hex()), corrupt, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(s.blobPath(shortD.Hex()), int64(len(short)-1)); err != nil {
		t.Fatal(err)
	}

	tr := traceScrub(s)
	runUntilReady(t, s)
	tr.waitPass(t)

	damaged := map[string]Digest{"flipped": flippedD, "truncated": shortD}
	for name, d := range damaged {
		sha := d.Hex()
		if s.Has(sha) {
			t.Errorf("Has(%s blob) after the scrub: got true, want false", name)
		}
		if _, _, err := s.Open(sha); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%s blob) after the scrub: got %v, want %v", name, err, ErrNotFound)
		}
		if _, err := os.Stat(s.blobPath(sha)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s blob's file after the scrub: got %v, want removed", name, err)
		}
		if got, want := ev.kinds(sha), []EventKind{EventCommitted, EventVerifyFailed}; !slices.Equal(got, want) {
			t.Errorf("events for the %s blob: got %v, want %v", name, got, want)
		}
		if reason := eventReason(&ev, sha, EventVerifyFailed); !strings.Contains(reason, "scrub") {
			t.Errorf("reason of the %s blob's removal: got %q, want it to name the scrub", name, reason)
		}
		if !loggedError(t, logs.String(), sha) {
			t.Errorf("log: no error record with sha256 %s for the %s blob in\n%s", sha, name, logs.String())
		}
	}
	for i, d := range goodD {
		mustEqual(t, "intact blob after the scrub", readBlob(t, s, d.Hex()), good[i])
		if got, want := ev.kinds(d.Hex()), []EventKind{EventCommitted}; !slices.Equal(got, want) {
			t.Errorf("events for intact blob %d: got %v, want %v", i, got, want)
		}
	}
	for name, want := range map[string]float64{
		"wardgate_blob_verification_failures_total": 2,
		"wardgate_blob_scrub_failures_total":        2,
		"wardgate_blob_scrub_passes_total":          1,
		// The truncated file fails on its size, before it is read.
		"wardgate_blob_scrubbed_bytes_total": 50_000 + 70_000 + 60_000,
		"wardgate_blob_unverified_blobs":     0,
		"wardgate_blob_blobs":                2,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	// The next request fills the blob again.
	mustEqual(t, "blob filled again after the scrub removed it", readBlob(t, s, fillWith(t, s, flipped).Hex()), flipped)
}

// eventReason returns the reason of the first event of kind for sha.
func eventReason(ev *events, sha string, kind EventKind) string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, e := range ev.got {
		if e.SHA256 == sha && e.Kind == kind {
			return e.Reason
		}
	}
	return ""
}

// loggedError reports whether the JSON log has an error record naming sha.
func loggedError(t *testing.T, log, sha string) bool {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var rec struct {
			Level  string `json:"level"`
			SHA256 string `json:"sha256"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec.Level == "ERROR" && rec.SHA256 == sha {
			return true
		}
	}
	return false
}

func TestScrubKeepsOpenReadersReading(t *testing.T) {
	var ev events
	env := newEnv(t, Options{OnEvent: ev.record, ScrubRate: 1 << 30, ScrubInterval: time.Hour})
	s := env.store
	b := content(44, 300_000)
	d := digestOf(b, true)
	f, err := s.Begin(d)
	if err != nil {
		t.Fatal(err)
	}
	follower := f.NewReader()
	defer follower.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	file, size, err := s.Open(d.Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	readers := map[string]io.Reader{"fill reader": follower, "opened file": file}
	heads := map[string][]byte{}
	for name, r := range readers {
		heads[name] = make([]byte, 1000)
		if _, err := io.ReadFull(r, heads[name]); err != nil {
			t.Fatalf("reading the head from the %s: %v", name, err)
		}
	}
	// Damage the file in place, so that both readers share its inode.
	disk, err := os.OpenFile(s.blobPath(d.Hex()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disk.WriteAt([]byte{^b[200_000]}, 200_000); err != nil {
		t.Fatal(err)
	}
	disk.Close()
	corrupt := bytes.Clone(b)
	corrupt[200_000] = ^b[200_000]

	tr := traceScrub(s)
	runUntilReady(t, s)
	tr.waitPass(t)

	if got, want := ev.kinds(d.Hex()), []EventKind{EventCommitted, EventVerifyFailed}; !slices.Equal(got, want) {
		t.Fatalf("events for the damaged blob: got %v, want %v", got, want)
	}
	if _, err := os.Stat(s.blobPath(d.Hex())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("damaged blob's file: got %v, want removed", err)
	}
	for name, r := range readers {
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Errorf("reading the %s to the end after the removal: %v", name, err)
		}
		got := append(heads[name], rest...)
		if int64(len(got)) != size {
			t.Errorf("%s after the removal: read %d bytes, want %d", name, len(got), size)
		}
		if !bytes.Equal(got, corrupt) {
			t.Errorf("%s after the removal: bytes differ from the file it opened", name)
		}
	}
}

func TestScrubReadsWithinBudget(t *testing.T) {
	tests := []struct {
		name     string
		rate     int64
		interval time.Duration
		blobs    int // of 256 KiB each
		perTick  int64
	}{
		// 640 KiB/s is below the 1 MiB/s floor, and the maximum wins.
		{"capped by ScrubRate", 640 << 10, time.Hour, 4, 65_536},
		// 4 MiB over one second is 4 MiB/s.
		{"spread over ScrubInterval", 64 << 20, time.Second, 16, 419_430},
		// 1 MiB over an hour is below the floor of 1 MiB/s.
		{"raised to the floor", 64 << 20, time.Hour, 4, 104_857},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Options{ScrubRate: tc.rate, ScrubInterval: tc.interval})
			s := env.store
			var total int64
			for i := range tc.blobs {
				total += int64(len(content(uint64(50+i), 256<<10)))
				fillWith(t, s, content(uint64(50+i), 256<<10))
			}
			tr := traceScrub(s)
			feedTicks(t, s)
			runUntilReady(t, s)
			tr.waitPass(t)

			reads := tr.perTick()
			for i, n := range reads {
				if n > tc.perTick {
					t.Errorf("tick %d: read %d bytes, want at most %d", i, n, tc.perTick)
				}
			}
			// Every tick but the last uses its whole budget, so the pass
			// needs exactly this many ticks.
			if want := int((total + tc.perTick - 1) / tc.perTick); len(reads) != want {
				t.Errorf("ticks in the pass: got %d, want %d for %d bytes at %d per tick", len(reads), want, total, tc.perTick)
			}
			if tr.end != float64(total) {
				t.Errorf("scrubbed bytes after the pass: got %v, want %d", tr.end, total)
			}
		})
	}
}

func TestCloseStopsScrub(t *testing.T) {
	var ev events
	env := newEnv(t, Options{OnEvent: ev.record, ScrubRate: 640 << 10, ScrubInterval: time.Hour})
	s := env.store
	b := content(60, 1<<20)
	d := fillWith(t, s, b)
	waits := make(chan struct{}, 16)
	s.scrubHook = func(point string) {
		if point == "wait" {
			waits <- struct{}{}
		}
	}
	ticks := make(chan time.Time, 1)
	s.scrubTicks = ticks
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	waitScrub := func(what string) {
		t.Helper()
		select {
		case <-waits:
		case <-time.After(guard):
			t.Fatalf("the scrub did not wait for %s", what)
		}
	}
	waitScrub("its first tick")
	ticks <- time.Now()
	// The scrub has read one budget of the blob and waits for the next.
	waitScrub("its second tick")

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(guard):
		// Endless budget lets a scrub that ignores Close finish, so that
		// the cleanup's Close returns and this failure is reported.
		close(ticks)
		t.Fatalf("Close did not return while the scrub waited for its read budget")
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run after Close: got %v, want nil", err)
	}
	if got := counterValue(t, s.m.scrubbedBytes); got != 65_536 {
		t.Errorf("scrubbed bytes: got %v, want one tick's budget of 65536", got)
	}
	// An interrupted check is not a failed one.
	if got, want := ev.kinds(d.Hex()), []EventKind{EventCommitted}; !slices.Equal(got, want) {
		t.Errorf("events for the blob: got %v, want %v", got, want)
	}
	cur, err := s.loadScrubCursor()
	if err != nil {
		t.Fatal(err)
	}
	if cur.finished || cur.last != "" {
		t.Errorf("scrub progress after Close: got finished %v after %q, want the pass unfinished before its first blob", cur.finished, cur.last)
	}
	s = env.open(t, Options{})
	select {
	case <-s.Ready():
	default:
		t.Fatalf("Ready after Close during a scrub: open, want closed")
	}
	mustEqual(t, "blob after reopen", readBlob(t, s, d.Hex()), b)
}

func TestScrubResumesAfterRestart(t *testing.T) {
	env := newEnv(t, Options{})
	s := env.store
	var shas []string
	for i := range 4 {
		shas = append(shas, fillWith(t, s, content(uint64(70+i), 64<<10)).Hex())
	}
	slices.Sort(shas)
	// One tick's budget is one blob: 640 KiB/s in ticks of 100 ms.
	opts := Options{ScrubRate: 640 << 10, ScrubInterval: time.Hour}
	s = env.reopen(t, true, opts)
	waits := make(chan struct{}, 16)
	s.scrubHook = func(point string) {
		if point == "wait" {
			waits <- struct{}{}
		}
	}
	ticks := make(chan time.Time, 1)
	s.scrubTicks = ticks
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	// Two ticks check two blobs, and the scrub then waits to read the third.
	for i := range 3 {
		select {
		case <-waits:
		case <-time.After(guard):
			t.Fatalf("the scrub did not wait for tick %d", i)
		}
		if i < 2 {
			ticks <- time.Now()
		}
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	first, err := s.loadScrubCursor()
	if err != nil {
		t.Fatal(err)
	}
	if first.finished || first.last != shas[1] {
		t.Fatalf("scrub progress after two blobs: got finished %v after %q, want unfinished after %q", first.finished, first.last, shas[1])
	}

	s = env.reopen(t, true, opts)
	tr := traceScrub(s)
	feedTicks(t, s)
	runUntilReady(t, s)
	tr.waitPass(t)
	if want := float64(2 * 64 << 10); tr.end != want {
		t.Errorf("bytes scrubbed after the restart: got %v, want %v for the two blobs not yet checked", tr.end, want)
	}
	cur, err := s.loadScrubCursor()
	if err != nil {
		t.Fatal(err)
	}
	if !cur.finished || !cur.start.Equal(first.start) {
		t.Errorf("scrub progress after the resumed pass: got finished %v, start %v, want finished, start %v", cur.finished, cur.start, first.start)
	}
}

func TestScrubOptions(t *testing.T) {
	env := newEnv(t, Options{})
	if got := env.store.opts.ScrubRate; got != 32<<20 {
		t.Errorf("default ScrubRate: got %d, want %d", got, 32<<20)
	}
	if got := env.store.opts.ScrubInterval; got != 24*time.Hour {
		t.Errorf("default ScrubInterval: got %v, want 24h", got)
	}
	env.store.Close()
	for _, interval := range []time.Duration{-time.Second, time.Millisecond} {
		if _, err := Open(env.store.dir, env.db, Options{ScrubInterval: interval}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open with ScrubInterval %v: got %v, want %v", interval, err, ErrInvalid)
		}
	}
}
