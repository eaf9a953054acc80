package cache

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestExpiryPolicy(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up, func(o *MirrorOptions, _ *blobOptions) {
		o.ExpiryWarning = 6 * time.Hour
		o.ExpiredDownloadGrace = 72 * time.Hour
	})
	g.mustRefresh()
	target, _ := g.mirror.Target("pump/pump.img")
	steps := []struct {
		name      string
		advance   time.Duration
		freshness string
		alert     float64
		offers    bool
		downloads bool
	}{
		{"fresh after a refresh", 0, FreshnessFresh, 0, true, true},
		{"within the warning period", 19 * time.Hour, FreshnessExpiring, 1, true, true},
		{"expired, within the download grace", 6 * time.Hour, FreshnessExpired, 1, false, true},
		{"expired, after the download grace", 72 * time.Hour, FreshnessExpired, 1, false, false},
	}
	for _, s := range steps {
		g.clock.advance(s.advance)
		g.mirror.checkFreshness()
		st := g.mirror.Status()
		if st.Freshness != s.freshness {
			t.Errorf("%s: freshness %q, want %q", s.name, st.Freshness, s.freshness)
		}
		if got := counterValue(t, g.reg, "wardgate_tuf_expiry_alert"); got != s.alert {
			t.Errorf("%s: wardgate_tuf_expiry_alert %v, want %v", s.name, got, s.alert)
		}
		if (st.Alert != "") != (s.alert == 1) {
			t.Errorf("%s: status alert %q, want one only while expiring or expired", s.name, st.Alert)
		}
		if err := g.mirror.OfferAllowed(); (err == nil) != s.offers || (err != nil && !errors.Is(err, ErrExpired)) {
			t.Errorf("%s: OfferAllowed() = %v, want offers allowed %v", s.name, err, s.offers)
		}
		if err := g.mirror.DownloadAllowed(target); (err == nil) != s.downloads {
			t.Errorf("%s: DownloadAllowed() = %v, want downloads allowed %v", s.name, err, s.downloads)
		}
		if st.ExpiringRole != metadata.TIMESTAMP {
			t.Errorf("%s: expiring role %q, want the timestamp", s.name, st.ExpiringRole)
		}
		served, err := g.mirror.Metadata("timestamp.json")
		if err != nil || !bytes.Equal(served, r.get("metadata/timestamp.json")) {
			t.Errorf("%s: the TUF path no longer serves the verbatim timestamp (err %v)", s.name, err)
		}
		resp, body, err := get(t, g.blobURL(img))
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
			t.Errorf("%s: mirror download: err %v", s.name, err)
		}
	}
	g.clock.advance(-103 * time.Hour)
	r.bumpTimestamp()
	g.mustRefresh()
	if st := g.mirror.Status(); st.Freshness != FreshnessFresh || !st.OffersAllowed {
		t.Errorf("after a refresh: freshness %q, offers %v; want fresh and offering", st.Freshness, st.OffersAllowed)
	}
}

func TestGracePeriodPruning(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up, func(o *MirrorOptions, _ *blobOptions) { o.Grace = 24 * time.Hour })
	g.mustRefresh()
	oldSnap := metaFile(r.snapshot.Signed.Version, metadata.SNAPSHOT)
	oldTargets := metaFile(r.targets.Signed.Version, metadata.TARGETS)
	delete(r.targets.Signed.Targets, "pump/pump.img")
	next := randomBytes(t, 1000)
	r.addTarget(metadata.TARGETS, "pump/pump2.img", next, nil)
	r.publish()
	g.mustRefresh()

	oldTargetURL := g.mirrorURL() + "/targets/pump/" + sha256hex(img) + ".pump.img"
	check := func(when string, wantOld bool) {
		t.Helper()
		for _, f := range []string{oldSnap, oldTargets} {
			_, err := g.mirror.Metadata(f)
			if got := err == nil; got != wantOld {
				t.Errorf("%s: %s servable %v, want %v", when, f, got, wantOld)
			}
		}
		resp, _, err := get(t, oldTargetURL)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.StatusCode == http.StatusOK; got != wantOld {
			t.Errorf("%s: dropped target served with %d, want servable %v", when, resp.StatusCode, wantOld)
		}
		if _, ok := g.mirror.TargetBySHA256(sha256hex(img)); ok != wantOld {
			t.Errorf("%s: dropped target found by hash %v, want %v", when, ok, wantOld)
		}
		if _, err := g.mirror.Metadata("1.root.json"); err != nil {
			t.Errorf("%s: 1.root.json gone: roots must never be pruned", when)
		}
	}
	check("within the grace period", true)
	g.clock.advance(25 * time.Hour)
	if err := g.mirror.prune(); err != nil {
		t.Fatal(err)
	}
	check("after the grace period", false)
	if _, ok := g.mirror.Target("pump/pump2.img"); !ok {
		t.Errorf("the current target was pruned")
	}
}

