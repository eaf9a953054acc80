// Package cache is the gateway's verified copy of the manufacturer's TUF
// repository and the serving path that hands it to devices.
//
// The Mirror refreshes metadata with go-tuf over the tunnel, stores the
// exact bytes go-tuf verified in badger, and serves them to devices as
// published: every N.root.json, exactly 404 for a root that does not exist
// yet, each target under every hash prefix its metadata lists, and request
// paths decoded from their escaped form once. A new state is published in
// one badger transaction written in the order targets roles, snapshot,
// roots, timestamp last; older consistent versions of snapshot, targets
// and delegated roles, and targets that a new state dropped, stay servable
// for MirrorOptions.Grace so a device mid-update can finish, and are then
// pruned. Nothing that go-tuf has not verified is stored or served.
//
// Targets are pulled through on demand: the first device request (or an
// explicit Prefetch) starts one upstream fill into the content-addressed
// blob store; every other request for the same target, concurrent or late,
// follows that fill and receives bytes as they arrive. A fill that is
// interrupted resumes with Range, checks Content-Range, restarts from zero
// when upstream ignores Range, and commits only when length and hashes
// match, so a truncated or tampered body is never cached and a device
// following it gets an aborted response rather than a clean end.
//
// # Guards against go-tuf v2.4.2
//
//   - A new Updater for every Refresh, with panics recovered at that
//     boundary (a validly signed root holding a malformed ed25519 key makes
//     Refresh panic).
//   - Metadata is fetched with the gateway's own HTTP client over the
//     tunnel, one deadline per request and no retries of its own.
//   - Targets are streamed into the blob store with length and hash checks;
//     DownloadTarget, which holds a whole file in memory, is never used.
//   - The trusted root, timestamp, snapshot and targets are persisted in
//     badger under "tuf/NAME/trusted/", not in the blob folder, so rollback
//     and freeze protection survive restarts and a wiped blob folder.
//   - Delegated targets roles are walked by the mirror itself. One go-tuf
//     Updater verifies a role reached through two delegators only against
//     the first; the mirror verifies such a role against every delegator and
//     refuses the whole update when the delegators disagree about the
//     role's keys, threshold, paths or terminating flag, because devices
//     running go-tuf would resolve it through whichever delegator they
//     happen to reach first.
//
// # Expiry policy
//
// The mirror never re-signs, extends or fakes freshness. The earliest
// expiry among the trusted root, timestamp, snapshot and targets roles
// (delegated roles included) decides the mirror's freshness:
//
//   - fresh: more than ExpiryWarning before that expiry. Everything is
//     offered and served.
//   - expiring: within ExpiryWarning of it (default 6h, while the hub
//     signs 24-hour timestamps and re-signs them before they expire). The
//     mirror raises an alert: the wardgate_tuf_expiry_alert gauge is 1, a
//     warning is logged at the transition and hourly while it lasts, and
//     Status reports the state, the role, the time and the last refresh
//     error. Offers and downloads go on.
//   - expired: upstream could not be refreshed before the expiry. The
//     TUF paths keep serving the verbatim bytes, so device TUF clients see
//     the real expiry and decide themselves. New offers stop
//     (OfferAllowed returns a reason). Downloads through the device API of
//     releases that were in the last verified state go on for
//     ExpiredDownloadGrace after the expiry (default 72h), so an install
//     that was offered before the expiry can finish; after that they get
//     503 with Retry-After and the reason, until a refresh succeeds.
//
// It does not decide who may download what: that is policy's job.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/blob"
)

// ErrNotFound is returned for metadata or targets the mirror lacks.
var ErrNotFound = errors.New("not in the mirror")

