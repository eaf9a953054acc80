package exposure

import (
	"context"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/cache/advisory"
)

// FuzzParseDeviceID checks that an accepted device id splits back into
// itself.
func FuzzParseDeviceID(f *testing.F) {
	for _, s := range []string{"ACME/SN1", "ACME/", "/x", "a/b/c", "a b/c", "Ünï/çødé"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		m, s, err := ParseDeviceID(id)
		if err != nil {
			return
		}
		if m+"/"+s != id || m == "" || s == "" || strings.Contains(m, "/") {
			t.Fatalf("ParseDeviceID(%q) = %q, %q", id, m, s)
		}
	})
}

// FuzzAdvisoryExposure adds arbitrary advisory documents to a small fleet
// and evaluates them: whatever a parsed document states, the evaluation must
// not panic and must give every device a status.
func FuzzAdvisoryExposure(f *testing.F) {
	f.Add(readTestdata(f, "log4shell-not-affected.cdx.vex.json"))
	f.Add(readTestdata(f, "fixed.openvex.json"))
	f.Add(cycloneDXVEX("1.1", "not_affected", "code_not_present", "x", "2022-01-05T00:00:00Z"))
	f.Add([]byte(`{"id":"X-1","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2021-44228"],"affected":[{"package":{"ecosystem":"Maven","name":"org.apache.logging.log4j:log4j-core"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"last_affected":"2.14.1"}]}]}]}`))
	fx := newFixture(f)
	for i, v := range []string{"2.14.1", "2.17.1"} {
		target := fleetTarget(i)
		fx.release(f, target, cycloneDX(f, "pump-fw", "1."+string(rune('0'+i)), log4jCore(v)))
		fx.device(f, fleetDevice(i), target)
	}
	fx.release(f, "releases/abc.bin", cycloneDX(f, "ABC", "4.2", log4jCore("2.14.1")))
	fx.device(f, "ABCCO/1", "releases/abc.bin")
	f.Fuzz(func(t *testing.T, data []byte) {
		store, err := advisory.NewStore(nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Add(context.Background(), data, advisory.Source{Origin: "import", Release: "releases/abc.bin"})
		if err != nil {
			return
		}
		eval := NewEvaluator(fx.index, store)
		ids := append(res.Added, "CVE-2021-44228")
		for _, g := range store.Groups() {
			ids = append(ids, g.ID)
		}
		for _, id := range ids {
			rep := eval.Exposure(id, ExposureOptions{All: true})
			if len(rep.Devices) != 3 {
				t.Fatalf("Exposure(%q) listed %d devices, want 3", id, len(rep.Devices))
			}
			for _, d := range rep.Devices {
				if d.Status == "" {
					t.Fatalf("Exposure(%q): device %s has no status", id, d.Device)
				}
			}
		}
		eval.Risk(RiskOptions{})
	})
}
