// Package repo creates and publishes the manufacturer's TUF repository:
// root, targets, snapshot and timestamp roles with ed25519 keys and
// consistent snapshots, and release images published as targets whose
// custom metadata describes the devices they fit.
//
// On disk a repository is DIR/metadata (the signed role files exactly as
// clients fetch them) and DIR/targets (each target stored under every
// hash prefix its metadata lists). The private keys live in a separate
// keys folder, one PEM file per role, mode 0600.
package repo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Role lifetimes. The timestamp is short so that a frozen mirror is
// noticed; `wardhub serve` re-signs it before it expires.
const (
	RootLifetime      = 365 * 24 * time.Hour
	TargetsLifetime   = 90 * 24 * time.Hour
	SnapshotLifetime  = 30 * 24 * time.Hour
	TimestampLifetime = 24 * time.Hour
)

var topRoles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Repo is an open repository with its signing keys. It is not safe for
// concurrent use; one process publishes at a time.
type Repo struct {
	dir     string
	keysDir string
	now     func() time.Time

	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	signers   map[string]signature.Signer
}

// DefaultKeysDir returns the keys folder used when none is given: a
// sibling of the repository folder named DIR-keys.
func DefaultKeysDir(dir string) string {
	return filepath.Clean(dir) + "-keys"
}

// Init creates a new repository in dir, which must not exist or be empty,
// and its keys in keysDir, which must not hold keys already.
func Init(dir, keysDir string) (*Repo, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("repository folder %s is not empty: choose a new folder", dir)
	}
	if _, err := os.Stat(filepath.Join(keysDir, "root.pem")); err == nil {
		return nil, fmt.Errorf("keys folder %s already holds a root key: choose a new folder", keysDir)
	}
	for _, d := range []string{filepath.Join(dir, "metadata"), filepath.Join(dir, "targets")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating repository: %w", err)
		}
	}
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating keys folder: %w", err)
	}
	r := &Repo{dir: dir, keysDir: keysDir, now: time.Now, signers: map[string]signature.Signer{}}
	now := r.now().UTC()
	r.root = metadata.Root(now.Add(RootLifetime))
	r.targets = metadata.Targets(now.Add(TargetsLifetime))
	r.snapshot = metadata.Snapshot(now.Add(SnapshotLifetime))
	r.timestamp = metadata.Timestamp(now.Add(TimestampLifetime))
	for _, role := range topRoles {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating %s key: %w", role, err)
		}
		if err := writeKey(filepath.Join(keysDir, role+".pem"), priv); err != nil {
			return nil, err
		}
		if err := r.addSigner(role, priv); err != nil {
			return nil, err
		}
	}
	if err := r.writeRoot(); err != nil {
		return nil, err
	}
	if err := r.publish(); err != nil {
		return nil, err
	}
	return r, nil
}

// Open loads the repository in dir and its signing keys from keysDir.
func Open(dir, keysDir string) (*Repo, error) {
	r := &Repo{dir: dir, keysDir: keysDir, now: time.Now, signers: map[string]signature.Signer{}}
	md := filepath.Join(dir, "metadata")
	var err error
	if r.root, err = metadata.Root().FromFile(filepath.Join(md, "root.json")); err != nil {
		return nil, fmt.Errorf("reading root of repository %s (run `wardhub repo init` first?): %w", dir, err)
	}
	if r.timestamp, err = metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("reading timestamp: %w", err)
	}
	snapVersion := r.timestamp.Signed.Meta["snapshot.json"].Version
	if r.snapshot, err = metadata.Snapshot().FromFile(filepath.Join(md, fmt.Sprintf("%d.snapshot.json", snapVersion))); err != nil {
		return nil, fmt.Errorf("reading snapshot: %w", err)
	}
	targetsVersion := r.snapshot.Signed.Meta["targets.json"].Version
	if r.targets, err = metadata.Targets().FromFile(filepath.Join(md, fmt.Sprintf("%d.targets.json", targetsVersion))); err != nil {
		return nil, fmt.Errorf("reading targets: %w", err)
	}
	for _, role := range topRoles {
		priv, err := readKey(filepath.Join(keysDir, role+".pem"))
		if err != nil {
			return nil, err
		}
		if err := r.checkKey(role, priv); err != nil {
			return nil, err
		}
		if err := r.addSigner(role, priv); err != nil {
			return nil, err
		}
	}
	if err := r.verifyOnDisk(); err != nil {
		return nil, err
	}
	versioned, err := os.ReadFile(filepath.Join(md, strconv.FormatInt(r.root.Signed.Version, 10)+".root.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the versioned root: %w", err)
	}
	current, err := os.ReadFile(filepath.Join(md, "root.json"))
	if err != nil {
		return nil, err
	}
	if string(versioned) != string(current) {
		return nil, fmt.Errorf("%d.root.json and root.json of repository %s differ (was one edited by hand?): restore them from a backup", r.root.Signed.Version, dir)
	}
	return r, nil
}

