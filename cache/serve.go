package cache

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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
		jsonError(w, http.StatusNotFound, "not a TUF metadata file name: "+escapedName)
		return
	}
	data, err := m.Metadata(name)
	if errors.Is(err, ErrNotFound) {
		// Exactly 404: go-tuf takes it as "no newer root" and any other
		// status as fatal.
		jsonError(w, http.StatusNotFound, "no metadata "+name+" in the mirror")
		return
	}
	if err != nil {
		m.log.Error("reading mirrored metadata failed", "file", name, "err", err)
		jsonError(w, http.StatusInternalServerError, "reading metadata failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	NormalizeRange(r, int64(len(data)))
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
		jsonError(w, http.StatusNotFound, "not a target path: "+escapedPath)
		return
	}
	m.mu.RLock()
	st, ok := m.served[p]
	m.mu.RUnlock()
	if !ok || (!st.until.IsZero() && !m.opts.Now().Before(st.until)) {
		jsonError(w, http.StatusNotFound, "no target "+p+" in the mirror's current or recent states")
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
	if m.answerFromMetadata(w, r, t) {
		return
	}
	f, fill, err := m.openOrPull(t)
	var later *RetryLaterError
	switch {
	case errors.As(err, &later):
		RetryLater(w, later.After, "%s", later.Reason)
		return
	case err != nil:
		m.log.Error("serving target failed", "target", t.Path, "err", err)
		jsonError(w, http.StatusInternalServerError, "serving target failed")
		return
	}
	// The committed file and the fill both hold t.Length bytes.
	NormalizeRange(r, t.Length)
	setBlobHeaders(w, t.SHA256())
	if f != nil {
		defer f.Close()
		serveFile(w, r, f.File)
		return
	}
	m.metrics.followers.Inc()
	defer tuneDownload(r, false)()
	body := &fillBody{r: fill.NewReaderContext(r.Context()), fill: fill, ctx: r.Context(), size: t.Length}
	defer body.r.Close()
	http.ServeContent(w, r, "", time.Time{}, body)
	if err := body.failure(); err != nil && !errors.Is(err, context.Canceled) && r.Context().Err() == nil {
		m.log.Warn("aborting a device download: the upstream fetch it followed failed", "target", t.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// answerFromMetadata responds to a HEAD, or to a GET whose If-None-Match
// matches the blob's ETag, from the signed metadata alone when the target
// is neither cached nor being fetched. So a device that checks a size or
// revalidates its copy does not start a fetch of the whole blob over the
// hospital's uplink. It reports whether it wrote the response.
func (m *Mirror) answerFromMetadata(w http.ResponseWriter, r *http.Request, t Target) bool {
	sha := t.SHA256()
	if r.Method != http.MethodHead && r.Header.Get("If-None-Match") == "" {
		return false
	}
	if r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		// These are evaluated before If-None-Match (RFC 9110 section
		// 13.2.2), so ServeContent decides on the blob.
		return false
	}
	if m.opts.Blobs.Has(sha) || m.opts.Blobs.Running(sha) != nil {
		return false
	}
	setBlobHeaders(w, sha)
	if etagMatches(r.Header.Get("If-None-Match"), blobETag(sha)) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	if r.Method != http.MethodHead {
		return false
	}
	w.Header().Set("Content-Length", strconv.FormatInt(t.Length, 10))
	w.WriteHeader(http.StatusOK)
	return true
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 section
// 13.1.2) of the header's list to etag.
func etagMatches(header, etag string) bool {
	for _, tag := range strings.Split(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
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

// blobETag is the ETag of the blob with this SHA-256 (lowercase hex).
func blobETag(sha256hex string) string { return `"sha256:` + sha256hex + `"` }

func setBlobHeaders(w http.ResponseWriter, sha256hex string) {
	h := w.Header()
	h.Set("ETag", blobETag(sha256hex))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Accept-Ranges", "bytes")
}

// maxRanges is the most byte ranges one request may ask for; a request
// with more is served whole. RFC 9110 section 14.2 lets a server ignore a
// Range header, and a response of thousands of tiny ranges costs more
// than the blob.
const maxRanges = 64

// NormalizeRange rewrites r's Range header into the canonical form that
// http.ServeContent handles as RFC 9110 section 14 requires, for a body
// of size bytes. ServeContent alone accepts "+" signs and spaces inside a
// range, responds to "bytes=-0" with 206 and a Content-Range past the
// end, and rejects numbers too large for int64 with 416 instead of
// reading them as "to the end".
//
//   - The header is removed, so the blob is served whole, for a unit
//     other than bytes (compared without case), for a range set that is
//     not valid (a last position before the first included), and for two
//     Range field lines. Section 14.2 lets a server ignore Range.
//   - Positions past the end are clamped, so "bytes=0-99999999999999999999"
//     is the whole blob.
//   - Unsatisfiable ranges (a first byte at or past the end, a suffix of
//     zero) are dropped. When none remains, the header requests the
//     first byte past the end, to which ServeContent responds with 416
//     and "Content-Range: bytes */size".
//   - More than maxRanges ranges remove the header.
func NormalizeRange(r *http.Request, size int64) {
	h := r.Header.Get("Range")
	if strings.TrimSpace(h) == "" || len(r.Header.Values("Range")) > 1 {
		// Range is a single field value: two field lines are invalid.
		r.Header.Del("Range")
		return
	}
	unit, set, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		r.Header.Del("Range")
		return
	}
	var keep []string
	count := 0
	for _, part := range strings.Split(set, ",") {
		spec := strings.Trim(part, " \t")
		if spec == "" {
			continue // the list syntax allows empty elements
		}
		count++
		first, last, ok := strings.Cut(spec, "-")
		if !ok || !allDigits(first) || !allDigits(last) || first == "" && last == "" || first != "" && last != "" && lessDigits(last, first) {
			// Invalid syntax, or a last position before the first.
			r.Header.Del("Range")
			return
		}
		switch {
		case first == "":
			if n := clampedInt(last, size); n > 0 {
				keep = append(keep, "-"+strconv.FormatInt(n, 10))
			}
		case clampedInt(first, size) >= size:
			// The first byte is past the end: unsatisfiable.
		case last == "":
			keep = append(keep, strconv.FormatInt(clampedInt(first, size), 10)+"-")
		default:
			a, b := clampedInt(first, size), clampedInt(last, size-1)
			keep = append(keep, strconv.FormatInt(a, 10)+"-"+strconv.FormatInt(b, 10))
		}
	}
	switch {
	case count == 0 || count > maxRanges:
		r.Header.Del("Range")
	case len(keep) == 0:
		r.Header.Set("Range", "bytes="+strconv.FormatInt(size, 10)+"-")
	default:
		r.Header.Set("Range", "bytes="+strings.Join(keep, ","))
	}
}

// RangeIncludesFirstByte reports whether a request receives the first
// byte of a body of size bytes, after NormalizeRange rewrote its Range
// header. It does when it has no Range header, or when one of its ranges
// starts at byte 0 or is a suffix as long as the body.
func RangeIncludesFirstByte(r *http.Request, size int64) bool {
	set, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return true
	}
	for _, spec := range strings.Split(set, ",") {
		if strings.HasPrefix(spec, "0-") || spec == "-"+strconv.FormatInt(size, 10) {
			return size > 0
		}
	}
	return false
}

// allDigits reports whether s holds only ASCII digits ("" included).
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lessDigits reports whether the decimal number a is less than b, for
// digit strings of any length.
func lessDigits(a, b string) bool {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// clampedInt parses the decimal digits s, returning limit for any value
// above it, however many digits it has.
func clampedInt(s string, limit int64) int64 {
	s = strings.TrimLeft(s, "0")
	if len(s) > 18 {
		return limit
	}
	n, _ := strconv.ParseInt("0"+s, 10, 64)
	return min(n, limit)
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
// caches. On loopback with 64 clients this raised throughput about 2.5
// times and lowered the CPU per byte by about 43 % (docs/BENCHMARKS.md).
// Once set, the buffer stays fixed for the connection's life.
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
	done := func() { downloads.Add(-1) }
	var tc *net.TCPConn
	plain := false
	switch c := r.Context().Value(connKey{}).(type) {
	case *net.TCPConn:
		tc, plain = c, true
	case *tls.Conn:
		tc, _ = c.NetConn().(*net.TCPConn)
	}
	if tc == nil || r.Method != http.MethodGet {
		return done
	}
	if n > 1 {
		_ = tc.SetWriteBuffer(busySendBuffer)
	}
	if sendfile && plain && tc.SetNoDelay(false) == nil {
		return func() {
			_ = tc.SetNoDelay(true)
			done()
		}
	}
	return done
}

// RetryLater answers 503 with a Retry-After of base plus up to half of it
// again at random, so a ward of devices told to come back does not come
// back in the same second.
func RetryLater(w http.ResponseWriter, base time.Duration, format string, args ...any) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(base)))
	jsonError(w, http.StatusServiceUnavailable, fmt.Sprintf(format, args...)+"; retry later")
}

// jsonError writes status with a JSON body {"error": msg}, the form of
// every error of the device API.
func jsonError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// RetryAfterSeconds returns base, rounded up to whole seconds and at least
// one, plus a random jitter of up to half of it.
func RetryAfterSeconds(base time.Duration) int {
	s := max(1, int((base+time.Second-1)/time.Second))
	return s + rand.IntN(s/2+1)
}
