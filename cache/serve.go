package cache

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/cache/blob"
)

// maxMetaName bounds a decoded metadata file name.
const maxMetaName = 512

// decodeMetaName decodes the escaped name of a metadata request once and
// checks it. Delegated role names may hold any character, "/" included,
// since they only name a key in badger; a name that could not be a TUF
// metadata file is refused.
func decodeMetaName(escaped string) (string, bool) {
	name, err := url.PathUnescape(escaped)
	if err != nil || len(name) > maxMetaName || !strings.HasSuffix(name, ".json") || len(name) == len(".json") {
		return "", false
	}
	if strings.ContainsAny(name, "\x00") {
		return "", false
	}
	return name, true
}

// decodeTargetPath decodes the escaped path of a target request once: a
// relative, slash-separated, clean path.
func decodeTargetPath(escaped string) (string, bool) {
	p, err := url.PathUnescape(escaped)
	if err != nil || p == "" || len(p) > 4096 || strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return p, true
}

// ServeMetadata writes the metadata file named by escapedName exactly as
// upstream published it, or exactly 404 when the mirror lacks it: go-tuf
// treats any other status for a next root version as fatal.
func (m *Mirror) ServeMetadata(w http.ResponseWriter, r *http.Request, escapedName string) {
	name, ok := decodeMetaName(escapedName)
	if !ok {
		http.NotFound(w, r)
		return
	}
	data, err := m.Metadata(name)
	if errors.Is(err, ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		m.log.Error("reading mirrored metadata failed", "file", name, "err", err)
		http.Error(w, "reading metadata failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	m.metrics.served.WithLabelValues("metadata").Inc()
}

// ServeTarget writes the target named by its consistent-snapshot path
// ("dir/HASH.base", under any of the target's hashes) or by its plain
// path, from the current state or from an older one still in its grace
// period. An uncached target is pulled through.
func (m *Mirror) ServeTarget(w http.ResponseWriter, r *http.Request, escapedPath string) {
	p, ok := decodeTargetPath(escapedPath)
	if !ok {
		http.NotFound(w, r)
		return
	}
	m.mu.RLock()
	st, ok := m.served[p]
	m.mu.RUnlock()
	if !ok || (!st.until.IsZero() && !m.opts.Now().Before(st.until)) {
		http.NotFound(w, r)
		return
	}
	m.ServeTargetBlob(w, r, st.t)
	m.metrics.served.WithLabelValues("target").Inc()
}

// ServeTargetBlob writes the bytes of t with Range, If-Range,
// If-None-Match, 206, 416 and multi-range support and an ETag of its
// SHA-256. A committed blob is served from its file (sendfile where the
// connection allows); an uncached one is pulled through, and this device
// receives the bytes as the one upstream fetch writes them. If that fetch
// fails, the response is aborted, never ended cleanly, so the device
// cannot take a short or wrong body for the whole. When the target cannot
// be served now the answer is 503 with a jittered Retry-After.
func (m *Mirror) ServeTargetBlob(w http.ResponseWriter, r *http.Request, t Target) {
	f, fill, err := m.openOrPull(t)
	var later *RetryLaterError
	switch {
	case errors.As(err, &later):
		RetryLater(w, later.After, "%s", later.Error())
		return
	case err != nil:
		m.log.Error("serving target failed", "target", t.Path, "err", err)
		http.Error(w, "serving target failed", http.StatusInternalServerError)
		return
	}
	setBlobHeaders(w, t.SHA256())
	if f != nil {
		defer f.Close()
		serveFile(w, r, f.File)
		return
	}
	m.metrics.followers.Inc()
	dropEmptySuffixRanges(r, t.Length)
	defer tuneDownload(r, false)()
	body := &fillBody{r: fill.NewReaderContext(r.Context()), fill: fill, ctx: r.Context(), size: t.Length}
	defer body.r.Close()
	http.ServeContent(w, r, "", time.Time{}, body)
	if err := body.failure(); err != nil && !errors.Is(err, context.Canceled) && r.Context().Err() == nil {
		m.log.Warn("aborting a device download: the upstream fetch it followed failed", "target", t.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// fillBody is what http.ServeContent reads while a fill runs. It holds
// back the blob's last byte until the fill has committed: ServeContent
// stops after Content-Length bytes and never reads to the end, so without
// this a device could receive every byte of a body that then fails its
// hash, and a clean end. It also remembers the first read error, which
// ServeContent drops, so the handler can abort the response.
//
// NOTE: a device that assembles a blob from several range requests may
// take earlier ranges from a fill that later fails; only the range with
// the last byte waits for verification, so such a device must check the
// whole blob's hash itself (TUF clients do).
type fillBody struct {
	r    *blob.Reader
	fill *blob.Fill
	ctx  context.Context
	size int64
	pos  int64

	mu  sync.Mutex
	err error
}

func (b *fillBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	last := b.size - 1
	switch {
	case b.pos >= last:
		select {
		case <-b.fill.Done():
		case <-b.ctx.Done():
			return 0, b.record(b.ctx.Err())
		}
		if err := b.fill.Err(); err != nil {
			return 0, b.record(err)
		}
	case b.pos+int64(len(p)) > last:
		p = p[:last-b.pos]
	}
	n, err := b.r.Read(p)
	b.pos += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		b.record(err)
	}
	return n, err
}

func (b *fillBody) Seek(off int64, whence int) (int64, error) {
	pos, err := b.r.Seek(off, whence)
	if err == nil {
		b.pos = pos
	}
	return pos, err
}

func (b *fillBody) record(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *fillBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func setBlobHeaders(w http.ResponseWriter, sha256hex string) {
	h := w.Header()
	h.Set("ETag", `"sha256:`+sha256hex+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Accept-Ranges", "bytes")
}

// dropEmptySuffixRanges removes the suffix ranges of length zero
// ("bytes=-0") from r's Range header. RFC 9110 makes them unsatisfiable,
// but http.ServeContent responds to one with 206 and a Content-Range past
// the end. When no range remains, the header requests the first byte past
// the end instead, to which ServeContent responds with 416 and
// "bytes */size". ServeContent still checks If-Range first.
func dropEmptySuffixRanges(r *http.Request, size int64) {
	h := r.Header.Get("Range")
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || !strings.Contains(spec, "-0") {
		return
	}
	var keep []string
	for _, part := range strings.Split(spec, ",") {
		p := strings.TrimSpace(part)
		if n, isSuffix := strings.CutPrefix(p, "-"); isSuffix && strings.Trim(n, "0") == "" && n != "" {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		keep = []string{strconv.FormatInt(size, 10) + "-"}
	}
	r.Header.Set("Range", "bytes="+strings.Join(keep, ","))
}

type connKey struct{}

// ConnContext is an http.Server ConnContext hook that records each
// connection in its requests' context, so that a blob response can tune
// the TCP connection it goes out on.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// serveFile writes a committed blob file.
func serveFile(w http.ResponseWriter, r *http.Request, f *os.File) {
	if st, err := f.Stat(); err == nil {
		dropEmptySuffixRanges(r, st.Size())
	}
	defer tuneDownload(r, true)()
	http.ServeContent(w, r, "", time.Time{}, f)
}

// busySendBuffer is the socket send buffer of a device connection that
// starts a download while another download runs. Linux doubles it for
// its own bookkeeping, so about 512 KiB may be queued: at the sub-
// millisecond round trips of a clinical VLAN that is more than one
// connection's share of the link when several devices download.
const busySendBuffer = 256 << 10

// downloads counts the blob downloads in flight in this process.
var downloads atomic.Int64

// tuneDownload prepares the TCP connection of one blob download and
// returns the function that ends it, to be deferred until the body is
// written.
//
// A lone download keeps the kernel's send buffer autotuning, which grows
// the buffer to what the path's latency needs. A download that starts
// while others run gets a fixed busySendBuffer instead: the autotuned
// buffers of a ward of devices would reach 4 MiB each (tcp_wmem), pinning
// kernel memory and spreading the bytes in flight far beyond the CPU
// caches. On loopback with 64 clients this raised throughput 2.5 times
// and lowered the CPU per byte by 40 % (docs/BENCHMARKS.md). Once set, the buffer stays fixed
// for the connection's life.
//
// When the body goes out by sendfile on a plain TCP connection, Nagle's
// algorithm is turned on for it and off again after it. Go sets
// TCP_NODELAY on every connection, so the partial segment at the end of
// each sendfile call goes out on its own. nginx holds such segments with
// TCP_CORK while it sends a file. Setting TCP_NODELAY again at the end
// sends what is still held at once. TLS connections copy and encrypt
// instead and keep TCP_NODELAY: there Nagle measured slower.
func tuneDownload(r *http.Request, sendfile bool) (end func()) {
	n := downloads.Add(1)
	end = func() { downloads.Add(-1) }
	var tc *net.TCPConn
	plain := false
	switch c := r.Context().Value(connKey{}).(type) {
	case *net.TCPConn:
		tc, plain = c, true
	case *tls.Conn:
		tc, _ = c.NetConn().(*net.TCPConn)
	}
	if tc == nil || r.Method != http.MethodGet {
		return end
	}
	if n > 1 {
		_ = tc.SetWriteBuffer(busySendBuffer)
	}
	if sendfile && plain && tc.SetNoDelay(false) == nil {
		return func() {
			_ = tc.SetNoDelay(true)
			downloads.Add(-1)
		}
	}
	return end
}

// RetryLater answers 503 with a Retry-After of base plus up to half of it
// again at random, so a ward of devices told to come back does not come
// back in the same second.
func RetryLater(w http.ResponseWriter, base time.Duration, format string, args ...any) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(base)))
	http.Error(w, fmt.Sprintf(format, args...)+"; retry later", http.StatusServiceUnavailable)
}

// RetryAfterSeconds returns base, rounded up to whole seconds and at least
// one, plus a random jitter of up to half of it.
func RetryAfterSeconds(base time.Duration) int {
	s := max(1, int((base+time.Second-1)/time.Second))
	return s + rand.IntN(s/2+1)
}
