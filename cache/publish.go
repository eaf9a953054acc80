package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Keys under the mirror's prefix "tuf/NAME/":
//
//	meta/<file>       verbatim bytes devices fetch, by decoded file name
//	trusted/<role>.json  the top-level trusted state go-tuf starts from
//	state             the published state (publishedState as JSON)
//	old/<file>        end of the grace period of a superseded meta file
//	retired/<path>    a target a newer state dropped, with its grace end
const stateKey = "state"

// roleExpiry is when one trusted role expires.
type roleExpiry struct {
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
}

// publishedState is what the mirror serves, derived from verified
// metadata and stored with it.
type publishedState struct {
	TimestampVersion int64        `json:"timestamp_version"`
	TimestampExpires time.Time    `json:"timestamp_expires"`
	TargetsVersion   int64        `json:"targets_version"`
	Expiries         []roleExpiry `json:"expiries"`
	Targets          []Target     `json:"targets"`
	// Files are the consistent meta files of this state (snapshot,
	// targets and delegated roles), pruned after the grace period once a
	// newer state supersedes them. Roots are never pruned.
	Files []string `json:"files"`
}

// retiredTarget is a target dropped by a newer state, servable until
// Until.
type retiredTarget struct {
	Target Target    `json:"target"`
	Until  time.Time `json:"until"`
}

// metaFile is the stored name of a consistent metadata file, decoded:
// "7.snapshot.json", "3.team/a.json".
func metaFile(version int64, role string) string {
	return strconv.FormatInt(version, 10) + "." + role + ".json"
}

// publish stores the verified state in one badger transaction, written in
// the order delegated roles, targets, snapshot, roots, timestamp, so
// devices see either the old state or the whole new one. Files of the
// previous state stay servable for the grace period.
func (m *Mirror) publish(vs *verifiedState) error {
	tr := vs.trusted
	now := m.opts.Now()
	st := publishedState{
		TimestampVersion: tr.Timestamp.Signed.Version,
		TimestampExpires: tr.Timestamp.Signed.Expires,
		TargetsVersion:   tr.Targets[metadata.TARGETS].Signed.Version,
		Expiries: []roleExpiry{
			{metadata.ROOT, tr.Root.Signed.Expires},
			{metadata.TIMESTAMP, tr.Timestamp.Signed.Expires},
			{metadata.SNAPSHOT, tr.Snapshot.Signed.Expires},
			{metadata.TARGETS, tr.Targets[metadata.TARGETS].Signed.Expires},
		},
	}
	for _, p := range slices.Sorted(maps.Keys(vs.targets)) {
		st.Targets = append(st.Targets, vs.targets[p])
	}
	type kv struct {
		key  string
		data []byte
	}
	var steps []kv
	for i := len(vs.roles) - 1; i >= 0; i-- {
		r := vs.roles[i]
		name := metaFile(r.version, r.name)
		steps = append(steps, kv{"meta/" + name, r.data})
		st.Files = append(st.Files, name)
		st.Expiries = append(st.Expiries, roleExpiry{r.name, r.md.Signed.Expires})
	}
	targetsFile := metaFile(st.TargetsVersion, metadata.TARGETS)
	snapFile := metaFile(tr.Snapshot.Signed.Version, metadata.SNAPSHOT)
	st.Files = append(st.Files, targetsFile, snapFile)
	steps = append(steps, kv{"meta/" + targetsFile, vs.files[metadata.TARGETS]}, kv{"meta/" + snapFile, vs.files[metadata.SNAPSHOT]})
	for _, v := range slices.Sorted(maps.Keys(vs.roots)) {
		steps = append(steps, kv{"meta/" + metaFile(v, metadata.ROOT), vs.roots[v]})
	}
	steps = append(steps, kv{"meta/" + metaFile(tr.Root.Signed.Version, metadata.ROOT), vs.files[metadata.ROOT]})
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding mirror state: %w", err)
	}
	var retired map[string]retiredTarget
	err = m.opts.DB.Update(func(txn *badger.Txn) error {
		prev, err := m.readState(txn)
		if err != nil {
			return err
		}
		for _, s := range steps {
			if err := txn.Set([]byte(m.prefix+s.key), s.data); err != nil {
				return err
			}
		}
		if err := m.storeInitialRoot(txn); err != nil {
			return err
		}
		if err := m.supersede(txn, prev, &st, now); err != nil {
			return err
		}
		for _, role := range []string{metadata.ROOT, metadata.SNAPSHOT, metadata.TARGETS, metadata.TIMESTAMP} {
			if err := txn.Set([]byte(m.prefix+"trusted/"+role+".json"), vs.files[role]); err != nil {
				return err
			}
		}
		if err := txn.Set([]byte(m.prefix+stateKey), stateJSON); err != nil {
			return err
		}
		// The timestamp is the last file written: it is what makes a device
		// move to the new state.
		if err := txn.Set([]byte(m.prefix+"meta/timestamp.json"), vs.files[metadata.TIMESTAMP]); err != nil {
			return err
		}
		retired, err = m.readRetired(txn, now)
		return err
	})
	if err != nil {
		return err
	}
	m.setState(st, retired)
	return nil
}

