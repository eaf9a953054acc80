// Package cache is the gateway's verified copy of the manufacturer's
// TUF repository. The Mirror refreshes metadata with go-tuf over the
// tunnel, stores the exact bytes that go-tuf verified, fetches each
// target into the content-addressed blob store with length and hash
// checks, and serves both to devices exactly as published. Nothing that
// go-tuf has not verified is stored or served.
//
// It does not decide who may download what: that is policy's job.
package cache

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/wardgate/wardgate/cache/blob"
)

// ErrNotFound is returned for metadata or targets the mirror lacks.
var ErrNotFound = errors.New("not in the mirror")

// MirrorOptions configures a Mirror.
type MirrorOptions struct {
	// Name is the repository's name on the mirror's paths.
	Name string
	// DB stores the verified metadata under "tuf/NAME/".
	DB *badger.DB
	// Blobs stores the targets.
	Blobs *blob.Store
	// Client sends upstream requests; its transport is the tunnel.
	Client *http.Client
	// BaseURL is the upstream repository, such as "https://wardhub/v1/tuf".
	BaseURL string
	// TrustedRoot is the root that enrolment delivered; it is used only
	// until a trusted root is stored.
	TrustedRoot []byte
	// RequestTimeout bounds each metadata request; target downloads get
	// a deadline scaled by their length.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	Now            func() time.Time
}

// Target is a verified target of the mirror.
type Target struct {
	Path   string
	Length int64
	// Hashes maps algorithm names ("sha256", "sha512") to lowercase hex.
	Hashes map[string]string
	// Meta is the target's Wardgate custom metadata; HasMeta is false for
	// a target without it.
	Meta    TargetMeta
	HasMeta bool
}

// SHA256 returns the target's SHA-256 in lowercase hex.
func (t Target) SHA256() string { return t.Hashes["sha256"] }

// Status describes the mirror's last refresh.
type Status struct {
	LastRefresh      time.Time `json:"last_refresh"`
	LastAttempt      time.Time `json:"last_attempt"`
	LastError        string    `json:"last_error,omitempty"`
	TimestampVersion int64     `json:"timestamp_version"`
	TimestampExpires time.Time `json:"timestamp_expires"`
	TargetsVersion   int64     `json:"targets_version"`
	Targets          int       `json:"targets"`
}

// Mirror is one upstream repository. It is safe for concurrent use;
// refreshes are serialised.
type Mirror struct {
	opts    MirrorOptions
	log     *slog.Logger
	metrics *mirrorMetrics
	prefix  string

	refreshMu sync.Mutex

	mu      sync.RWMutex
	targets map[string]Target // by target path
	byHash  map[string]string // "dir/HASH.base" -> target path
	status  Status
}

