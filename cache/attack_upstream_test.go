package cache

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// smallRepo is an upstream repository with one release.
func smallRepo(t testing.TB) (*tufRepo, []byte) {
	t.Helper()
	r := newTUFRepo(t)
	img := randomBytes(t, 64<<10)
	r.addTarget(metadata.TARGETS, "pump/pump.img", img, &TargetMeta{Kind: KindRelease, Version: "1.0.0", Models: []string{"IP-200"}})
	r.publish()
	return r, img
}

// TestUpstreamAttacksAreRefused attacks the gateway from the upstream
// side. In every case the refresh fails with a reason, the last good state
// stays published byte for byte, and a device still verifies it.
func TestUpstreamAttacksAreRefused(t *testing.T) {
	cases := []struct {
		name    string
		attack  func(t *testing.T, r *tufRepo, up *upstream, g *gw)
		wantErr string
		panics  bool
	}{
		{
			name: "rollback of the timestamp",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				old := r.get("metadata/timestamp.json")
				r.publish()
				g.mustRefresh()
				r.set("metadata/timestamp.json", old)
			},
			wantErr: "must be >=",
		},
		{
			name: "rollback of the snapshot",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				r.publish()
				g.mustRefresh()
				r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version - 1)
				r.bumpTimestamp()
			},
			wantErr: "snapshot version",
		},
		{
			name: "indefinite freeze with an expired timestamp",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				r.lifetime[metadata.TIMESTAMP] = -time.Minute
				r.bumpTimestamp()
			},
			wantErr: "expired",
		},
		{
			name: "mix-and-match of an old targets role under the new name",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				old := r.get("metadata/" + metaFile(r.targets.Signed.Version, metadata.TARGETS))
				r.publish()
				r.set("metadata/"+metaFile(r.targets.Signed.Version, metadata.TARGETS), old)
			},
			wantErr: "version",
		},
		{
			name: "arbitrary software signed with a key the root does not trust",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				r.keys[metadata.TARGETS] = []ed25519Key{newKey(t)}
				r.addTarget(metadata.TARGETS, "pump/evil.img", []byte("evil"), nil)
				r.publish()
			},
			wantErr: "signature",
		},
		{
			name: "endless timestamp",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				up.hook("metadata/timestamp.json", endless)
			},
			wantErr: "allowed",
		},
		{
			name: "slow retrieval of the timestamp",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				up.hook("metadata/timestamp.json", trickle(r.get("metadata/timestamp.json"), 200*time.Millisecond))
			},
			wantErr: "deadline",
		},
		{
			name: "targets signatures below the threshold",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				second := newKey(t)
				r.newRoot(func(root *metadata.RootType) {
					if err := root.AddKey(pubKey(t, second), metadata.TARGETS); err != nil {
						t.Fatal(err)
					}
					root.Roles[metadata.TARGETS].Threshold = 2
				})
				r.publish() // signed by the first key only
			},
			wantErr: "signature",
		},
		{
			name: "signed root carrying a malformed ed25519 key",
			attack: func(t *testing.T, r *tufRepo, up *upstream, g *gw) {
				bad := &metadata.Key{Type: metadata.KeyTypeEd25519, Scheme: metadata.KeySchemeEd25519, Value: metadata.KeyVal{PublicKey: "0badc0de"}}
				r.newRoot(func(root *metadata.RootType) {
					if err := root.AddKey(bad, metadata.ROOT); err != nil {
						t.Fatal(err)
					}
				})
				// Add a signature under the malformed key's ID, so verifying
				// the new root against itself reaches the key.
				var sig [64]byte
				_, _ = rand.Read(sig[:])
				id, err := bad.ID()
				if err != nil {
					t.Fatal(err)
				}
				r.root.Signatures = append(r.root.Signatures, metadata.Signature{KeyID: id, Signature: sig[:]})
				data, err := r.root.ToBytes(true)
				if err != nil {
					t.Fatal(err)
				}
				r.set("metadata/"+metaFile(r.root.Signed.Version, metadata.ROOT), data)
			},
			wantErr: "panicked",
			panics:  true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, img := smallRepo(t)
			up := newUpstream(t, r)
			g := newGW(t, up, func(o *MirrorOptions, _ *blobOptions) { o.RequestTimeout = time.Second })
			g.mustRefresh()
			tc.attack(t, r, up, g)
			before, err := g.mirror.Metadata("timestamp.json")
			if err != nil {
				t.Fatal(err)
			}
			stBefore := g.mirror.Status()

			err = g.refresh()
			if err == nil {
				t.Fatalf("refresh accepted the attack, want it refused with %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("refresh error %q, want it to say %q", err, tc.wantErr)
			}
			st := g.mirror.Status()
			if st.LastError == "" {
				t.Errorf("status has no last_error after a refused update")
			}
			if st.TimestampVersion != stBefore.TimestampVersion || st.TargetsVersion != stBefore.TargetsVersion {
				t.Errorf("published versions moved to timestamp %d targets %d, want %d and %d",
					st.TimestampVersion, st.TargetsVersion, stBefore.TimestampVersion, stBefore.TargetsVersion)
			}
			after, err := g.mirror.Metadata("timestamp.json")
			if err != nil || !bytes.Equal(after, before) {
				t.Errorf("served timestamp changed after a refused update (err %v)", err)
			}
			up.hook("metadata/timestamp.json", nil)
			got, err := newGoTUFDevice(t, g, r.rootBytes(1)).fetch("pump/pump.img")
			if err != nil || !bytes.Equal(got, img) {
				t.Errorf("a device could not verify the last good state: %v", err)
			}
			if tc.panics {
				if n := counterValue(t, g.reg, "wardgate_tuf_verifier_panics_total"); n != 1 {
					t.Errorf("verifier panics counted %v, want 1", n)
				}
			}
		})
	}
}