// Defaults of MirrorOptions.
const (
	DefaultGrace                = 24 * time.Hour
	DefaultExpiryWarning        = 6 * time.Hour
	DefaultExpiredDownloadGrace = 72 * time.Hour
	DefaultStallTimeout         = 30 * time.Second
	DefaultFillAttempts         = 5
	DefaultFailureBackoff       = 30 * time.Second
)

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
	// RequestTimeout bounds each metadata request and the wait for the
	// response headers of a target request.
	RequestTimeout time.Duration
	// Grace is how long superseded consistent metadata versions and
	// targets dropped by a newer state stay servable. Zero means
	// DefaultGrace.
	Grace time.Duration
	// ExpiryWarning is how long before the earliest trusted expiry the
	// mirror raises its alert. Zero means DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// ExpiredDownloadGrace is how long after that expiry the device API
	// still serves releases of the last verified state. Zero means
	// DefaultExpiredDownloadGrace; negative means none.
	ExpiredDownloadGrace time.Duration
	// StallTimeout is the window over which an upstream target body must
	// average at least 4 KiB/s. A slower body (a slow retrieval attack or a
	// dead link) is abandoned and the fill resumes with Range. Zero means
	// DefaultStallTimeout.
	StallTimeout time.Duration
	// FillAttempts is how many upstream requests one fill may make before
	// it fails. Zero means DefaultFillAttempts.
	FillAttempts int
	// FailureBackoff is how long after a failed fill devices asking for the
	// same target are told to come back later instead of starting another.
	// Zero means DefaultFailureBackoff; negative means none.
	FailureBackoff time.Duration
	// Online, when set, reports whether the upstream is reachable now (the
	// tunnel is connected). While it is not, a device asking for an
	// uncached target is told at once to come back later instead of
	// waiting for a fill that cannot start.
	Online     func() bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Target is a verified target of the mirror.
type Target struct {
	Path   string
	Length int64
	// Hashes maps algorithm names ("sha256", "sha512") to lowercase hex.
	Hashes map[string]string
	// Role is the targets role that lists it ("targets" or a delegated
	// role's name).
	Role string
	// Meta is the target's Wardgate custom metadata; HasMeta is false for
	// a target without it.
	Meta    TargetMeta
	HasMeta bool
}

// SHA256 returns the target's SHA-256 in lowercase hex.
func (t Target) SHA256() string { return t.Hashes["sha256"] }

// Status describes the mirror's last refresh and its freshness.
type Status struct {
	LastRefresh      time.Time `json:"last_refresh"`
	LastAttempt      time.Time `json:"last_attempt"`
	LastError        string    `json:"last_error,omitempty"`
	TimestampVersion int64     `json:"timestamp_version"`
	TimestampExpires time.Time `json:"timestamp_expires"`
	TargetsVersion   int64     `json:"targets_version"`
	Targets          int       `json:"targets"`
	// Freshness is "none" (no verified state), "fresh", "expiring" or
	// "expired"; see the package documentation.
	Freshness string `json:"freshness"`
	// Expires is the earliest expiry among the trusted roles, and
	// ExpiringRole the role that has it.
	Expires      time.Time `json:"expires"`
	ExpiringRole string    `json:"expiring_role,omitempty"`
	// Alert explains an expiring or expired state in words for the
	// operator; empty while fresh.
	Alert string `json:"alert,omitempty"`
	// OffersAllowed is false while expired; OfferBlockedReason says why.
	OffersAllowed      bool   `json:"offers_allowed"`
	OfferBlockedReason string `json:"offer_blocked_reason,omitempty"`
	// DownloadsUntil is, while expired, when downloads of the last
	// verified releases stop.
	DownloadsUntil time.Time `json:"downloads_until,omitzero"`
	// RunningFills is the number of upstream fills in progress.
	RunningFills int `json:"running_fills"`
	// LastFillError says why the last failed upstream fill of a target was
	// refused or given up, and LastFillErrorAt when; nothing of it was
	// cached.
	LastFillError   string    `json:"last_fill_error,omitempty"`
	LastFillErrorAt time.Time `json:"last_fill_error_at,omitzero"`
}

