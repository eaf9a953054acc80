package cache

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type rangeCase struct {
	name      string
	method    string
	hdr       []string
	status    int
	body      func(img []byte) []byte // nil: not checked
	parts     [][2]int                // multi-range parts, [start, end)
	contRange func(n int) string      // expected Content-Range, "" when none
	needsAll  bool                    // reads bytes past what a paused fill holds
}

func rangeCases(etag string) []rangeCase {
	slice := func(a, b int) func([]byte) []byte { return func(img []byte) []byte { return img[a:b] } }
	return []rangeCase{
		{name: "one range", hdr: []string{"Range", "bytes=0-99"}, status: 206, body: slice(0, 100),
			contRange: func(n int) string { return fmt.Sprintf("bytes 0-99/%d", n) }},
		{name: "two ranges", hdr: []string{"Range", "bytes=0-9,20-29"}, status: 206, parts: [][2]int{{0, 10}, {20, 30}}},
		{name: "unsatisfiable range", hdr: []string{"Range", "bytes=99999999-"}, status: 416,
			contRange: func(n int) string { return fmt.Sprintf("bytes */%d", n) }},
		{name: "empty suffix range", hdr: []string{"Range", "bytes=-0"}, status: 416,
			contRange: func(n int) string { return fmt.Sprintf("bytes */%d", n) }},
		{name: "empty suffix range beside a range", hdr: []string{"Range", "bytes=-00, 0-9"}, status: 206, body: slice(0, 10),
			contRange: func(n int) string { return fmt.Sprintf("bytes 0-9/%d", n) }},
		{name: "space in a suffix range", hdr: []string{"Range", "bytes=- 0"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "plus sign in a suffix range", hdr: []string{"Range", "bytes=-+0"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "unknown range unit", hdr: []string{"Range", "items=0-1"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "last before first", hdr: []string{"Range", "bytes=5-2"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "last before first past the end", hdr: []string{"Range", "bytes=99999999999-99999999998"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "too many ranges", hdr: []string{"Range", "bytes=0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0"}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "capitalised unit", hdr: []string{"Range", "Bytes=0-9"}, status: 206, body: slice(0, 10),
			contRange: func(n int) string { return fmt.Sprintf("bytes 0-9/%d", n) }},
		{name: "last position past int64", hdr: []string{"Range", "bytes=0-99999999999999999999"}, status: 206, needsAll: true,
			body:      func(img []byte) []byte { return img },
			contRange: func(n int) string { return fmt.Sprintf("bytes 0-%d/%d", n-1, n) }},
		{name: "suffix past int64", hdr: []string{"Range", "bytes=-99999999999999999999"}, status: 206, needsAll: true,
			body:      func(img []byte) []byte { return img },
			contRange: func(n int) string { return fmt.Sprintf("bytes 0-%d/%d", n-1, n) }},
		{name: "first position past int64", hdr: []string{"Range", "bytes=99999999999999999999-"}, status: 416,
			contRange: func(n int) string { return fmt.Sprintf("bytes */%d", n) }},
		{name: "If-Range with the ETag", hdr: []string{"Range", "bytes=10-19", "If-Range", etag}, status: 206, body: slice(10, 20)},
		{name: "If-None-Match with the ETag", hdr: []string{"If-None-Match", etag}, status: 304},
		{name: "HEAD", method: http.MethodHead, status: 200, body: func([]byte) []byte { return nil }},
		{name: "suffix range", hdr: []string{"Range", "bytes=-100"}, status: 206, needsAll: true,
			body:      func(img []byte) []byte { return img[len(img)-100:] },
			contRange: func(n int) string { return fmt.Sprintf("bytes %d-%d/%d", n-100, n-1, n) }},
		{name: "open range", hdr: []string{"Range", "bytes=100-"}, status: 206, needsAll: true,
			body: func(img []byte) []byte { return img[100:] }},
		{name: "If-Range with another ETag", hdr: []string{"Range", "bytes=10-19", "If-Range", `"sha256:00"`}, status: 200, needsAll: true,
			body: func(img []byte) []byte { return img }},
		{name: "whole body", status: 200, needsAll: true, body: func(img []byte) []byte { return img }},
	}
}

func checkRange(t *testing.T, url string, img []byte, tc rangeCase) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(tc.hdr); i += 2 {
		req.Header.Set(tc.hdr[i], tc.hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", tc.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading body: %v", tc.name, err)
	}
	if resp.StatusCode != tc.status {
		t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
	}
	if want := `"sha256:` + sha256hex(img) + `"`; resp.StatusCode != 416 && resp.Header.Get("ETag") != want {
		t.Errorf("%s: ETag %q, want %q", tc.name, resp.Header.Get("ETag"), want)
	}
	if tc.contRange != nil {
		if got, want := resp.Header.Get("Content-Range"), tc.contRange(len(img)); got != want {
			t.Errorf("%s: Content-Range %q, want %q", tc.name, got, want)
		}
	}
	if tc.method == http.MethodHead {
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(img)) {
			t.Errorf("HEAD: Content-Length %q, want %d", got, len(img))
		}
	}
	if tc.body != nil && !bytes.Equal(body, tc.body(img)) {
		t.Errorf("%s: body of %d bytes differs from the %d expected", tc.name, len(body), len(tc.body(img)))
	}
	if tc.parts != nil {
		_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("%s: Content-Type %q: %v", tc.name, resp.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i, p := range tc.parts {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("%s: part %d: %v", tc.name, i, err)
			}
			got, _ := io.ReadAll(part)
			if want := img[p[0]:p[1]]; !bytes.Equal(got, want) {
				t.Errorf("%s: part %d is %d bytes that differ from bytes %d-%d", tc.name, i, len(got), p[0], p[1]-1)
			}
			if cr, want := part.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", p[0], p[1]-1, len(img)); cr != want {
				t.Errorf("%s: part %d Content-Range %q, want %q", tc.name, i, cr, want)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("%s: more parts than the %d asked for", tc.name, len(tc.parts))
		}
	}
}

// TestDeviceDownloadRanges checks Range, If-Range, 206, 416, multi-range,
// HEAD and the ETag for a committed blob and for one that is still being
// filled from upstream.
func TestDeviceDownloadRanges(t *testing.T) {
	for _, mode := range []string{"committed", "filling"} {
		t.Run(mode, func(t *testing.T) {
			r, img := smallRepo(t)
			up := newUpstream(t, r)
			g := newGW(t, up)
			g.mustRefresh()
			etag := `"sha256:` + sha256hex(img) + `"`
			url := g.blobURL(img)
			release := make(chan struct{})
			if mode == "committed" {
				if err := g.mirror.Prefetch(t.Context(), "pump/pump.img"); err != nil {
					t.Fatal(err)
				}
				close(release)
			} else {
				up.hook(targetName("pump/pump.img", img), gated(img, len(img)/2, release))
				// A first request starts the fill; wait until it paused.
				go func() { _, _, _ = get(t, url) }()
				waitFillHolds(t, g, sha256hex(img), len(img)/2)
			}
			var wg sync.WaitGroup
			for _, tc := range rangeCases(etag) {
				if !tc.needsAll {
					t.Run(tc.name, func(t *testing.T) { checkRange(t, url, img, tc) })
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Run(tc.name, func(t *testing.T) { checkRange(t, url, img, tc) })
				}()
			}
			if mode == "filling" {
				if g.blobs.Has(sha256hex(img)) {
					t.Fatalf("blob committed before the upstream was released; the filling cases did not run against a fill")
				}
				close(release)
			}
			wg.Wait()
		})
	}
}

// TestBlobResponseRestoresNoDelay checks that a committed blob sent with
// Nagle's algorithm on leaves its keep-alive connection with TCP_NODELAY
// set again, so the next small response on it is not held back. It also
// checks that every body arrives whole.
func TestBlobResponseRestoresNoDelay(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	if err := g.mirror.Prefetch(t.Context(), "pump/pump.img"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	srv := httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return ConnContext(ctx, c)
	}
	srv.Start()
	defer srv.Close()
	url := srv.URL + strings.TrimPrefix(g.blobURL(img), g.srv.URL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i, rng := range []string{"", "bytes=10-19", ""} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := img
		if rng != "" {
			req.Header.Set("Range", rng)
			want = img[10:20]
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, want) {
			t.Fatalf("request %d (Range %q): %d bytes, err %v; want the %d expected bytes", i, rng, len(body), err, len(want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("%d server connections for three keep-alive requests, want 1", len(conns))
	}
	raw, err := conns[0].(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nodelay int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		nodelay, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); err != nil || serr != nil {
		t.Fatalf("reading TCP_NODELAY: %v %v", err, serr)
	}
	if nodelay == 0 {
		t.Fatal("TCP_NODELAY is off on the connection after the blob responses; a later small response would wait for an ACK")
	}
}

// TestUncachedHeadNoFetch checks that a HEAD, and a GET whose
// If-None-Match holds the ETag, of an uncached target are served from
// its signed metadata without an upstream fetch, and that a plain GET
// still pulls it through.
func TestUncachedHeadNoFetch(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	name := targetName("pump/pump.img", img)
	etag := `"sha256:` + sha256hex(img) + `"`
	for _, tc := range []struct {
		method, inm string
		status      int
	}{
		{http.MethodHead, "", http.StatusOK},
		{http.MethodGet, "W/" + etag, http.StatusNotModified},
		{http.MethodGet, `"sha256:00", ` + etag, http.StatusNotModified},
		{http.MethodHead, "*", http.StatusNotModified},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, g.blobURL(img), nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.inm != "" {
			req.Header.Set("If-None-Match", tc.inm)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s with If-None-Match %q: status %d, want %d", tc.method, tc.inm, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("ETag"); got != etag {
			t.Errorf("%s with If-None-Match %q: ETag %q, want %q", tc.method, tc.inm, got, etag)
		}
		if tc.status == http.StatusOK && resp.ContentLength != int64(len(img)) {
			t.Errorf("HEAD: Content-Length %d, want %d", resp.ContentLength, len(img))
		}
	}
	if n := up.count(name); n != 0 {
		t.Fatalf("%d upstream requests for the target after HEAD and conditional GETs, want 0", n)
	}
	resp, body, err := get(t, g.blobURL(img))
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
		t.Fatalf("GET: %d bytes, err %v; want 200 and the blob", len(body), err)
	}
	if n := up.count(name); n != 1 {
		t.Errorf("%d upstream requests after the GET, want 1", n)
	}
}

// TestMetadataRangeNormalized checks that metadata files get the same
// RFC 9110 Range handling as blobs: an empty suffix is unsatisfiable and
// an invalid range serves the whole file.
func TestMetadataRangeNormalized(t *testing.T) {
	r, _ := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	url := g.mirrorURL() + "/metadata/timestamp.json"
	resp, whole, err := get(t, url)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("timestamp.json: %v %v", resp, err)
	}
	for _, tc := range []struct {
		rng       string
		status    int
		contRange string
	}{
		{"bytes=-0", http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("bytes */%d", len(whole))},
		{"bytes=-+0", http.StatusOK, ""},
		{"Bytes=0-9", http.StatusPartialContent, fmt.Sprintf("bytes 0-9/%d", len(whole))},
	} {
		resp, body, err := get(t, url, "Range", tc.rng)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contRange {
			t.Errorf("Range %q: %d with Content-Range %q, want %d with %q", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contRange)
		}
		if tc.status == http.StatusOK && !bytes.Equal(body, whole) {
			t.Errorf("Range %q: body differs from the whole file", tc.rng)
		}
	}
}

// TestTwoRangeLinesServeWhole checks that a request with two Range field
// lines, which RFC 9110 does not allow, gets the whole blob whatever the
// order of the lines.
func TestTwoRangeLinesServeWhole(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	if err := g.mirror.Prefetch(t.Context(), "pump/pump.img"); err != nil {
		t.Fatal(err)
	}
	for _, lines := range [][]string{{"bytes=0-9", "items=0-1"}, {"items=0-1", "bytes=0-9"}} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, g.blobURL(img), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Range"] = lines
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
			t.Errorf("Range lines %q: status %d, %d bytes, err %v; want 200 and the whole blob", lines, resp.StatusCode, len(body), err)
		}
	}
}

// TestUncachedIfMatchFirst checks that If-Match is evaluated before
// If-None-Match on an uncached target, as on a cached one: a failing
// If-Match gives 412, not 304.
func TestUncachedIfMatchFirst(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	etag := `"sha256:` + sha256hex(img) + `"`
	resp, _, err := get(t, g.blobURL(img), "If-Match", `"sha256:00"`, "If-None-Match", etag)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("If-Match another tag with If-None-Match the ETag: status %d, want 412", resp.StatusCode)
	}
}

func TestCurlRangeDownload(t *testing.T) {
	needCurl(t)
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	body, status, err := curlGet(t, g.blobURL(img), "-r", "1000-1999")
	if err != nil || status != http.StatusPartialContent || !bytes.Equal(body, img[1000:2000]) {
		t.Fatalf("curl -r 1000-1999: status %d, %d bytes, err %v; want 206 and those bytes", status, len(body), err)
	}
	body, status, err = curlGet(t, g.blobURL(img), "-C", "-", "--fail")
	if err != nil || status != http.StatusOK || !bytes.Equal(body, img) {
		t.Fatalf("curl whole body: status %d, %d bytes, err %v", status, len(body), err)
	}
}

func TestRetryAfterHasJitter(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		s := RetryAfterSeconds(10 * time.Second)
		if s < 10 || s > 15 {
			t.Fatalf("Retry-After %d for a base of 10s, want 10 to 15", s)
		}
		seen[s] = true
	}
	if len(seen) < 2 {
		t.Errorf("200 Retry-After values took %d distinct values, want jitter", len(seen))
	}
	if s := RetryAfterSeconds(0); s < 1 {
		t.Errorf("Retry-After %d for a zero base, want at least 1", s)
	}
	rec := httptest.NewRecorder()
	RetryLater(rec, 30*time.Second, "blob %s is not cached yet", "abc")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("RetryLater: status %d, Retry-After %q; want 503 with a value", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestFailedFillRetryAfter: after an upstream fill fails, the
// next device is told to come back later (503, Retry-After) instead of
// starting another upstream fetch at once.
func TestFailedFillRetryAfter(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up, func(o *MirrorOptions, _ *blobOptions) { o.FailureBackoff = time.Hour })
	g.mustRefresh()
	name := targetName("pump/pump.img", img)
	up.hook(name, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusNotFound) })
	if _, _, err := get(t, g.blobURL(img)); err == nil {
		t.Fatalf("download of a target upstream lacks ended cleanly, want an aborted response")
	}
	waitFor(t, "the fill to end", func() bool { return g.blobs.Running(sha256hex(img)) == nil })
	resp, _, err := get(t, g.blobURL(img))
	if err != nil {
		t.Fatalf("download after a failed fill: %v, want 503 with Retry-After", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("download after a failed fill: %d with Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := up.count(name); n != 1 {
		t.Errorf("upstream requests: got %d, want 1 during the backoff", n)
	}
}

// TestBusyDownloadSendBuffer checks the tuning of download connections on
// real loopback sockets. A lone download keeps the kernel's autotuned send
// buffer, and one that starts while another runs gets busySendBuffer.
// Nagle is on while a plain connection sends a file and off after it, and
// a TLS connection keeps TCP_NODELAY throughout.
func TestBusyDownloadSendBuffer(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for downloads.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d downloads of earlier tests still in flight", downloads.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func() *net.TCPConn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s.(*net.TCPConn)
	}
	sockopt := func(c *net.TCPConn, level, opt int) int {
		t.Helper()
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
			t.Fatalf("getsockopt %d/%d: %v %v", level, opt, err, serr)
		}
		return v
	}
	request := func(c net.Conn) *http.Request {
		return httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ConnContext(t.Context(), c))
	}
	wmemMax, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(wmemMax)))
	if err != nil {
		t.Fatal(err)
	}
	// Linux caps the requested size at wmem_max and doubles it.
	busy := 2 * min(busySendBuffer, limit)

	lone, second, overTLS := accept(), accept(), accept()
	endLone := tuneDownload(request(lone), true)
	if got := sockopt(lone, syscall.SOL_SOCKET, syscall.SO_SNDBUF); got == busy {
		t.Errorf("a lone download's send buffer is %d, the busy size; want the kernel's autotuned buffer", got)
	}
	if sockopt(lone, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) != 0 {
		t.Error("TCP_NODELAY is on while a plain connection sends a file; want Nagle on")
	}
	endSecond := tuneDownload(request(second), true)
	if got := sockopt(second, syscall.SOL_SOCKET, syscall.SO_SNDBUF); got != busy {
		t.Errorf("a download that started beside another has a send buffer of %d, want %d", got, busy)
	}
	endTLS := tuneDownload(request(tls.Server(overTLS, &tls.Config{})), false)
	if got := sockopt(overTLS, syscall.SOL_SOCKET, syscall.SO_SNDBUF); got != busy {
		t.Errorf("a busy TLS download has a send buffer of %d, want %d", got, busy)
	}
	if sockopt(overTLS, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) == 0 {
		t.Error("TCP_NODELAY is off on a TLS connection; want it kept on")
	}
	if n := downloads.Load(); n != 3 {
		t.Errorf("%d downloads counted, want 3", n)
	}
	endLone()
	endSecond()
	endTLS()
	for _, c := range []*net.TCPConn{lone, second, overTLS} {
		if sockopt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) == 0 {
			t.Errorf("TCP_NODELAY is off on %s after its download ended", c.LocalAddr())
		}
	}
	if n := downloads.Load(); n != 0 {
		t.Errorf("%d downloads counted after all ended, want 0", n)
	}
}
