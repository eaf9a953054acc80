package cache

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/blob"
)

// ServeMetadata writes the metadata file name exactly as upstream
// published it, or exactly 404 when the mirror lacks it (go-tuf treats
// any other status for a next root version as fatal).
func (m *Mirror) ServeMetadata(w http.ResponseWriter, r *http.Request, escapedName string) {
	name, err := url.PathUnescape(escapedName)
	if err != nil || name != path.Base(name) {
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
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(data)))
	m.metrics.served.WithLabelValues("metadata").Inc()
}

// ServeTarget writes the target named by its consistent-snapshot path
// ("dir/HASH.base", under any of the target's hashes) or by its plain
// path.
func (m *Mirror) ServeTarget(w http.ResponseWriter, r *http.Request, escapedPath string) {
	p, err := url.PathUnescape(escapedPath)
	if err != nil || p == "" || path.Clean("/"+p) != "/"+p {
		http.NotFound(w, r)
		return
	}
	m.mu.RLock()
	targetPath, ok := m.byHash[p]
	if !ok {
		if _, plain := m.targets[p]; plain {
			targetPath, ok = p, true
		}
	}
	t := m.targets[targetPath]
	m.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	ServeBlob(w, r, m.opts.Blobs, t.SHA256())
	m.metrics.served.WithLabelValues("target").Inc()
}

// ServeBlob writes a committed blob with Range, If-Range and
// If-None-Match support and an ETag of its SHA-256. A blob that is
// missing or not yet re-verified gets 503 with Retry-After, so the
// device comes back instead of giving up.
func ServeBlob(w http.ResponseWriter, r *http.Request, store *blob.Store, sha256hex string) {
	f, _, err := store.Open(sha256hex)
	switch {
	case errors.Is(err, blob.ErrNotFound), errors.Is(err, blob.ErrNotReady):
		w.Header().Set("Retry-After", "30")
		http.Error(w, fmt.Sprintf("blob %s is not cached yet; retry later", sha256hex), http.StatusServiceUnavailable)
		return
	case errors.Is(err, blob.ErrInvalid):
		http.NotFound(w, r)
		return
	case err != nil:
		http.Error(w, "opening blob failed", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"sha256:`+sha256hex+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, f.File)
}

type mirrorMetrics struct {
	refreshes      *prometheus.CounterVec
	expires        prometheus.Gauge
	targets        prometheus.Gauge
	targetBytes    prometheus.Counter
	targetFailures prometheus.Counter
	served         *prometheus.CounterVec
}

func newMirrorMetrics(reg prometheus.Registerer, name string) *mirrorMetrics {
	labels := prometheus.Labels{"repository": name}
	m := &mirrorMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_tuf_refreshes_total", Help: "TUF refreshes, by result.", ConstLabels: labels,
		}, []string{"result"}),
		expires: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tuf_timestamp_expiry_seconds", Help: "Unix time at which the trusted timestamp expires.", ConstLabels: labels,
		}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_tuf_targets", Help: "Verified targets in the mirror.", ConstLabels: labels,
		}),
		targetBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_tuf_target_fetched_bytes_total", Help: "Target bytes fetched from upstream and verified.", ConstLabels: labels,
		}),
		targetFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wardgate_tuf_target_failures_total", Help: "Target fetches refused for a wrong length or hash, or failed.", ConstLabels: labels,
		}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_mirror_requests_total", Help: "Mirror files served to devices, by kind.", ConstLabels: labels,
		}, []string{"kind"}),
	}
	reg.MustRegister(m.refreshes, m.expires, m.targets, m.targetBytes, m.targetFailures, m.served)
	return m
}
