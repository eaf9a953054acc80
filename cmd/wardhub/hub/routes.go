package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Upload limits. A telemetry batch is an aggregate of one period, so
// even a large site stays far below them.
const (
	maxTelemetryBody = 8 << 20
	maxResultBody    = 1 << 20
	maxKeyLen        = 200
)

// Notice is one message on a gateway's control stream, sent as a line of
// JSON.
type Notice struct {
	// Type is "metadata" (new TUF metadata published), "entitlement"
	// (entitlements changed), "withdrawn" (a release was withdrawn) or
	// "ping" (keeps the stream's idle timers apart from QUIC's).
	Type string `json:"type"`
	// Version is the new timestamp version for "metadata".
	Version int64 `json:"version,omitempty"`
	// Target names the release for "withdrawn".
	Target string `json:"target,omitempty"`
}

// Hello is the response to GET /v1/hello, the first request a gateway
// makes on every new connection: it proves that the hub accepts the
// gateway before anything else rides the connection.
type Hello struct {
	Site string `json:"site"`
	// CertificateNotAfter is when the certificate the connection was
	// authenticated with expires.
	CertificateNotAfter time.Time `json:"certificate_not_after"`
	// HubTime lets the gateway see a clock that is far off.
	HubTime time.Time `json:"hub_time"`
}

// routes serves the same handlers on both transports. Every route but
// enrolment needs an enrolled, unrevoked site with a valid certificate.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/enroll", s.serveEnrol)
	mux.HandleFunc("GET /v1/hello", s.guard(s.serveHello))
	mux.HandleFunc("POST /v1/renew", s.guard(s.serveRenew))
	mux.HandleFunc("GET /v1/tuf/metadata/{file}", s.guard(s.serveMetadata))
	mux.HandleFunc("GET /v1/tuf/targets/{path...}", s.guard(s.serveTarget))
	mux.HandleFunc("POST /v1/telemetry", s.guard(s.receiveTelemetry))
	mux.HandleFunc("POST /v1/install-results", s.guard(s.receiveInstallResult))
	mux.HandleFunc("GET /v1/control", s.guard(s.serveControl))
	mux.HandleFunc("POST /v1/control", s.guard(s.serveControl))
	return mux
}

func (s *Server) serveHello(w http.ResponseWriter, r *http.Request) {
	cert := r.TLS.PeerCertificates[0]
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Hello{Site: siteOf(r), CertificateNotAfter: cert.NotAfter, HubTime: time.Now().UTC()})
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name != path.Base(name) || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	s.serveFile(w, r, filepath.Join(s.opts.RepoDir, "metadata", name))
}

func (s *Server) serveTarget(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	if p == "" || path.Clean("/"+p) != "/"+p || strings.Contains(p, "\\") {
		http.NotFound(w, r)
		return
	}
	s.serveFile(w, r, filepath.Join(s.opts.RepoDir, "targets", filepath.FromSlash(p)))
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	f, err := os.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(largeWrites{w}, r, "", st.ModTime(), f)
}

// copyBufs hold the buffers of largeWrites.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// largeWrites copies a file body in 256 KiB writes instead of io.Copy's
// 32 KiB, so that HTTP/3 sends an eighth of the DATA frames and the
// gateway parses an eighth of the frame headers.
type largeWrites struct{ http.ResponseWriter }

func (w largeWrites) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w.ResponseWriter}, r, *buf)
}

func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > maxKeyLen {
		http.Error(w, "missing or oversized Idempotency-Key header: every upload needs one", http.StatusBadRequest)
		return "", false
	}
	return key, true
}

