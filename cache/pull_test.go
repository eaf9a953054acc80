package cache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cache/blob"
)

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFillHolds waits until the running fill of sha has n bytes, reading
// them through a fill reader like a device would.
func waitFillHolds(t testing.TB, g *gw, sha string, n int) {
	t.Helper()
	var f *blob.Fill
	waitFor(t, "the fill to start", func() bool { f = g.blobs.Running(sha); return f != nil })
	rd := f.NewReader()
	defer rd.Close()
	if _, err := rd.ReadAt(make([]byte, 1), int64(n-1)); err != nil {
		t.Fatalf("waiting for %d bytes of the fill: %v", n, err)
	}
}

// gated serves data, pausing after the first n bytes until release is
// closed.
func gated(data []byte, n int, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(len(data)))
		_, _ = w.Write(data[:n])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(data[n:])
	}
}

func TestFiftyColdRequestsOneFetch(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	release := make(chan struct{})
	name := targetName("pump/pump.img", img)
	up.hook(name, gated(img, 16<<10, release))

	const devices = 50
	var wg sync.WaitGroup
	bodies := make([][]byte, devices)
	errs := make([]error, devices)
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *http.Response
			resp, bodies[i], errs[i] = get(t, g.blobURL(img))
			if errs[i] == nil && resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	waitFor(t, "50 devices following the fill", func() bool {
		return counterValue(t, g.reg, "wardgate_mirror_fill_followers_total") == devices
	})
	close(release)
	wg.Wait()
	for i := range devices {
		if errs[i] != nil || !bytes.Equal(bodies[i], img) {
			t.Errorf("device %d: err %v, %d bytes, sha256 %s, want %s", i, errs[i], len(bodies[i]), sha256hex(bodies[i]), sha256hex(img))
		}
	}
	if n := up.count(name); n != 1 {
		t.Errorf("upstream fetches of the target: got %d, want exactly 1", n)
	}
	// The commit's rename and index write may finish just after the
	// last body does.
	waitFor(t, "the target to be committed to the blob store", func() bool { return g.blobs.Has(sha256hex(img)) })
}

func TestLateJoinerStreamsDuringFill(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	release := make(chan struct{})
	const first = 20 << 10
	up.hook(targetName("pump/pump.img", img), gated(img, first, release))
	early, err := http.Get(g.blobURL(img))
	if err != nil {
		t.Fatal(err)
	}
	defer early.Body.Close()
	waitFillHolds(t, g, sha256hex(img), first)
	late, err := http.Get(g.blobURL(img))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Body.Close()
	for name, resp := range map[string]*http.Response{"early": early, "late": late} {
		buf := make([]byte, first)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || !bytes.Equal(buf, img[:first]) {
			t.Fatalf("%s device: reading the first %d bytes while the fill is paused: %v", name, first, err)
		}
	}
	close(release)
	for name, resp := range map[string]*http.Response{"early": early, "late": late} {
		rest, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(rest, img[first:]) {
			t.Errorf("%s device: rest of the body: err %v, %d bytes", name, err, len(rest))
		}
	}
}

// cut writes a raw HTTP/1.1 response whose body stops after n bytes and
// closes the connection; withLength sends the full Content-Length, and
// without it the body is delimited by the close, so the client sees a
// clean end of a short body.
func cut(w http.ResponseWriter, data []byte, n int, withLength bool) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nConnection: close\r\n")
	if withLength {
		fmt.Fprintf(buf, "Content-Length: %d\r\n", len(data))
	}
	fmt.Fprintf(buf, "\r\n")
	_, _ = buf.Write(data[:n])
	_ = buf.Flush()
}

