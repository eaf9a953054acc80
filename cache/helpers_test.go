package cache

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// tufRepo is an upstream TUF repository held in memory and built with
// go-tuf's metadata API, so tests can sign, rotate, delegate and break it
// at will. files holds what the upstream server serves, by URL path below
// the repository ("metadata/1.root.json", "targets/dir/HASH.base").
type tufRepo struct {
	t testing.TB

	mu    sync.Mutex
	files map[string][]byte

	keys      map[string][]ed25519.PrivateKey // signing keys by role
	rootKeys  []ed25519.PrivateKey            // keys the next root is also signed with
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	order     []string // delegated roles in creation order

	// lifetime of each role's metadata, from time.Now at signing.
	lifetime map[string]time.Duration
}

func newTUFRepo(t testing.TB) *tufRepo {
	t.Helper()
	r := &tufRepo{
		t:         t,
		files:     map[string][]byte{},
		keys:      map[string][]ed25519.PrivateKey{},
		delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		lifetime: map[string]time.Duration{
			metadata.ROOT: 365 * 24 * time.Hour, metadata.TARGETS: 90 * 24 * time.Hour,
			metadata.SNAPSHOT: 30 * 24 * time.Hour, metadata.TIMESTAMP: 24 * time.Hour,
		},
	}
	now := time.Now().UTC()
	r.root = metadata.Root(now.Add(r.lifetime[metadata.ROOT]))
	r.targets = metadata.Targets(now.Add(r.lifetime[metadata.TARGETS]))
	r.snapshot = metadata.Snapshot(now.Add(r.lifetime[metadata.SNAPSHOT]))
	r.timestamp = metadata.Timestamp(now.Add(r.lifetime[metadata.TIMESTAMP]))
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		priv := newKey(t)
		r.keys[role] = []ed25519.PrivateKey{priv}
		if err := r.root.Signed.AddKey(pubKey(t, priv), role); err != nil {
			t.Fatal(err)
		}
	}
	r.rootKeys = r.keys[metadata.ROOT]
	r.writeRoot()
	r.targets.Signed.Version = 0
	r.snapshot.Signed.Version = 0
	r.timestamp.Signed.Version = 0
	r.publish()
	return r
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pubKey(t testing.TB, priv ed25519.PrivateKey) *metadata.Key {
	t.Helper()
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signer(t testing.TB, priv ed25519.PrivateKey) signature.Signer {
	t.Helper()
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type signable interface {
	ClearSignatures()
	ToBytes(bool) ([]byte, error)
}

func (r *tufRepo) sign(md any, keys []ed25519.PrivateKey) []byte {
	r.t.Helper()
	var err error
	switch m := md.(type) {
	case *metadata.Metadata[metadata.RootType]:
		m.ClearSignatures()
		for _, k := range keys {
			_, err = m.Sign(signer(r.t, k))
		}
	case *metadata.Metadata[metadata.TargetsType]:
		m.ClearSignatures()
		for _, k := range keys {
			_, err = m.Sign(signer(r.t, k))
		}
	case *metadata.Metadata[metadata.SnapshotType]:
		m.ClearSignatures()
		for _, k := range keys {
			_, err = m.Sign(signer(r.t, k))
		}
	case *metadata.Metadata[metadata.TimestampType]:
		m.ClearSignatures()
		for _, k := range keys {
			_, err = m.Sign(signer(r.t, k))
		}
	}
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := md.(signable).ToBytes(true)
	if err != nil {
		r.t.Fatal(err)
	}
	return data
}

// writeRoot signs the current root with the current root keys and the
// previous ones, and publishes it as N.root.json.
func (r *tufRepo) writeRoot() []byte {
	r.t.Helper()
	keys := slices.Clone(r.keys[metadata.ROOT])
	for _, k := range r.rootKeys {
		if !slices.ContainsFunc(keys, func(x ed25519.PrivateKey) bool { return x.Equal(k) }) {
			keys = append(keys, k)
		}
	}
	data := r.sign(r.root, keys)
	r.rootKeys = r.keys[metadata.ROOT]
	r.set("metadata/"+metaFile(r.root.Signed.Version, metadata.ROOT), data)
	return data
}

// newRoot bumps the root version, lets change edit it, and publishes it.
func (r *tufRepo) newRoot(change func(root *metadata.RootType)) []byte {
	r.t.Helper()
	r.root.Signed.Version++
	r.root.Signed.Expires = time.Now().UTC().Add(r.lifetime[metadata.ROOT])
	if change != nil {
		change(&r.root.Signed)
	}
	return r.writeRoot()
}

// rotate gives role a new key in a new root version.
func (r *tufRepo) rotate(role string) {
	r.t.Helper()
	priv := newKey(r.t)
	r.newRoot(func(root *metadata.RootType) {
		for _, id := range slices.Clone(root.Roles[role].KeyIDs) {
			if err := root.RevokeKey(id, role); err != nil {
				r.t.Fatal(err)
			}
		}
		if err := root.AddKey(pubKey(r.t, priv), role); err != nil {
			r.t.Fatal(err)
		}
	})
	r.keys[role] = []ed25519.PrivateKey{priv}
}

func (r *tufRepo) rootBytes(version int64) []byte {
	return r.get("metadata/" + metaFile(version, metadata.ROOT))
}

// addTarget adds data as target p of role ("targets" or a delegated role)
// under every hash prefix.
func (r *tufRepo) addTarget(role, p string, data []byte, meta *TargetMeta) *metadata.TargetFiles {
	r.t.Helper()
	tf, err := metadata.TargetFile().FromBytes(p, data, "sha256", "sha512")
	if err != nil {
		r.t.Fatal(err)
	}
	if meta != nil {
		if tf.Custom, err = meta.Custom(); err != nil {
			r.t.Fatal(err)
		}
	}
	r.role(role).Signed.Targets[p] = tf
	for _, h := range tf.Hashes {
		r.set("targets/"+hashedName(p, hex.EncodeToString(h)), data)
	}
	return tf
}

func (r *tufRepo) role(name string) *metadata.Metadata[metadata.TargetsType] {
	if name == metadata.TARGETS {
		return r.targets
	}
	md := r.delegated[name]
	if md == nil {
		r.t.Fatalf("no delegated role %q", name)
	}
	return md
}

// delegate makes parent delegate the paths to role, creating role with a
// key of its own (or reusing it when it exists).
func (r *tufRepo) delegate(parent, role string, paths []string, terminating bool) {
	r.t.Helper()
	p := r.role(parent)
	if p.Signed.Delegations == nil {
		p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	p.Signed.Delegations.Roles = append(p.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, Threshold: 1, Paths: paths, Terminating: terminating,
	})
	if r.delegated[role] == nil {
		r.delegated[role] = metadata.Targets(time.Now().UTC().Add(r.lifetime[metadata.TARGETS]))
		r.delegated[role].Signed.Version = 0
		r.keys[role] = []ed25519.PrivateKey{newKey(r.t)}
		r.order = append(r.order, role)
	}
	if err := p.Signed.AddKey(pubKey(r.t, r.keys[role][0]), role); err != nil {
		r.t.Fatal(err)
	}
}

// publish signs new versions of every targets role, the snapshot and the
// timestamp, and writes them.
func (r *tufRepo) publish() {
	r.t.Helper()
	now := time.Now().UTC()
	for _, name := range r.order {
		md := r.delegated[name]
		md.Signed.Version++
		md.Signed.Expires = now.Add(r.lifetime[metadata.TARGETS])
		r.set("metadata/"+metaFile(md.Signed.Version, name), r.sign(md, r.keys[name]))
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	r.targets.Signed.Version++
	r.targets.Signed.Expires = now.Add(r.lifetime[metadata.TARGETS])
	r.set("metadata/"+metaFile(r.targets.Signed.Version, metadata.TARGETS), r.sign(r.targets, r.keys[metadata.TARGETS]))
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = now.Add(r.lifetime[metadata.SNAPSHOT])
	r.set("metadata/"+metaFile(r.snapshot.Signed.Version, metadata.SNAPSHOT), r.sign(r.snapshot, r.keys[metadata.SNAPSHOT]))
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	r.bumpTimestamp()
}

// bumpTimestamp signs a new timestamp for the current snapshot.
func (r *tufRepo) bumpTimestamp() []byte {
	r.t.Helper()
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = time.Now().UTC().Add(r.lifetime[metadata.TIMESTAMP])
	data := r.sign(r.timestamp, r.keys[metadata.TIMESTAMP])
	r.set("metadata/timestamp.json", data)
	return data
}

func (r *tufRepo) set(name string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[name] = data
}

func (r *tufRepo) get(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[name]
}

func (r *tufRepo) snapshotFiles() map[string][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.files)
}

// upstream serves a tufRepo over HTTP the way the hub does
// (http.ServeContent, so Range works), counts requests per path, and lets
// a test take over a path to attack the gateway.
type upstream struct {
	repo *tufRepo
	srv  *httptest.Server

	mu    sync.Mutex
	hooks map[string]http.HandlerFunc // by decoded path below the repository
	gets  map[string]int
}

func newUpstream(t testing.TB, repo *tufRepo) *upstream {
	u := &upstream{repo: repo, hooks: map[string]http.HandlerFunc{}, gets: map[string]int{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	u.mu.Lock()
	u.gets[name]++
	hook := u.hooks[name]
	u.mu.Unlock()
	if hook != nil {
		hook(w, r)
		return
	}
	data := u.repo.get(name)
	if data == nil {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(data)))
}

func (u *upstream) hook(name string, h http.HandlerFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if h == nil {
		delete(u.hooks, name)
		return
	}
	u.hooks[name] = h
}

func (u *upstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gets[name]
}

// targetName is the upstream path of a target under its SHA-256.
func targetName(p string, data []byte) string {
	sum := sha256.Sum256(data)
	return "targets/" + hashedName(p, hex.EncodeToString(sum[:]))
}