// checkKey fails unless priv is one of role's keys in the root, so that
// metadata is never signed with keys that clients would not trust.
func (r *Repo) checkKey(role string, priv ed25519.PrivateKey) error {
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return err
	}
	id, err := key.ID()
	if err != nil {
		return err
	}
	if rr := r.root.Signed.Roles[role]; rr != nil {
		for _, k := range rr.KeyIDs {
			if k == id {
				return nil
			}
		}
	}
	return fmt.Errorf("the %s key in %s is not a %s key of repository %s: pass the repository's own keys folder with -keys", role, r.keysDir, role, r.dir)
}

// verifyOnDisk checks the signatures of the metadata read from disk, so
// a publish never re-signs files that were changed without the keys.
func (r *Repo) verifyOnDisk() error {
	checks := []struct {
		role string
		meta any
	}{
		{metadata.ROOT, r.root},
		{metadata.TARGETS, r.targets},
		{metadata.SNAPSHOT, r.snapshot},
		{metadata.TIMESTAMP, r.timestamp},
	}
	for _, c := range checks {
		if err := r.root.VerifyDelegate(c.role, c.meta); err != nil {
			return fmt.Errorf("the %s metadata of repository %s fails its signature check (was it edited by hand?): %w; restore it from a backup", c.role, r.dir, err)
		}
	}
	return nil
}

// Dir returns the repository folder.
func (r *Repo) Dir() string { return r.dir }

// RootVersion returns the version of the current root role.
func (r *Repo) RootVersion() int64 { return r.root.Signed.Version }

// TargetsVersion returns the version of the current targets role.
func (r *Repo) TargetsVersion() int64 { return r.targets.Signed.Version }

// Targets returns the current targets role's files, keyed by target path.
func (r *Repo) Targets() map[string]*metadata.TargetFiles {
	return r.targets.Signed.Targets
}

// AddTarget copies the file at localPath into the repository as the
// target targetPath with the given custom metadata. The change is
// published by the next Publish.
func (r *Repo) AddTarget(targetPath, localPath string, custom any) error {
	if err := validateTargetPath(targetPath); err != nil {
		return err
	}
	data, err := os.ReadFile(localPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", localPath, err)
	}
	tf, err := metadata.TargetFile().FromBytes(targetPath, data, "sha256", "sha512")
	if err != nil {
		return fmt.Errorf("hashing %s: %w", localPath, err)
	}
	if custom != nil {
		raw, err := toRaw(custom)
		if err != nil {
			return err
		}
		tf.Custom = raw
	}
	if old, ok := r.targets.Signed.Targets[targetPath]; ok {
		if !old.Hashes.Equal(tf.Hashes) {
			return fmt.Errorf("target %q is already published with other content: a released file never changes, so publish a new version under a new path", targetPath)
		}
		if !sameCustom(old.Custom, tf.Custom) {
			return fmt.Errorf("target %q is already published with other metadata: models, revisions and requirements of a release never change, so publish a new version under a new path", targetPath)
		}
	}
	dir := filepath.Join(r.dir, "targets", filepath.FromSlash(path.Dir(targetPath)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating target folder: %w", err)
	}
	base := path.Base(targetPath)
	for _, h := range tf.Hashes {
		name := filepath.Join(dir, hex.EncodeToString(h)+"."+base)
		if err := writeFileSync(name, data, 0o644); err != nil {
			return err
		}
	}
	r.targets.Signed.Targets[targetPath] = tf
	return nil
}

// RemoveTarget withdraws a target. Its files stay on disk for clients
// that are mid-download; the next Publish drops it from the metadata.
func (r *Repo) RemoveTarget(targetPath string) error {
	if _, ok := r.targets.Signed.Targets[targetPath]; !ok {
		return fmt.Errorf("target %q not found in repository %s", targetPath, r.dir)
	}
	delete(r.targets.Signed.Targets, targetPath)
	return nil
}

// Publish signs a new version of the targets, snapshot and timestamp
// roles and writes them in that order, so that a client never sees a
// timestamp that points at a snapshot not yet written.
func (r *Repo) Publish() error {
	now := r.now().UTC()
	r.targets.Signed.Version++
	r.targets.Signed.Expires = now.Add(TargetsLifetime)
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = now.Add(SnapshotLifetime)
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	return r.publish()
}

// RefreshTimestamp signs a new timestamp for the current snapshot, so a
// repository without changes stays fresh for its clients.
func (r *Repo) RefreshTimestamp() error {
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.now().UTC().Add(TimestampLifetime)
	r.timestamp.ClearSignatures()
	if _, err := r.timestamp.Sign(r.signers[metadata.TIMESTAMP]); err != nil {
		return fmt.Errorf("signing timestamp: %w", err)
	}
	return r.writeRole(r.timestamp, "timestamp.json")
}

// TimestampExpires returns when the current timestamp expires.
func (r *Repo) TimestampExpires() time.Time { return r.timestamp.Signed.Expires }

func (r *Repo) publish() error {
	r.targets.ClearSignatures()
	if _, err := r.targets.Sign(r.signers[metadata.TARGETS]); err != nil {
		return fmt.Errorf("signing targets: %w", err)
	}
	if err := r.writeRole(r.targets, fmt.Sprintf("%d.targets.json", r.targets.Signed.Version)); err != nil {
		return err
	}
	r.snapshot.ClearSignatures()
	if _, err := r.snapshot.Sign(r.signers[metadata.SNAPSHOT]); err != nil {
		return fmt.Errorf("signing snapshot: %w", err)
	}
	if err := r.writeRole(r.snapshot, fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)); err != nil {
		return err
	}
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	if r.timestamp.Signed.Version < r.snapshot.Signed.Version {
		r.timestamp.Signed.Version = r.snapshot.Signed.Version - 1
	}
	return r.RefreshTimestamp()
}