// Mirror is one upstream repository. It is safe for concurrent use;
// refreshes are serialised. Close it after use.
type Mirror struct {
	opts    MirrorOptions
	log     *slog.Logger
	metrics *mirrorMetrics
	prefix  string

	ctx    context.Context // ends at Close; parent of upstream fills
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	refreshMu sync.Mutex

	mu        sync.RWMutex
	targets   map[string]Target       // current, by target path
	served    map[string]servedTarget // consistent and plain names -> target
	bySHA     map[string]Target       // sha256 hex -> target, current or retired
	status    Status
	expiries  []roleExpiry
	alerted   string    // freshness last logged
	alertedAt time.Time // when it was logged

	fillMu   sync.Mutex
	failures map[string]time.Time // sha256 -> end of the failure backoff
	running  map[string]struct{}
}

// servedTarget is a target under one of its names, with the end of its
// grace period when a newer state dropped it (zero while current).
type servedTarget struct {
	t     Target
	until time.Time
}

// NewMirror opens the mirror's stored state.
func NewMirror(opts MirrorOptions) (*Mirror, error) {
	if opts.Name == "" || opts.DB == nil || opts.Blobs == nil {
		return nil, errors.New("mirror needs a name, a database and a blob store")
	}
	if opts.Client == nil {
		return nil, fmt.Errorf("mirror %s needs an HTTP client for upstream requests", opts.Name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
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
	defaults := []struct {
		v *time.Duration
		d time.Duration
	}{
		{&opts.Grace, DefaultGrace},
		{&opts.ExpiryWarning, DefaultExpiryWarning},
		{&opts.ExpiredDownloadGrace, DefaultExpiredDownloadGrace},
		{&opts.StallTimeout, DefaultStallTimeout},
		{&opts.FailureBackoff, DefaultFailureBackoff},
	}
	for _, d := range defaults {
		if *d.v == 0 {
			*d.v = d.d
		}
	}
	if opts.FillAttempts <= 0 {
		opts.FillAttempts = DefaultFillAttempts
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		opts:     opts,
		log:      opts.Logger.With("component", "mirror", "repository", opts.Name),
		prefix:   "tuf/" + opts.Name + "/",
		ctx:      ctx,
		cancel:   cancel,
		targets:  map[string]Target{},
		served:   map[string]servedTarget{},
		bySHA:    map[string]Target{},
		failures: map[string]time.Time{},
		running:  map[string]struct{}{},
	}
	var err error
	if m.metrics, err = newMirrorMetrics(opts.Registerer, opts.Name, m); err != nil {
		cancel()
		return nil, fmt.Errorf("registering mirror metrics: %w", err)
	}
	if err := m.loadPublished(); err != nil {
		cancel()
		return nil, err
	}
	return m, nil
}

// Run watches the mirror's freshness and prunes superseded versions until
// ctx ends. Freshness is also computed on every Status call; Run makes
// the transitions into logs even when no refresh happens.
func (m *Mirror) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		m.checkFreshness()
		if err := m.prune(); err != nil {
			m.log.Warn("pruning superseded TUF versions failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops every upstream fill (devices following one get an aborted
// response) and waits for them. It is safe to call more than once.
func (m *Mirror) Close() error {
	m.once.Do(func() {
		m.fillMu.Lock()
		m.cancel() // under fillMu, so no fill starts after it
		m.fillMu.Unlock()
		m.wg.Wait()
	})
	return nil
}

// Status returns the state of the last refresh and the current freshness.
func (m *Mirror) Status() Status {
	m.mu.RLock()
	st := m.status
	exp := m.expiries
	m.mu.RUnlock()
	m.fillMu.Lock()
	st.RunningFills = len(m.running)
	m.fillMu.Unlock()
	m.applyFreshness(&st, exp, m.opts.Now())
	return st
}

// Targets returns every verified target of the current state, sorted by
// path.
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

// Target returns the verified target at path in the current state.
func (m *Mirror) Target(p string) (Target, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.targets[p]
	return t, ok
}

// TargetBySHA256 returns the target with this SHA-256 (lowercase hex),
// from the current state or from an older state still in its grace
// period.
func (m *Mirror) TargetBySHA256(sha256hex string) (Target, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.bySHA[sha256hex]
	return t, ok
}

// Metadata returns the verified bytes of a metadata file as clients name
// it, decoded ("3.root.json", "timestamp.json", "7.snapshot.json",
// "2.team/a.json").
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