func TestUpstreamFillResumeAndRefusal(t *testing.T) {
	type step func(w http.ResponseWriter, r *http.Request, data []byte)
	serve := func(w http.ResponseWriter, r *http.Request, data []byte) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
	ignoreRange := func(w http.ResponseWriter, r *http.Request, data []byte) {
		w.Header().Set("Content-Length", itoa(len(data)))
		_, _ = w.Write(data)
	}
	wrongRange := func(w http.ResponseWriter, r *http.Request, data []byte) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data)
	}
	truncCL := func(w http.ResponseWriter, r *http.Request, data []byte) { cut(w, data, len(data)/3, true) }
	truncNoCL := func(w http.ResponseWriter, r *http.Request, data []byte) { cut(w, data, len(data)/2, false) }
	tampered := func(w http.ResponseWriter, r *http.Request, data []byte) {
		evil := bytes.Clone(data)
		evil[len(evil)-1] ^= 1
		serve(w, r, evil)
	}
	long := func(w http.ResponseWriter, r *http.Request, data []byte) {
		_, _ = w.Write(data)
		endless(w, r)
	}
	slow := func(w http.ResponseWriter, r *http.Request, data []byte) { trickle(data, 50*time.Millisecond)(w, r) }

	cases := []struct {
		name      string
		steps     []step // one per upstream request; the last repeats
		cached    bool
		requests  int
		wantRange []string // Range header of each request
		restarts  float64  // -1: not checked
	}{
		{"truncated with Content-Length resumes with Range", []step{truncCL, serve}, true, 2, []string{"", "bytes=21845-"}, 0},
		{"truncated without Content-Length resumes with Range", []step{truncNoCL, serve}, true, 2, []string{"", "bytes=32768-"}, 0},
		{"upstream ignoring Range restarts from zero", []step{truncCL, ignoreRange}, true, 2, []string{"", "bytes=21845-"}, 1},
		{"a wrong Content-Range restarts from zero", []step{truncCL, wrongRange, serve}, true, 3, []string{"", "bytes=21845-", ""}, 1},
		{"always truncated is never cached", []step{truncNoCL}, false, 3, nil, -1},
		{"arbitrary software is never cached", []step{tampered}, false, 1, nil, 0},
		{"endless data is never cached", []step{long}, false, 1, nil, 0},
		{"slow retrieval is abandoned", []step{slow}, false, 3, nil, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, img := smallRepo(t)
			up := newUpstream(t, r)
			g := newGW(t, up, func(o *MirrorOptions, _ *blobOptions) {
				o.FillAttempts = 3
				o.StallTimeout = 300 * time.Millisecond
			})
			g.mustRefresh()
			var mu sync.Mutex
			var ranges []string
			var n atomic.Int32
			up.hook(targetName("pump/pump.img", img), func(w http.ResponseWriter, req *http.Request) {
				mu.Lock()
				ranges = append(ranges, req.Header.Get("Range"))
				mu.Unlock()
				i := int(n.Add(1)) - 1
				tc.steps[min(i, len(tc.steps)-1)](w, req, img)
			})
			resp, body, err := get(t, g.blobURL(img))
			complete := err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(body, img)
			if tc.cached && !complete {
				t.Fatalf("device download: err %v, %d bytes; want the whole verified body", err, len(body))
			}
			if !tc.cached && complete {
				t.Fatalf("device received a complete body from a bad upstream")
			}
			if !tc.cached && err == nil {
				t.Fatalf("device download of a bad fill ended cleanly with %d bytes, want an aborted response", len(body))
			}
			waitFor(t, "the fill to end", func() bool { return g.blobs.Running(sha256hex(img)) == nil })
			if got := g.blobs.Has(sha256hex(img)); got != tc.cached {
				t.Errorf("blob cached: got %v, want %v", got, tc.cached)
			}
			if got := int(n.Load()); got != tc.requests {
				t.Errorf("upstream requests: got %d, want %d", got, tc.requests)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.wantRange != nil && strings.Join(ranges, ",") != strings.Join(tc.wantRange, ",") {
				t.Errorf("Range headers sent upstream: got %q, want %q", ranges, tc.wantRange)
			}
			if got := counterValue(t, g.reg, "wardgate_tuf_target_restarts_total"); tc.restarts >= 0 && got != tc.restarts {
				t.Errorf("restarts from zero: got %v, want %v", got, tc.restarts)
			}
			if tc.cached {
				resp, body, err := get(t, g.blobURL(img))
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
					t.Errorf("download of the committed blob: err %v", err)
				}
			}
		})
	}
}

// TestLastByteWaitsForVerification: a device following a fill has read
// every byte but the last when the upstream sends a wrong last byte. The
// device must get an aborted response, never the whole body with a clean
// end, although the gateway streamed everything before it.
func TestLastByteWaitsForVerification(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	evil := bytes.Clone(img)
	evil[len(evil)-1] ^= 0xff
	// The upstream sends every byte, the wrong last one included, and then
	// keeps the response open, so the fill holds all bytes but cannot
	// check them until end closes.
	end := make(chan struct{})
	up.hook(targetName("pump/pump.img", img), func(w http.ResponseWriter, r *http.Request) {
		// Chunked, without Content-Length, so the body's end is the
		// terminating chunk that end releases.
		_, _ = w.Write(evil)
		w.(http.Flusher).Flush()
		select {
		case <-end:
		case <-r.Context().Done():
		}
	})
	resp, err := http.Get(g.blobURL(img))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, len(img)-1)
	if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, img[:len(img)-1]) {
		t.Fatalf("reading all but the last byte while the fill runs: %v", err)
	}
	waitFillHolds(t, g, sha256hex(img), len(img))
	type result struct {
		rest []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		rest, err := io.ReadAll(resp.Body)
		got <- result{rest, err}
	}()
	// The fill cannot be checked before end closes, so nothing may arrive
	// in this window; the window's length only bounds how long the test
	// looks.
	select {
	case res := <-got:
		t.Fatalf("device received %d more bytes (err %v) before the fill was checked, want it held back", len(res.rest), res.err)
	case <-time.After(300 * time.Millisecond):
	}
	close(end)
	res := <-got
	rest, err := res.rest, res.err
	if err == nil {
		t.Fatalf("download ended cleanly with %d more bytes after a wrong last byte, want an aborted response", len(rest))
	}
	if len(rest) != 0 {
		t.Errorf("device received %d bytes past the verified part, want none", len(rest))
	}
	if g.blobs.Has(sha256hex(img)) {
		t.Errorf("the tampered blob was cached")
	}
}
