package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// approvedKey holds, under the mirror's prefix, the release paths that
// SetApproved last pinned.
const approvedKey = "approved"

// approvedReason is the pin reason of releases an approved rollout needs.
const approvedReason = "approved-release"

// ReleaseFiles returns the target at targetPath and the files that ship
// with it: the SBOM its metadata names and every target whose metadata
// names it as its release (SBOMs, advisories). They are cached, pinned and
// prefetched together.
func (m *Mirror) ReleaseFiles(targetPath string) ([]Target, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.targets[targetPath]
	if !ok {
		return nil, fmt.Errorf("release %q is not in the verified state: %w", targetPath, ErrNotFound)
	}
	out := []Target{t}
	if t.HasMeta && t.Meta.SBOM != "" {
		if sb, ok := m.targets[t.Meta.SBOM]; ok {
			out = append(out, sb)
		}
	}
	for _, o := range m.targets {
		if o.HasMeta && o.Meta.Release == targetPath && !slices.ContainsFunc(out, func(x Target) bool { return x.Path == o.Path }) {
			out = append(out, o)
		}
	}
	slices.SortFunc(out[1:], func(a, b Target) int {
		if a.Path < b.Path {
			return -1
		}
		return 1
	})
	return out, nil
}

// Prefetch pulls the releases at paths and their files into the cache
// ahead of their maintenance windows, joining fills that devices already
// started, and waits until every file is committed or ctx ends. The
// gateway calls it for approved releases; devices never wait for it.
func (m *Mirror) Prefetch(ctx context.Context, paths ...string) error {
	var errs []error
	for _, p := range paths {
		files, err := m.ReleaseFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range files {
			if err := m.prefetchOne(ctx, t); err != nil {
				errs = append(errs, fmt.Errorf("prefetching %s: %w", t.Path, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Mirror) prefetchOne(ctx context.Context, t Target) error {
	f, fill, err := m.openOrPull(t)
	if err != nil {
		return err
	}
	if f != nil {
		return f.Close()
	}
	select {
	case <-fill.Done():
		return fill.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PinRelease keeps the blobs of the release at targetPath and its files
// from eviction until UnpinRelease with the same reason. Pins are durable
// and may be taken before the blobs are cached.
func (m *Mirror) PinRelease(targetPath, reason string) error {
	files, err := m.ReleaseFiles(targetPath)
	if err != nil {
		return err
	}
	for _, t := range files {
		if err := m.opts.Blobs.Pin(t.SHA256(), reason); err != nil {
			return fmt.Errorf("pinning %s for %s: %w", t.Path, targetPath, err)
		}
	}
	return nil
}

// UnpinRelease removes reason from the release's blobs and its files'.
func (m *Mirror) UnpinRelease(targetPath, reason string) error {
	files, err := m.ReleaseFiles(targetPath)
	if err != nil {
		return err
	}
	for _, t := range files {
		if err := m.opts.Blobs.Unpin(t.SHA256(), reason); err != nil {
			return fmt.Errorf("unpinning %s for %s: %w", t.Path, targetPath, err)
		}
	}
	return nil
}

// approvedEntry is one release pinned by SetApproved, with the blobs it
// pinned, so the pins can be dropped even after the release left the
// verified state.
type approvedEntry struct {
	Path  string   `json:"path"`
	Blobs []string `json:"blobs"`
}

// SetApproved makes paths the set of releases that approved rollouts
// still need: their blobs (and their files') are pinned against eviction,
// and releases pinned by an earlier call but no longer listed are
// unpinned. The set is stored, so it survives restarts.
func (m *Mirror) SetApproved(paths []string) error {
	prev, err := m.readApproved()
	if err != nil {
		return err
	}
	next := make([]approvedEntry, 0, len(paths))
	keep := map[string]bool{}
	for _, p := range paths {
		files, err := m.ReleaseFiles(p)
		if err != nil {
			return fmt.Errorf("approving release: %w", err)
		}
		e := approvedEntry{Path: p}
		for _, t := range files {
			if err := m.opts.Blobs.Pin(t.SHA256(), approvedReason); err != nil {
				return fmt.Errorf("pinning %s: %w", t.Path, err)
			}
			e.Blobs = append(e.Blobs, t.SHA256())
			keep[t.SHA256()] = true
		}
		next = append(next, e)
	}
	for _, e := range prev {
		for _, sha := range e.Blobs {
			if keep[sha] {
				continue
			}
			if err := m.opts.Blobs.Unpin(sha, approvedReason); err != nil {
				return fmt.Errorf("unpinning %s of %s: %w", sha, e.Path, err)
			}
		}
	}
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return m.opts.DB.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(m.prefix+approvedKey), data)
	})
}

func (m *Mirror) readApproved() ([]approvedEntry, error) {
	var out []approvedEntry
	err := m.opts.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(m.prefix + approvedKey))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &out) })
	})
	if err != nil {
		return nil, fmt.Errorf("reading approved releases: %w", err)
	}
	return out, nil
}
