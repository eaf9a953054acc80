package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

type trustedSet = trustedmetadata.TrustedMetadata

// verifiedState is everything one refresh verified, ready to publish.
type verifiedState struct {
	trusted trustedSet
	files   map[string][]byte // top-level role -> verified bytes
	roots   map[int64][]byte  // every root version downloaded on the way
	roles   []loadedRole      // delegated roles, in walk order
	targets map[string]Target
}

// Refresh runs one TUF update with a fresh go-tuf Updater, walks the
// delegated targets roles, and publishes the new state. Targets are not
// fetched here: devices pull them through, and Prefetch fetches approved
// releases ahead of time. On any failure the last good state stays
// published and the error says why.
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
			// The caller logs the error; this line is for debugging alone.
			m.log.Debug("TUF update refused; the last verified state stays published", "err", err)
		}
		m.metrics.refreshes.WithLabelValues(result).Inc()
		m.checkFreshness()
	}()
	vs, err := m.verify(ctx)
	if err != nil {
		return err
	}
	if err := m.publish(vs); err != nil {
		return fmt.Errorf("publishing verified TUF state: %w", err)
	}
	return nil
}

// verify runs go-tuf and the delegation walk in a temporary folder seeded
// with the persisted trusted state.
func (m *Mirror) verify(ctx context.Context) (*verifiedState, error) {
	work, err := os.MkdirTemp("", "wardgate-tuf-")
	if err != nil {
		return nil, fmt.Errorf("creating TUF work folder: %w", err)
	}
	defer os.RemoveAll(work)
	if err := m.writeTrusted(work); err != nil {
		return nil, err
	}
	fetch := &tunnelFetcher{ctx: ctx, client: m.opts.Client, timeout: m.opts.RequestTimeout, roots: map[int64][]byte{}}
	trusted, err := m.runUpdater(work, fetch)
	if err != nil {
		return nil, err
	}
	if trusted.Targets[metadata.TARGETS] == nil || trusted.Snapshot == nil || trusted.Timestamp == nil {
		return nil, errors.New("TUF refresh finished without targets, snapshot or timestamp")
	}
	files, err := readVerified(work)
	if err != nil {
		return nil, err
	}
	roles, err := m.walkDelegations(&trusted, fetch)
	if err != nil {
		return nil, err
	}
	targets := m.collectTargets(&trusted, roles)
	return &verifiedState{trusted: trusted, files: files, roots: fetch.roots, roles: roles, targets: targets}, nil
}

// runUpdater builds a new Updater for this refresh only and runs it.
// go-tuf v2.4.2 panics on a validly signed root that carries a malformed
// ed25519 key, so a panic here is reported as a refused update.
func (m *Mirror) runUpdater(work string, fetch *tunnelFetcher) (ts trustedSet, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.metrics.panics.Inc()
			ts, err = trustedSet{}, fmt.Errorf("TUF update refused: verifier panicked on upstream metadata: %v", r)
		}
	}()
	root, err := os.ReadFile(filepath.Join(work, "root.json"))
	if err != nil {
		return trustedSet{}, err
	}
	cfg, err := config.New(m.opts.BaseURL+"/metadata", root)
	if err != nil {
		return trustedSet{}, fmt.Errorf("configuring TUF updater: %w", err)
	}
	cfg.LocalMetadataDir = work
	cfg.LocalTargetsDir = filepath.Join(work, "targets")
	cfg.RemoteTargetsURL = m.opts.BaseURL + "/targets"
	cfg.Fetcher = fetch
	up, err := updater.New(cfg)
	if err != nil {
		return trustedSet{}, fmt.Errorf("loading trusted TUF metadata: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return trustedSet{}, fmt.Errorf("TUF update refused: %w", err)
	}
	return up.GetTrustedMetadataSet(), nil
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

// collectTargets resolves every target path listed by any trusted role
// the way a device's TUF client would, so the mirror offers exactly what
// devices will accept.
func (m *Mirror) collectTargets(trusted *trustedSet, roles []loadedRole) map[string]Target {
	paths := map[string]struct{}{}
	for p := range trusted.Targets[metadata.TARGETS].Signed.Targets {
		paths[p] = struct{}{}
	}
	for _, r := range roles {
		for p := range r.md.Signed.Targets {
			paths[p] = struct{}{}
		}
	}
	out := make(map[string]Target, len(paths))
	for p := range paths {
		tf, role := resolveTarget(trusted, p)
		if tf == nil {
			continue
		}
		if t, ok := m.toTarget(p, role, tf); ok {
			out[p] = t
		}
	}
	return out
}

func (m *Mirror) toTarget(p, role string, tf *metadata.TargetFiles) (Target, bool) {
	t := Target{Path: p, Length: tf.Length, Hashes: map[string]string{}, Role: role}
	for alg, h := range tf.Hashes {
		t.Hashes[alg] = hex.EncodeToString(h)
	}
	if len(tf.Hashes["sha256"]) != sha256.Size {
		m.log.Warn("target skipped: it has no SHA-256 to store it under", "target", p)
		return Target{}, false
	}
	meta, ok, err := ParseTargetMeta(tf.Custom)
	if err != nil {
		m.log.Warn("target custom metadata ignored", "target", p, "err", err)
	}
	t.Meta, t.HasMeta = meta, ok && err == nil
	return t, true
}