func (s *Server) receiveTelemetry(w http.ResponseWriter, r *http.Request) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	if s.opts.Telemetry == nil {
		http.Error(w, "this hub stores no telemetry", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTelemetryBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading telemetry batch: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	site := siteOf(r)
	dup, err := s.opts.Telemetry.Ingest(r.Context(), site, key, body)
	if err != nil {
		s.metrics.uploads.WithLabelValues("telemetry", "rejected").Inc()
		s.log.Warn("telemetry batch rejected", "site", site, "key", key, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.acceptUpload(w, "telemetry", dup, &s.stats.TelemetryBatches, &s.stats.TelemetryDuplicates)
}

// receiveInstallResult stores one install outcome under "ir/SITE/KEY";
// a repeated key changes nothing.
func (s *Server) receiveInstallResult(w http.ResponseWriter, r *http.Request) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxResultBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading install result: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	if !json.Valid(body) {
		http.Error(w, "install result is not valid JSON", http.StatusBadRequest)
		return
	}
	dbKey := []byte("ir/" + siteOf(r) + "/" + key)
	dup := false
	err = s.opts.DB.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(dbKey); err == nil {
			dup = true
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(dbKey, body)
	})
	if err != nil {
		http.Error(w, "storing install result failed", http.StatusInternalServerError)
		return
	}
	s.acceptUpload(w, "install_result", dup, &s.stats.InstallResults, &s.stats.InstallDuplicates)
}

// acceptUpload counts a stored or duplicate upload of kind in the hub's
// stats (stored and duplicates point into s.stats) and metrics, and
// answers the gateway with whether it was a duplicate.
func (s *Server) acceptUpload(w http.ResponseWriter, kind string, dup bool, stored, duplicates *int) {
	result := "stored"
	s.mu.Lock()
	if dup {
		*duplicates++
		result = "duplicate"
	} else {
		*stored++
	}
	s.mu.Unlock()
	s.metrics.uploads.WithLabelValues(kind, result).Inc()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"duplicate": dup})
}

// serveControl holds the response open and writes one JSON line per
// notice. A POST also carries the gateway's heartbeats in its body.
// HTTP/3 does not let a server open a request stream, so the gateway
// opens this one and the hub responds on it for as long as it lasts.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodPost {
		// The gateway's heartbeats: discarded; their packets are large
		// enough that a restarted hub responds to them with a stateless
		// reset, which QUIC's own small keep-alives do not get.
		go func() { _, _ = io.Copy(io.Discard, r.Body) }()
	}
	sub := s.notices.subscribe()
	defer s.notices.unsubscribe(sub)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	_ = enc.Encode(Notice{Type: "metadata", Version: s.currentTimestampVersion()})
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		var n Notice
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			n = Notice{Type: "ping"}
		case msg, ok := <-sub:
			if !ok {
				return
			}
			n = msg
		}
		if err := enc.Encode(n); err != nil {
			return
		}
		flusher.Flush()
	}
}

// watchRepository sends a "metadata" notice whenever the repository's
// timestamp version changes, which `wardhub repo add` does from another
// process.
func (s *Server) watchRepository(ctx context.Context) {
	last := s.currentTimestampVersion()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v := s.currentTimestampVersion()
		if v != last && v != 0 {
			last = v
			s.log.Info("repository published", "timestamp_version", v)
			s.Notify(Notice{Type: "metadata", Version: v})
		}
	}
}

func (s *Server) currentTimestampVersion() int64 {
	data, err := os.ReadFile(filepath.Join(s.opts.RepoDir, "metadata", "timestamp.json"))
	if err != nil {
		return 0
	}
	var ts struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if json.Unmarshal(data, &ts) != nil {
		return 0
	}
	return ts.Signed.Version
}

// broadcaster fans notices out to every control stream. A slow stream
// loses notices rather than blocking the others; the gateway re-checks
// metadata on every reconnect, so a lost notice delays nothing for long.
type broadcaster struct {
	mu     sync.Mutex
	subs   map[chan Notice]struct{}
	closed bool
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[chan Notice]struct{}{}} }

func (b *broadcaster) subscribe() chan Notice {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan Notice, 16)
	if b.closed {
		close(ch)
		return ch
	}
	b.subs[ch] = struct{}{}
	return ch
}

func (b *broadcaster) unsubscribe(ch chan Notice) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

func (b *broadcaster) publish(n Notice) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- n:
		default:
		}
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}