func (r *Repo) writeRoot() error {
	r.root.ClearSignatures()
	if _, err := r.root.Sign(r.signers[metadata.ROOT]); err != nil {
		return fmt.Errorf("signing root: %w", err)
	}
	name := strconv.FormatInt(r.root.Signed.Version, 10) + ".root.json"
	if err := r.writeRole(r.root, name); err != nil {
		return err
	}
	return r.writeRole(r.root, "root.json")
}

type role interface {
	ToBytes(pretty bool) ([]byte, error)
}

func (r *Repo) writeRole(m role, name string) error {
	data, err := m.ToBytes(true)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return writeFileSync(filepath.Join(r.dir, "metadata", name), data, 0o644)
}

func (r *Repo) addSigner(role string, priv ed25519.PrivateKey) error {
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		return fmt.Errorf("loading %s key: %w", role, err)
	}
	r.signers[role] = signer
	if r.root.Signed.Roles[role] != nil && len(r.root.Signed.Roles[role].KeyIDs) > 0 {
		return nil
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return fmt.Errorf("converting %s key: %w", role, err)
	}
	return r.root.Signed.AddKey(key, role)
}

func sameCustom(a, b *json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(*a, &x) != nil || json.Unmarshal(*b, &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}

func validateTargetPath(p string) error {
	for _, c := range p {
		if c < 0x20 || c == 0x7f || c == '%' {
			return fmt.Errorf("invalid target path %q: use printable characters without %%", p)
		}
	}
	for _, part := range strings.Split(p, "/") {
		if len(part) > 120 {
			return fmt.Errorf("invalid target path %q: each part must be at most 120 bytes, since it is stored under a 128-character hash prefix", p)
		}
	}
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p || strings.HasPrefix(p, "..") {
		return fmt.Errorf("invalid target path %q: use a relative slash-separated path such as \"pump/1.2.0/image.bin\"", p)
	}
	return nil
}

func toRaw(v any) (*json.RawMessage, error) {
	if raw, ok := v.(*json.RawMessage); ok {
		return raw, nil
	}
	if c, ok := v.(interface {
		Custom() (*json.RawMessage, error)
	}); ok {
		return c.Custom()
	}
	return nil, fmt.Errorf("unsupported custom metadata type %T", v)
}

func writeKey(name string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return writeFileSync(name, data, 0o600)
}

func readKey(name string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key %s is not PEM", name)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing signing key %s: %w", name, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s is %T, want ed25519", name, key)
	}
	return priv, nil
}

// writeFileSync writes data to name through a synced temporary file and
// a rename, so readers see the old file or the whole new one.
func writeFileSync(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("renaming into %s: %w", name, err)
	}
	return syncDir(filepath.Dir(name))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}

// HashFile returns the SHA-256 and SHA-512 of a file, for tools that
// check a published target against its source.
func HashFile(name string) (sum256, sum512 []byte, err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	if _, err := io.Copy(io.MultiWriter(h256, h512), f); err != nil {
		return nil, nil, err
	}
	return h256.Sum(nil), h512.Sum(nil), nil
}