// supersede starts the grace period of every file and target of prev that
// st no longer has.
func (m *Mirror) supersede(txn *badger.Txn, prev *publishedState, st *publishedState, now time.Time) error {
	if prev == nil {
		return nil
	}
	until := now.Add(m.opts.Grace)
	for _, f := range prev.Files {
		if slices.Contains(st.Files, f) {
			continue
		}
		key := []byte(m.prefix + "old/" + f)
		if _, err := txn.Get(key); err == nil {
			continue
		}
		if err := txn.Set(key, []byte(until.UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
	}
	current := map[string]bool{}
	for _, t := range st.Targets {
		current[t.Path+"\x00"+t.SHA256()] = true
		if err := txn.Delete([]byte(m.prefix + "retired/" + t.Path)); err != nil {
			return err
		}
	}
	for _, t := range prev.Targets {
		if current[t.Path+"\x00"+t.SHA256()] {
			continue
		}
		data, err := json.Marshal(retiredTarget{Target: t, Until: until})
		if err != nil {
			return err
		}
		if err := txn.Set([]byte(m.prefix+"retired/"+t.Path), data); err != nil {
			return err
		}
	}
	return nil
}

// prune removes superseded files and retired targets whose grace period
// has ended, and drops them from what is served.
func (m *Mirror) prune() error {
	// Serialised with Refresh, so an older state read here never replaces
	// a newer one published meanwhile.
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	now := m.opts.Now()
	var retired map[string]retiredTarget
	var st *publishedState
	pruned := 0
	err := m.opts.DB.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(m.prefix + "old/")})
		var doomed []string
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			until, err := time.Parse(time.RFC3339Nano, string(v))
			if err != nil || !now.Before(until) {
				doomed = append(doomed, strings.TrimPrefix(string(item.Key()), m.prefix+"old/"))
			}
		}
		it.Close()
		for _, f := range doomed {
			if err := txn.Delete([]byte(m.prefix + "meta/" + f)); err != nil {
				return err
			}
			if err := txn.Delete([]byte(m.prefix + "old/" + f)); err != nil {
				return err
			}
		}
		pruned = len(doomed)
		var err error
		if retired, err = m.readRetired(txn, now); err != nil {
			return err
		}
		st, err = m.readState(txn)
		return err
	})
	if err != nil {
		return err
	}
	if pruned > 0 {
		m.log.Info("pruned superseded TUF metadata after its grace period", "files", pruned)
	}
	if st != nil {
		m.setState(*st, retired)
	}
	return nil
}

// readRetired returns retired targets still in their grace period and
// deletes the others.
func (m *Mirror) readRetired(txn *badger.Txn, now time.Time) (map[string]retiredTarget, error) {
	out := map[string]retiredTarget{}
	pfx := []byte(m.prefix + "retired/")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
	var doomed [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		v, err := item.ValueCopy(nil)
		if err != nil {
			it.Close()
			return nil, err
		}
		var rt retiredTarget
		if err := json.Unmarshal(v, &rt); err != nil || !now.Before(rt.Until) {
			doomed = append(doomed, item.KeyCopy(nil))
			continue
		}
		out[rt.Target.Path] = rt
	}
	it.Close()
	for _, k := range doomed {
		if err := txn.Delete(k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (m *Mirror) readState(txn *badger.Txn) (*publishedState, error) {
	item, err := txn.Get([]byte(m.prefix + stateKey))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	var st publishedState
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, fmt.Errorf("decoding stored mirror state: %w", err)
	}
	return &st, nil
}

// storeInitialRoot keeps the enrolment root as N.root.json, since devices
// start their root chain there.
func (m *Mirror) storeInitialRoot(txn *badger.Txn) error {
	if len(m.opts.TrustedRoot) == 0 {
		return nil
	}
	root, err := metadata.Root().FromBytes(m.opts.TrustedRoot)
	if err != nil {
		return fmt.Errorf("parsing enrolment root: %w", err)
	}
	key := []byte(m.prefix + "meta/" + metaFile(root.Signed.Version, metadata.ROOT))
	if _, err := txn.Get(key); err == nil {
		return nil
	}
	return txn.Set(key, m.opts.TrustedRoot)
}

// setState makes st and the retired targets what the mirror serves.
func (m *Mirror) setState(st publishedState, retired map[string]retiredTarget) {
	targets := map[string]Target{}
	served := map[string]servedTarget{}
	bySHA := map[string]Target{}
	add := func(t Target, until time.Time) {
		served[t.Path] = servedTarget{t, until}
		for _, h := range t.Hashes {
			served[hashedName(t.Path, h)] = servedTarget{t, until}
		}
		bySHA[t.SHA256()] = t
	}
	for _, rt := range retired {
		add(rt.Target, rt.Until)
	}
	for _, t := range st.Targets {
		targets[t.Path] = t
		add(t, time.Time{})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.targets, m.served, m.bySHA = targets, served, bySHA
	m.expiries = st.Expiries
	m.status.TimestampVersion = st.TimestampVersion
	m.status.TimestampExpires = st.TimestampExpires
	m.status.TargetsVersion = st.TargetsVersion
	m.status.Targets = len(targets)
	m.metrics.expires.Set(float64(st.TimestampExpires.Unix()))
	m.metrics.targets.Set(float64(len(targets)))
}

// loadPublished rebuilds the served state from badger at start.
func (m *Mirror) loadPublished() error {
	var st *publishedState
	var retired map[string]retiredTarget
	err := m.opts.DB.Update(func(txn *badger.Txn) error {
		var err error
		if st, err = m.readState(txn); err != nil {
			return err
		}
		retired, err = m.readRetired(txn, m.opts.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("loading mirror state: %w", err)
	}
	if st != nil {
		m.setState(*st, retired)
	}
	return nil
}

// hashedName is the consistent-snapshot name of a target under one of
// its hashes: "dir/HASH.base".
func hashedName(targetPath, hexHash string) string {
	dir, base := "", targetPath
	if i := strings.LastIndexByte(targetPath, '/'); i >= 0 {
		dir, base = targetPath[:i+1], targetPath[i+1:]
	}
	return dir + hexHash + "." + base
}

// escapePath escapes each segment of a slash-separated path for a URL.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
