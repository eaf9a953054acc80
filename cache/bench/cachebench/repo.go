package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// blobSpec is one target of the bench repository.
type blobSpec struct {
	Name string
	Size int64
}

// writeRepo writes a signed TUF repository with consistent snapshots to
// dir/metadata and dir/targets, with each target under both hash
// prefixes (the second a hard link), and returns the trusted root and the
// SHA-256 of each target by name. Target bytes come from a seeded
// ChaCha8 stream, so they are incompressible.
func writeRepo(dir string, specs []blobSpec) (root []byte, sums map[string]string, err error) {
	for _, d := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, nil, err
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sg, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		return nil, nil, err
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	exp := time.Now().Add(30 * 24 * time.Hour)
	rt := metadata.Root(exp)
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := rt.Signed.AddKey(key, role); err != nil {
			return nil, nil, err
		}
	}
	tg := metadata.Targets(exp)
	sums = map[string]string{}
	for i, s := range specs {
		tf, err := writeTarget(dir, s, uint64(i+1))
		if err != nil {
			return nil, nil, err
		}
		tg.Signed.Targets[s.Name] = tf
		sums[s.Name] = hex.EncodeToString(tf.Hashes["sha256"])
	}
	sn := metadata.Snapshot(exp)
	sn.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	ts := metadata.Timestamp(exp)
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	write := func(name string, sign func() error, enc func(bool) ([]byte, error)) ([]byte, error) {
		if err := sign(); err != nil {
			return nil, err
		}
		b, err := enc(true)
		if err != nil {
			return nil, err
		}
		return b, os.WriteFile(filepath.Join(dir, "metadata", name), b, 0o644)
	}
	if root, err = write("1.root.json", func() error { _, err := rt.Sign(sg); return err }, rt.ToBytes); err != nil {
		return nil, nil, err
	}
	if _, err = write("1.targets.json", func() error { _, err := tg.Sign(sg); return err }, tg.ToBytes); err != nil {
		return nil, nil, err
	}
	if _, err = write("1.snapshot.json", func() error { _, err := sn.Sign(sg); return err }, sn.ToBytes); err != nil {
		return nil, nil, err
	}
	if _, err = write("timestamp.json", func() error { _, err := ts.Sign(sg); return err }, ts.ToBytes); err != nil {
		return nil, nil, err
	}
	return root, sums, nil
}

func writeTarget(dir string, s blobSpec, seed uint64) (*metadata.TargetFiles, error) {
	tmp := filepath.Join(dir, "targets", s.Name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	h256, h512 := sha256.New(), sha512.New()
	src := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'w', 'g'})
	if _, err := io.Copy(io.MultiWriter(f, h256, h512), io.LimitReader(src, s.Size)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	sum256, sum512 := h256.Sum(nil), h512.Sum(nil)
	first := filepath.Join(dir, "targets", hex.EncodeToString(sum256)+"."+s.Name)
	if err := os.Rename(tmp, first); err != nil {
		return nil, err
	}
	if err := os.Link(first, filepath.Join(dir, "targets", hex.EncodeToString(sum512)+"."+s.Name)); err != nil {
		return nil, err
	}
	return &metadata.TargetFiles{Length: s.Size, Hashes: metadata.Hashes{"sha256": sum256, "sha512": sum512}}, nil
}