func TestDelegations(t *testing.T) {
	t.Run("a role delegated alike by two delegators", func(t *testing.T) {
		r := newTUFRepo(t)
		r.delegate(metadata.TARGETS, "vendor", []string{"fw/*"}, false)
		r.delegate(metadata.TARGETS, "lab", []string{"lab/*"}, false)
		r.delegate("lab", "vendor", []string{"fw/*"}, false)
		data := randomBytes(t, 4000)
		r.addTarget("vendor", "fw/x.bin", data, nil)
		r.publish()
		up := newUpstream(t, r)
		g := newGW(t, up)
		g.mustRefresh()
		tg, ok := g.mirror.Target("fw/x.bin")
		if !ok || tg.Role != "vendor" {
			t.Fatalf("delegated target: found %v in role %q, want it from vendor", ok, tg.Role)
		}
		got, err := newGoTUFDevice(t, g, r.rootBytes(1)).fetch("fw/x.bin")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("go-tuf device: %v", err)
		}
	})
	t.Run("a role the delegators disagree about", func(t *testing.T) {
		r := newTUFRepo(t)
		r.delegate(metadata.TARGETS, "vendor", []string{"fw/*"}, false)
		r.delegate(metadata.TARGETS, "lab", []string{"lab/*"}, false)
		r.delegate("lab", "vendor", []string{"lab/*"}, false)
		r.addTarget("vendor", "lab/x.bin", []byte("only lab may sign this"), nil)
		r.publish()
		up := newUpstream(t, r)
		g := newGW(t, up)
		err := g.refresh()
		if err == nil || !strings.Contains(err.Error(), "delegated differently") {
			t.Fatalf("refresh: got %v, want the role refused as delegated differently", err)
		}
	})
	t.Run("a target outside the delegated paths is ignored", func(t *testing.T) {
		r := newTUFRepo(t)
		r.delegate(metadata.TARGETS, "vendor", []string{"fw/*"}, false)
		r.addTarget("vendor", "other/x.bin", []byte("outside"), nil)
		r.publish()
		up := newUpstream(t, r)
		g := newGW(t, up)
		g.mustRefresh()
		if _, ok := g.mirror.Target("other/x.bin"); ok {
			t.Fatalf("mirror offers a target its role was not delegated")
		}
	})
}

func TestTrustedStateSurvivesWipe(t *testing.T) {
	r, img := smallRepo(t)
	up := newUpstream(t, r)
	g := newGW(t, up)
	g.mustRefresh()
	if err := g.mirror.Prefetch(t.Context(), "pump/pump.img"); err != nil {
		t.Fatal(err)
	}
	old := r.get("metadata/timestamp.json")
	r.publish()
	g.mustRefresh()
	version := g.mirror.Status().TimestampVersion

	g.close()
	if err := os.RemoveAll(filepath.Join(g.dir, "blobs")); err != nil {
		t.Fatal(err)
	}
	g.open(up)
	if st := g.mirror.Status(); st.TimestampVersion != version || st.Targets != 1 {
		t.Fatalf("after restart: timestamp %d with %d targets, want %d with 1", st.TimestampVersion, st.Targets, version)
	}
	r.set("metadata/timestamp.json", old)
	if err := g.refresh(); err == nil || !strings.Contains(err.Error(), "must be >=") {
		t.Fatalf("rollback after restart and wipe: got %v, want it refused", err)
	}
	resp, body, err := get(t, g.blobURL(img))
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
		t.Fatalf("download after the wipe (pulled through again): err %v", err)
	}
}

func TestApprovedReleasesArePinnedAndPrefetched(t *testing.T) {
	r, files := standardRepo(t)
	extra := map[string][]byte{"b.img": randomBytes(t, 300<<10), "c.img": randomBytes(t, 300<<10)}
	for p, d := range extra {
		r.addTarget(metadata.TARGETS, p, d, nil)
	}
	r.publish()
	up := newUpstream(t, r)
	pump := files["pump/3.2.0/pump.img"]
	sbom := files["pump/3.2.0/sbom.cdx.json"]
	bound := int64(len(pump)+len(sbom)) + int64(len(extra["b.img"])) + 100<<10
	g := newGW(t, up, func(_ *MirrorOptions, b *blobOptions) { b.MaxBytes = bound })
	g.mustRefresh()
	if err := g.mirror.SetApproved([]string{"pump/3.2.0/pump.img"}); err != nil {
		t.Fatal(err)
	}
	if err := g.mirror.Prefetch(t.Context(), "pump/3.2.0/pump.img"); err != nil {
		t.Fatal(err)
	}
	for _, d := range [][]byte{pump, sbom} {
		if !g.blobs.Has(sha256hex(d)) {
			t.Fatalf("prefetch did not cache %s", sha256hex(d))
		}
	}
	for _, p := range []string{"b.img", "c.img"} {
		resp, body, err := get(t, g.blobURL(extra[p]))
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, extra[p]) {
			t.Fatalf("download %s: status %v, err %v", p, resp.StatusCode, err)
		}
		// The server lets go of the blob just after the response ends; a
		// blob being served is never evicted.
		waitFor(t, p+" to be released", func() bool { return g.blobs.Usage().EvictableBytes >= int64(len(extra[p])) })
	}
	if !g.blobs.Has(sha256hex(pump)) || !g.blobs.Has(sha256hex(sbom)) {
		t.Errorf("an approved release or its SBOM was evicted")
	}
	if g.blobs.Has(sha256hex(extra["b.img"])) {
		t.Errorf("the least recently used unpinned blob was kept, want it evicted")
	}
	if err := g.mirror.SetApproved(nil); err != nil {
		t.Fatal(err)
	}
	if pins := g.blobs.Pins(sha256hex(pump)); len(pins) != 0 {
		t.Errorf("pins after the approval ended: %v, want none", pins)
	}
}