// TestFastForwardRecovery: a stolen timestamp key pushes the version far
// ahead; the manufacturer's next honest timestamp is then a rollback and
// is refused, until a new root rotates the timestamp key, after which the
// gateway and its devices recover.
func TestFastForwardRecovery(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	dev := newGoTUFDevice(t, g, r.rootBytes(1))
	if _, err := dev.fetch("pump/pump.img"); err != nil {
		t.Fatal(err)
	}

	honest := r.timestamp.Signed.Version
	r.timestamp.Signed.Version = 1000
	r.bumpTimestamp() // validly signed with the stolen key
	g.mustRefresh()
	if _, err := dev.fetch("pump/pump.img"); err != nil {
		t.Fatalf("device refused the fast-forwarded (validly signed) timestamp: %v", err)
	}

	r.timestamp.Signed.Version = honest
	r.bumpTimestamp()
	if err := g.refresh(); err == nil || !strings.Contains(err.Error(), "must be >=") {
		t.Fatalf("refresh after fast-forward: got %v, want the honest timestamp refused as a rollback", err)
	}
	if st := g.mirror.Status(); st.TimestampVersion != 1001 {
		t.Fatalf("timestamp version %d published, want the fast-forwarded 1001 kept", st.TimestampVersion)
	}

	r.rotate(metadata.TIMESTAMP)
	r.publish()
	if err := g.refresh(); err != nil {
		t.Fatalf("refresh after the timestamp key rotation: %v", err)
	}
	if st := g.mirror.Status(); st.TimestampVersion != r.timestamp.Signed.Version {
		t.Fatalf("timestamp version %d published, want %d after recovery", st.TimestampVersion, r.timestamp.Signed.Version)
	}
	got, err := dev.fetch("pump/pump.img")
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("device did not recover after the key rotation: %v", err)
	}
}

// endless streams zeros until the client goes away, for at most 1 GiB.
func endless(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 32<<10)
	for i := 0; i < 1<<15 && r.Context().Err() == nil; i++ {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// trickle sends data one byte per interval, for at most 15 seconds.
func trickle(data []byte, interval time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(len(data)))
		stop := time.Now().Add(15 * time.Second)
		for i := range data {
			if time.Now().After(stop) {
				return
			}
			if _, err := w.Write(data[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(interval):
			case <-r.Context().Done():
				return
			}
		}
	}
}