// NewMirror opens the mirror's stored state.
func NewMirror(opts MirrorOptions) (*Mirror, error) {
	if opts.Name == "" || opts.DB == nil || opts.Blobs == nil {
		return nil, errors.New("mirror needs a name, a database and a blob store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 15 * time.Second
	}
	m := &Mirror{
		opts:    opts,
		log:     opts.Logger.With("component", "mirror", "repository", opts.Name),
		metrics: newMirrorMetrics(opts.Registerer, opts.Name),
		prefix:  "tuf/" + opts.Name + "/",
	}
	if err := m.loadPublished(); err != nil {
		return nil, err
	}
	return m, nil
}

// Status returns the state of the last refresh.
func (m *Mirror) Status() Status {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.status
}

// Targets returns every verified target, sorted by path.
func (m *Mirror) Targets() []Target {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Target, 0, len(m.targets))
	for _, t := range m.targets {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Target returns the verified target at path.
func (m *Mirror) Target(p string) (Target, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.targets[p]
	return t, ok
}

// Metadata returns the verified bytes of a metadata file as clients name
// it ("3.root.json", "timestamp.json", "7.snapshot.json").
func (m *Mirror) Metadata(name string) ([]byte, error) {
	var out []byte
	err := m.opts.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(m.prefix + "meta/" + name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// Refresh runs one TUF update with a fresh go-tuf Updater, fetches new
// targets into the blob store, and publishes the new state. On any
// failure the last good state stays published and the error says why.
func (m *Mirror) Refresh(ctx context.Context) (err error) {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	start := m.opts.Now()
	defer func() {
		m.mu.Lock()
		m.status.LastAttempt = start
		if err != nil {
			m.status.LastError = err.Error()
		} else {
			m.status.LastError = ""
			m.status.LastRefresh = start
		}
		m.mu.Unlock()
		result := "ok"
		if err != nil {
			result = "error"
		}
		m.metrics.refreshes.WithLabelValues(result).Inc()
	}()

	work, err := os.MkdirTemp("", "wardgate-tuf-")
	if err != nil {
		return fmt.Errorf("creating TUF work folder: %w", err)
	}
	defer os.RemoveAll(work)
	if err := m.writeTrusted(work); err != nil {
		return err
	}
	fetch := &tunnelFetcher{ctx: ctx, client: m.opts.Client, timeout: m.opts.RequestTimeout, roots: map[int64][]byte{}}
	up, err := m.runUpdater(work, fetch)
	if err != nil {
		return err
	}
	trusted := up.GetTrustedMetadataSet()
	if trusted.Targets[metadata.TARGETS] == nil || trusted.Snapshot == nil || trusted.Timestamp == nil {
		return errors.New("TUF refresh finished without targets, snapshot or timestamp")
	}
	files, err := readVerified(work)
	if err != nil {
		return err
	}
	targets, err := m.collectTargets(trusted.Targets[metadata.TARGETS].Signed.Targets)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if err := m.fetchTarget(ctx, t); err != nil {
			return err
		}
	}
	if err := m.publish(trusted, files, fetch.roots); err != nil {
		return err
	}
	m.setTargets(targets, trusted)
	return nil
}

// runUpdater builds a new Updater for this refresh only and runs it.
// go-tuf v2.4.2 panics on a validly signed root that carries a malformed
// ed25519 key, so a panic here is reported as a refused update.
func (m *Mirror) runUpdater(work string, fetch *tunnelFetcher) (up *updater.Updater, err error) {
	defer func() {
		if r := recover(); r != nil {
			up, err = nil, fmt.Errorf("TUF update refused: verifier panicked on upstream metadata: %v", r)
		}
	}()
	root, err := os.ReadFile(filepath.Join(work, "root.json"))
	if err != nil {
		return nil, err
	}
	cfg, err := config.New(m.opts.BaseURL+"/metadata", root)
	if err != nil {
		return nil, fmt.Errorf("configuring TUF updater: %w", err)
	}
	cfg.LocalMetadataDir = work
	cfg.LocalTargetsDir = filepath.Join(work, "targets")
	cfg.RemoteTargetsURL = m.opts.BaseURL + "/targets"
	cfg.Fetcher = fetch
	up, err = updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("loading trusted TUF metadata: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("TUF update refused: %w", err)
	}
	return up, nil
}

// writeTrusted seeds go-tuf's metadata folder with the stored trusted
// state, so rollback protection survives restarts, or with the enrolment
// root when nothing is stored yet.
func (m *Mirror) writeTrusted(work string) error {
	found := false
	err := m.opts.DB.View(func(txn *badger.Txn) error {
		for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
			item, err := txn.Get([]byte(m.prefix + "trusted/" + role + ".json"))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			data, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if role == metadata.ROOT {
				found = true
			}
			if err := os.WriteFile(filepath.Join(work, role+".json"), data, 0o600); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading trusted TUF state: %w", err)
	}
	if found {
		return nil
	}
	if len(m.opts.TrustedRoot) == 0 {
		return errors.New("no trusted TUF root: enrol the gateway with `wardgate enroll` first")
	}
	return os.WriteFile(filepath.Join(work, "root.json"), m.opts.TrustedRoot, 0o600)
}

// readVerified reads the files go-tuf persisted: the exact bytes it
// downloaded and verified.
func readVerified(work string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		data, err := os.ReadFile(filepath.Join(work, role+".json"))
		if err != nil {
			return nil, fmt.Errorf("reading verified %s metadata: %w", role, err)
		}
		out[role] = data
	}
	return out, nil
}

func (m *Mirror) collectTargets(files map[string]*metadata.TargetFiles) (map[string]Target, error) {
	out := make(map[string]Target, len(files))
	for p, tf := range files {
		t := Target{Path: p, Length: tf.Length, Hashes: map[string]string{}}
		for alg, h := range tf.Hashes {
			t.Hashes[alg] = hex.EncodeToString(h)
		}
		if len(tf.Hashes["sha256"]) != sha256.Size {
			m.log.Warn("target skipped: it has no SHA-256 to store it under", "target", p)
			continue
		}
		meta, ok, err := ParseTargetMeta(tf.Custom)
		if err != nil {
			m.log.Warn("target custom metadata ignored", "target", p, "err", err)
		}
		t.Meta, t.HasMeta = meta, ok && err == nil
		out[p] = t
	}
	return out, nil
}

// publish stores the verified state in one transaction, so devices see
// either the old state or the whole new one. Older versioned snapshot
// and targets files stay, so a device that fetched the previous
// timestamp can still finish.
//
// TODO: versioned files are never pruned; prune them after a grace
// period.
func (m *Mirror) publish(trusted trustedSet, files map[string][]byte, roots map[int64][]byte) error {
	rootVersion := trusted.Root.Signed.Version
	snapVersion := trusted.Snapshot.Signed.Version
	targetsVersion := trusted.Targets[metadata.TARGETS].Signed.Version
	return m.opts.DB.Update(func(txn *badger.Txn) error {
		set := func(k string, v []byte) error { return txn.Set([]byte(m.prefix+k), v) }
		steps := []struct {
			key  string
			data []byte
		}{
			{"meta/" + strconv.FormatInt(targetsVersion, 10) + ".targets.json", files[metadata.TARGETS]},
			{"meta/" + strconv.FormatInt(snapVersion, 10) + ".snapshot.json", files[metadata.SNAPSHOT]},
		}
		for v, data := range roots {
			steps = append(steps, struct {
				key  string
				data []byte
			}{"meta/" + strconv.FormatInt(v, 10) + ".root.json", data})
		}
		steps = append(steps, struct {
			key  string
			data []byte
		}{"meta/" + strconv.FormatInt(rootVersion, 10) + ".root.json", files[metadata.ROOT]})
		steps = append(steps, struct {
			key  string
			data []byte
		}{"meta/timestamp.json", files[metadata.TIMESTAMP]})
		for _, s := range steps {
			if err := set(s.key, s.data); err != nil {
				return err
			}
		}
		if err := m.storeInitialRoot(txn); err != nil {
			return err
		}
		for role, data := range files {
			if err := set("trusted/"+role+".json", data); err != nil {
				return err
			}
		}
		return nil
	})
}

// storeInitialRoot keeps the enrolment root as 1.root.json (or whatever
// version it is), since devices start their root chain there.
func (m *Mirror) storeInitialRoot(txn *badger.Txn) error {
	if len(m.opts.TrustedRoot) == 0 {
		return nil
	}
	root, err := metadata.Root().FromBytes(m.opts.TrustedRoot)
	if err != nil {
		return fmt.Errorf("parsing enrolment root: %w", err)
	}
	key := []byte(m.prefix + "meta/" + strconv.FormatInt(root.Signed.Version, 10) + ".root.json")
	if _, err := txn.Get(key); err == nil {
		return nil
	}
	return txn.Set(key, m.opts.TrustedRoot)
}

type trustedSet = trustedmetadata.TrustedMetadata

func (m *Mirror) setTargets(targets map[string]Target, trusted trustedSet) {
	byHash := map[string]string{}
	for p, t := range targets {
		for _, h := range t.Hashes {
			byHash[hashedName(p, h)] = p
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.targets, m.byHash = targets, byHash
	m.status.TimestampVersion = trusted.Timestamp.Signed.Version
	m.status.TimestampExpires = trusted.Timestamp.Signed.Expires
	m.status.TargetsVersion = trusted.Targets[metadata.TARGETS].Signed.Version
	m.status.Targets = len(targets)
	m.metrics.expires.Set(float64(trusted.Timestamp.Signed.Expires.Unix()))
	m.metrics.targets.Set(float64(len(targets)))
}

// loadPublished rebuilds the in-memory target index from the stored
// trusted targets role at start.
func (m *Mirror) loadPublished() error {
	var targetsData, tsData []byte
	err := m.opts.DB.View(func(txn *badger.Txn) error {
		get := func(k string) ([]byte, error) {
			item, err := txn.Get([]byte(m.prefix + k))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return item.ValueCopy(nil)
		}
		var err error
		if targetsData, err = get("trusted/targets.json"); err != nil {
			return err
		}
		tsData, err = get("trusted/timestamp.json")
		return err
	})
	if err != nil {
		return fmt.Errorf("loading mirror state: %w", err)
	}
	if targetsData == nil || tsData == nil {
		m.targets, m.byHash = map[string]Target{}, map[string]string{}
		return nil
	}
	tm, err := metadata.Targets().FromBytes(targetsData)
	if err != nil {
		return fmt.Errorf("parsing stored targets: %w", err)
	}
	ts, err := metadata.Timestamp().FromBytes(tsData)
	if err != nil {
		return fmt.Errorf("parsing stored timestamp: %w", err)
	}
	targets, err := m.collectTargets(tm.Signed.Targets)
	if err != nil {
		return err
	}
	m.setTargets(targets, trustedSet{Timestamp: ts, Targets: map[string]*metadata.Metadata[metadata.TargetsType]{metadata.TARGETS: tm}})
	return nil
}

// hashedName is the consistent-snapshot name of a target under one of
// its hashes: "dir/HASH.base".
func hashedName(targetPath, hexHash string) string {
	dir, base := path.Split(targetPath)
	return dir + hexHash + "." + base
}

// digestOf returns the blob digest of a target.
func digestOf(t Target) (blob.Digest, error) {
	d := blob.Digest{Length: t.Length}
	var err error
	if d.SHA256, err = hex.DecodeString(t.Hashes["sha256"]); err != nil || len(d.SHA256) != sha256.Size {
		return d, fmt.Errorf("target %s has an invalid sha256", t.Path)
	}
	if h, ok := t.Hashes["sha512"]; ok {
		if d.SHA512, err = hex.DecodeString(h); err != nil || len(d.SHA512) != sha512.Size {
			return d, fmt.Errorf("target %s has an invalid sha512", t.Path)
		}
	}
	return d, nil
}
