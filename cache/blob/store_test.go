package blob

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFillCommitOpen(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(1, 100_000)
	d := fillWith(t, env.store, b)
	if !env.store.Has(d.Hex()) {
		t.Fatalf("Has after Commit: got false, want true")
	}
	mustEqual(t, "committed blob", readBlob(t, env.store, d.Hex()), b)
	s := env.reopen(t, true, Options{})
	mustEqual(t, "blob after reopen", readBlob(t, s, d.Hex()), b)
}

func TestStatAndEmptyBlob(t *testing.T) {
	env := newEnv(t, Options{})
	d := fillWith(t, env.store, nil)
	mustEqual(t, "empty blob", readBlob(t, env.store, d.Hex()), nil)
	if err := env.store.Pin(d.Hex(), "rollout-3"); err != nil {
		t.Fatal(err)
	}
	info, err := env.store.Stat(d.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest.Length != 0 || !bytes.Equal(info.Digest.SHA256, d.SHA256) || !bytes.Equal(info.Digest.SHA512, d.SHA512) ||
		!info.Verified || len(info.Pins) != 1 || info.Open != 0 {
		t.Fatalf("Stat: got %+v, want the empty blob's digest, verified, one pin, not open", info)
	}
	if _, err := env.store.Stat(hexOf(make([]byte, 32))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat of an absent blob: got %v, want %v", err, ErrNotFound)
	}
}

func TestOpenMissing(t *testing.T) {
	env := newEnv(t, Options{})
	tests := []struct {
		name string
		sha  string
		want error
	}{
		{"absent", hexOf(make([]byte, 32)), ErrNotFound},
		{"short", "abc", ErrInvalid},
		{"uppercase", "AB" + hexOf(make([]byte, 31)), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := env.store.Open(tc.sha)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open(%q): got %v, want %v", tc.sha, err, tc.want)
			}
		})
	}
}

func TestReaderFollowsFill(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(2, 50_000)
	f, err := env.store.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	got := make(chan []byte, 1)
	go func() {
		all, err := io.ReadAll(r)
		if err != nil {
			t.Errorf("ReadAll: %v", err)
		}
		got <- all
	}()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "follower", <-got, b)
}
