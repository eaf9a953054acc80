package cache

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// device is a TUF client acting as a device against the gateway.
type device interface {
	fetch(target string) ([]byte, error)
}

// TestDevicesRefuseATamperedGateway attacks devices from the gateway
// side: the gateway's served bytes are tampered with, and both TUF clients
// (go-tuf and tuf-js) must refuse. Each device first completes one good
// update, so it holds trusted state as a real device would.
func TestDevicesRefuseATamperedGateway(t *testing.T) {
	type attack func(t *testing.T, r *tufRepo, g *gw, img []byte, prev map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool
	on := func(name string, h http.HandlerFunc) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/"+name) && !strings.HasSuffix(r.URL.Path, "."+name) {
				return false
			}
			h(w, r)
			return true
		}
	}
	serveBytes := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(b) }
	}
	cases := []struct {
		name    string
		attack  attack
		wantErr string // in go-tuf's error; tuf-js words differ
	}{
		{"rollback to an older timestamp", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			return on("timestamp.json", serveBytes(prev["metadata/timestamp.json"]))
		}, "version"},
		{"fast-forward by editing the version", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			return on("timestamp.json", serveBytes(editSigned(t, mustMeta(t, g, "timestamp.json"), func(s map[string]any) { s["version"] = 999 })))
		}, "signature"},
		{"mix-and-match of an old targets role", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			r.publish() // the device must fetch a new targets role
			g.mustRefresh()
			return on(metaFile(r.targets.Signed.Version, metadata.TARGETS), serveBytes(mustMeta(t, g, metaFile(r.targets.Signed.Version-1, metadata.TARGETS))))
		}, "version"},
		{"arbitrary software", func(t *testing.T, r *tufRepo, g *gw, img []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			evil := bytes.Clone(img)
			evil[len(evil)/2] ^= 0xff
			return on("pump.img", serveBytes(evil))
		}, "hash"},
		{"endless metadata", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			return on("timestamp.json", endless)
		}, "larger than"},
		{"slow retrieval", func(t *testing.T, r *tufRepo, g *gw, img []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			return on("pump.img", trickle(img, 100*time.Millisecond))
		}, "Timeout"},
		{"signatures below the threshold", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			return on("timestamp.json", serveBytes(editEnvelope(t, mustMeta(t, g, "timestamp.json"), func(m map[string]any) { m["signatures"] = []any{} })))
		}, "signature"},
		{"forged next root carrying a malformed key", func(t *testing.T, r *tufRepo, g *gw, _ []byte, prev map[string][]byte) func(http.ResponseWriter, *http.Request) bool {
			forged := editSigned(t, mustMeta(t, g, metaFile(r.root.Signed.Version, metadata.ROOT)), func(s map[string]any) {
				s["version"] = r.root.Signed.Version + 1
				s["keys"].(map[string]any)["0bad"] = map[string]any{"keytype": "ed25519", "scheme": "ed25519", "keyval": map[string]any{"public": "0badc0de"}}
				role := s["roles"].(map[string]any)["root"].(map[string]any)
				role["keyids"] = append(role["keyids"].([]any), "0bad")
			})
			return on(metaFile(r.root.Signed.Version+1, metadata.ROOT), serveBytes(forged))
		}, "signature"},
	}
	clients := []struct {
		name string
		make func(t *testing.T, g *gw, root []byte) device
	}{
		{"go-tuf", func(t *testing.T, g *gw, root []byte) device {
			d := newGoTUFDevice(t, g, root)
			d.timeout = 2 * time.Second
			return d
		}},
		{"tuf-js", func(t *testing.T, g *gw, root []byte) device { return newTufJSDevice(t, g, root) }},
	}
	for _, tc := range cases {
		for _, cl := range clients {
			t.Run(cl.name+"/"+tc.name, func(t *testing.T) {
				r, img := smallRepo(t)
				up := newUpstream(t, r)
				g := newGW(t, up)
				g.mustRefresh()
				dev := cl.make(t, g, r.rootBytes(1))
				prev := r.snapshotFiles()
				r.publish()
				g.mustRefresh()
				if got, err := dev.fetch("pump/pump.img"); err != nil || !bytes.Equal(got, img) {
					t.Fatalf("untampered update failed: %v", err)
				}
				if js, ok := dev.(*tufJSDevice); ok {
					js.deadline = 4 * time.Second // ends the slow retrieval case
				}
				g.setTamper(tc.attack(t, r, g, img, prev))
				got, err := dev.fetch("pump/pump.img")
				if err == nil {
					t.Fatalf("device accepted a tampered gateway (%d bytes), want it refused", len(got))
				}
				if cl.name == "go-tuf" && !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("go-tuf refused with %q, want a reason containing %q", err, tc.wantErr)
				}
				t.Logf("%s refused: %v", cl.name, err)
			})
		}
	}
}

// TestDevicesRefuseFrozenMetadata: upstream stops refreshing; the gateway
// keeps serving the verbatim, now expired, timestamp and never fakes
// freshness, so both device clients refuse it on their own.
func TestDevicesRefuseFrozenMetadata(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	r.lifetime[metadata.TIMESTAMP] = 1500 * time.Millisecond
	r.bumpTimestamp()
	g.mustRefresh()
	js := device(nil)
	if haveTufJS() {
		js = newTufJSDevice(t, g, r.rootBytes(1))
	}
	goTUF := newGoTUFDevice(t, g, r.rootBytes(1))
	if got, err := goTUF.fetch("pump/pump.img"); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("fresh update failed: %v", err)
	}
	time.Sleep(time.Until(r.timestamp.Signed.Expires) + 200*time.Millisecond)
	if st := g.mirror.Status(); st.Freshness != FreshnessExpired {
		t.Errorf("mirror freshness %q after the timestamp expired, want %q", st.Freshness, FreshnessExpired)
	}
	served, err := g.mirror.Metadata("timestamp.json")
	if err != nil || !bytes.Equal(served, r.get("metadata/timestamp.json")) {
		t.Fatalf("mirror does not serve the verbatim expired timestamp (err %v)", err)
	}
	if _, err := goTUF.fetch("pump/pump.img"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("go-tuf device: got %v, want the expired timestamp refused", err)
	}
	if js != nil {
		if _, err := js.fetch("pump/pump.img"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "expired") {
			t.Errorf("tuf-js device: got %v, want the expired timestamp refused", err)
		}
	}
}

func mustMeta(t *testing.T, g *gw, name string) []byte {
	t.Helper()
	b, err := g.mirror.Metadata(name)
	if err != nil {
		t.Fatalf("mirror lacks %s: %v", name, err)
	}
	return b
}

// editEnvelope decodes a metadata file, lets edit change it, and encodes
// it again without signing.
func editEnvelope(t *testing.T, data []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editSigned changes the signed part and keeps the old signatures.
func editSigned(t *testing.T, data []byte, edit func(map[string]any)) []byte {
	return editEnvelope(t, data, func(m map[string]any) { edit(m["signed"].(map[string]any)) })
}
