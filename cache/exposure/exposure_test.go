package exposure

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/cache/advisory"
)

// log4jFleet pairs each log4j-core version at or around a boundary of
// GHSA-jfh8-c2jp-5v3q ([2.13.0, 2.15.0), [0, 2.3.1), [2.4, 2.12.2)) with
// the status worked out by hand from those ranges under Maven order.
var log4jFleet = []struct {
	version string
	want    advisory.Status
}{
	{"2.0-beta9", advisory.StatusAffected},  // in [0, 2.3.1)
	{"2.3", advisory.StatusAffected},        // just below the fix 2.3.1
	{"2.3.1", advisory.StatusFixed},         // fixed is exclusive
	{"2.3.2", advisory.StatusFixed},         // between 2.3.1 and 2.4
	{"2.4", advisory.StatusAffected},        // introduced is inclusive
	{"2.12.1", advisory.StatusAffected},     // just below the fix 2.12.2
	{"2.12.2", advisory.StatusFixed},        // the backport fix
	{"2.12.3", advisory.StatusFixed},        // after the backport, before 2.13.0
	{"2.13.0-rc1", advisory.StatusFixed},    // a prerelease sorts below 2.13.0
	{"2.13.0", advisory.StatusAffected},     // introduced again
	{"2.14.1", advisory.StatusAffected},     // the version most devices shipped
	{"2.15.0-rc1", advisory.StatusAffected}, // below 2.15.0
	{"2.15.0", advisory.StatusFixed},        // fixed
	{"2.16.0", advisory.StatusFixed},
}

func fleetTarget(i int) string { return fmt.Sprintf("releases/pump-fw-1.%d.bin", i) }
func fleetDevice(i int) string { return fmt.Sprintf("ACME/SN%03d", i) }

// newLog4jFleet indexes one pump firmware release per log4jFleet version
// (subject pump-fw 1.i) with one device on each, plus devices on a release
// without log4j, on a release whose SBOM is not cached, and with an
// unknown release.
func newLog4jFleet(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	for i, tt := range log4jFleet {
		f.release(t, fleetTarget(i), cycloneDX(t, "pump-fw", fmt.Sprintf("1.%d", i),
			log4jCore(tt.version), log4jAPI(tt.version), component{"zlib", "1.3", "pkg:generic/zlib@1.3", "Zlib"}))
		f.device(t, fleetDevice(i), fleetTarget(i))
	}
	f.release(t, "releases/monitor-2.0.bin", cycloneDX(t, "monitor", "2.0", component{"openssl", "3.0.8", "pkg:generic/openssl@3.0.8", "Apache-2.0"}))
	f.device(t, "ACME/MON1", "releases/monitor-2.0.bin")
	f.device(t, "ACME/NOSBOM", "releases/unknown-9.9.bin")
	f.device(t, "ACME/NEW", "")
	f.advisory(t, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"), advisory.Source{Origin: "tuf", Name: "advisories/GHSA-jfh8-c2jp-5v3q.json"})
	return f
}

func TestStatusLog4ShellBoundaries(t *testing.T) {
	f := newLog4jFleet(t)
	for i, tt := range log4jFleet {
		for _, id := range []string{"GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228"} {
			t.Run(tt.version+" "+id, func(t *testing.T) {
				got := f.status(t, fleetDevice(i), id)
				if got.Status != tt.want {
					t.Errorf("got %s (%s), want %s", got.Status, got.Detail, tt.want)
				}
				if got.Vulnerability != "CVE-2021-44228" || len(got.IDs) != 2 {
					t.Errorf("got vulnerability %s %v, want the CVE group with both ids", got.Vulnerability, got.IDs)
				}
				if len(got.Components) != 1 || got.Components[0].Name != "log4j-core" {
					t.Fatalf("got components %+v, want the log4j-core finding only", got.Components)
				}
				if got.Source != "osv:GHSA-jfh8-c2jp-5v3q" {
					t.Errorf("got source %q", got.Source)
				}
			})
		}
	}
	tests := []struct {
		device        string
		want          advisory.Status
		justification string
	}{
		{"ACME/MON1", advisory.StatusNotAffected, JustificationComponentNotPresent},
		{"ACME/NOSBOM", advisory.StatusUnknown, ""},
		{"ACME/NEW", advisory.StatusUnknown, ""},
	}
	for _, tt := range tests {
		got := f.status(t, tt.device, "CVE-2021-44228")
		if got.Status != tt.want || got.Justification != tt.justification {
			t.Errorf("%s: got %s %q (%s), want %s %q", tt.device, got.Status, got.Justification, got.Detail, tt.want, tt.justification)
		}
	}
	if _, err := f.eval.Status("ACME/NOBODY", "CVE-2021-44228"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: got %v, want ErrUnknownDevice", err)
	}
	// An id nothing names is unknown everywhere, never not affected.
	if got := f.status(t, "ACME/MON1", "CVE-1999-0001"); got.Status != advisory.StatusUnknown {
		t.Errorf("unknown id: got %s, want unknown", got.Status)
	}
}

func TestExposureReportCounts(t *testing.T) {
	f := newLog4jFleet(t)
	rep := f.eval.Exposure("CVE-2021-44228", ExposureOptions{})
	wantAffected, wantFixed := 0, 0
	for _, tt := range log4jFleet {
		if tt.want == advisory.StatusAffected {
			wantAffected++
		} else {
			wantFixed++
		}
	}
	if rep.Counts[advisory.StatusAffected] != wantAffected || rep.Counts[advisory.StatusFixed] != wantFixed {
		t.Errorf("got counts %v, want %d affected and %d fixed", rep.Counts, wantAffected, wantFixed)
	}
	if rep.Counts[advisory.StatusUnknown] != 2 || rep.Counts[advisory.StatusNotAffected] != 1 {
		t.Errorf("got counts %v, want 2 unknown and 1 not affected", rep.Counts)
	}
	if !rep.Known || rep.Severity != advisory.SeverityCritical || rep.Score != 10 {
		t.Errorf("got known %v severity %s score %v", rep.Known, rep.Severity, rep.Score)
	}
	// Listed: everything except the monitor, whose release lacks log4j.
	if got, want := len(rep.Devices), len(log4jFleet)+2; got != want {
		t.Fatalf("got %d devices listed, want %d", got, want)
	}
	for i := 1; i < len(rep.Devices); i++ {
		if rep.Devices[i-1].Status.Rank() < rep.Devices[i].Status.Rank() {
			t.Fatalf("devices not sorted by urgency at %d: %s before %s", i, rep.Devices[i-1].Status, rep.Devices[i].Status)
		}
	}
	if rep.Devices[0].Status != advisory.StatusAffected || rep.Devices[0].FixedIn() == "" {
		t.Errorf("first device %+v, want an affected one with a fix version", rep.Devices[0])
	}
	all := f.eval.Exposure("CVE-2021-44228", ExposureOptions{All: true})
	if got, want := len(all.Devices), len(log4jFleet)+3; got != want {
		t.Errorf("with All got %d devices, want %d", got, want)
	}
}

// cycloneDXVEX builds a CycloneDX VEX about pump-fw@version.
func cycloneDXVEX(version, state, justification, detail, timestamp string) []byte {
	return []byte(fmt.Sprintf(`{
  "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
  "serialNumber": "urn:uuid:0f0f0f0f-0000-0000-0000-%012d",
  "metadata": {"timestamp": %q, "component": {"type": "firmware", "name": "pump-fw", "version": %q,
     "bom-ref": "pump", "purl": "pkg:generic/acme/pump-fw@%s"}},
  "vulnerabilities": [{"id": "CVE-2021-44228",
     "analysis": {"state": %q, "justification": %q, "detail": %q},
     "affects": [{"ref": "pump"}]}]
}`, len(timestamp)+len(state), timestamp, version, version, state, justification, detail))
}

func TestVEXChangesOneDevice(t *testing.T) {
	f := newLog4jFleet(t)
	const target = 10 // log4j-core 2.14.1, pump-fw 1.10
	before := map[string]advisory.Status{}
	for i := range log4jFleet {
		before[fleetDevice(i)] = f.status(t, fleetDevice(i), "CVE-2021-44228").Status
	}
	if before[fleetDevice(target)] != advisory.StatusAffected {
		t.Fatalf("device %s starts %s, want affected", fleetDevice(target), before[fleetDevice(target)])
	}

	f.advisory(t, cycloneDXVEX("1.10", "not_affected", "code_not_present", "JndiLookup.class removed at build time", "2022-01-05T00:00:00Z"),
		advisory.Source{Origin: "tuf", Name: "advisories/pump-fw-1.10.vex.json"})
	for i := range log4jFleet {
		got := f.status(t, fleetDevice(i), "CVE-2021-44228")
		if i != target {
			if got.Status != before[fleetDevice(i)] {
				t.Errorf("%s changed from %s to %s, but the VEX is about pump-fw 1.10 only", fleetDevice(i), before[fleetDevice(i)], got.Status)
			}
			continue
		}
		if got.Status != advisory.StatusNotAffected {
			t.Fatalf("after VEX got %s, want not_affected", got.Status)
		}
		if got.Justification != "code_not_present" || got.Detail != "JndiLookup.class removed at build time" {
			t.Errorf("got justification %q detail %q, want the statement's", got.Justification, got.Detail)
		}
		if !strings.HasPrefix(got.Source, "vex:urn:uuid:0f0f0f0f") {
			t.Errorf("got source %q, want the VEX document", got.Source)
		}
		if len(got.Components) != 1 || got.Components[0].Justification != "code_not_present" {
			t.Errorf("got components %+v", got.Components)
		}
	}

	// A later statement supersedes it; an earlier one does not.
	f.advisory(t, cycloneDXVEX("1.10", "in_triage", "", "re-examining", "2022-02-01T00:00:00Z"), advisory.Source{Origin: "import"})
	if got := f.status(t, fleetDevice(target), "CVE-2021-44228"); got.Status != advisory.StatusUnderInvestigation {
		t.Errorf("after a later in_triage statement got %s, want under_investigation", got.Status)
	}
	f.advisory(t, cycloneDXVEX("1.10", "exploitable", "", "old triage note", "2021-12-20T00:00:00Z"), advisory.Source{Origin: "import"})
	if got := f.status(t, fleetDevice(target), "CVE-2021-44228"); got.Status != advisory.StatusUnderInvestigation {
		t.Errorf("an earlier statement changed the status to %s", got.Status)
	}
}

// The CISA VEX example says product ABC 4.2 is not affected by
// CVE-2021-44228; a device whose release SBOM describes ABC 4.2 and
// contains log4j-core 2.14.1 moves from affected to not affected.
func TestRealCycloneDXVEX(t *testing.T) {
	f := newFixture(t)
	data := strings.Replace(string(cycloneDX(t, "ABC", "4.2", log4jCore("2.14.1"))), `"purl":"pkg:generic/acme/ABC@4.2",`, "", 1)
	f.release(t, "releases/abc-4.2.bin", []byte(data))
	f.release(t, "releases/abc-4.1.bin", cycloneDX(t, "ABC", "4.1", log4jCore("2.14.1")))
	f.device(t, "ABCCO/1", "releases/abc-4.2.bin")
	f.device(t, "ABCCO/2", "releases/abc-4.1.bin")
	f.advisory(t, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"), advisory.Source{Origin: "import"})
	if got := f.status(t, "ABCCO/1", "CVE-2021-44228"); got.Status != advisory.StatusAffected {
		t.Fatalf("before VEX got %s, want affected", got.Status)
	}
	f.advisory(t, readTestdata(t, "log4shell-not-affected.cdx.vex.json"), advisory.Source{Origin: "import", Name: "vex-not_affected.json"})
	got := f.status(t, "ABCCO/1", "GHSA-jfh8-c2jp-5v3q")
	if got.Status != advisory.StatusNotAffected || got.Justification != "code_not_present" {
		t.Errorf("after VEX got %s %q, want not_affected code_not_present", got.Status, got.Justification)
	}
	if other := f.status(t, "ABCCO/2", "CVE-2021-44228"); other.Status != advisory.StatusAffected {
		t.Errorf("ABC 4.1 got %s, want still affected", other.Status)
	}
}

// The OpenVEX example speaks of an OCI image and two apk subcomponents.
// With no OSV record at all, its statements alone decide the status.
func TestRealOpenVEXSubcomponents(t *testing.T) {
	f := newFixture(t)
	sbomData := `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,
	  "metadata":{"component":{"type":"container","name":"alpine","purl":"pkg:oci/alpine@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126"}},
	  "components":[
	    {"type":"library","name":"libssl3","version":"3.0.8-r3","purl":"pkg:apk/alpine/libssl3@3.0.8-r3"},
	    {"type":"library","name":"libcrypto3","version":"3.0.8-r3","purl":"pkg:apk/alpine/libcrypto3@3.0.8-r3"},
	    {"type":"library","name":"busybox","version":"1.36.0-r9","purl":"pkg:apk/alpine/busybox@1.36.0-r9"}]}`
	f.release(t, "releases/gateway-image.tar", []byte(sbomData))
	f.release(t, "releases/other-image.tar", cycloneDX(t, "other", "1.0", component{"libssl3", "3.0.8-r3", "pkg:apk/alpine/libssl3@3.0.8-r3", ""}))
	f.device(t, "ACME/IMG1", "releases/gateway-image.tar")
	f.device(t, "ACME/IMG2", "releases/other-image.tar")
	f.advisory(t, readTestdata(t, "fixed.openvex.json"), advisory.Source{Origin: "import"})

	tests := []struct {
		id   string
		want advisory.Status
	}{
		{"CVE-2023-1255", advisory.StatusFixed},
		{"CVE-2023-2650", advisory.StatusFixed},
		{"CVE-2023-2975", advisory.StatusFixed},
		{"CVE-2023-3446", advisory.StatusNotAffected},
		{"CVE-2023-3817", advisory.StatusNotAffected},
	}
	for _, tt := range tests {
		got := f.status(t, "ACME/IMG1", tt.id)
		if got.Status != tt.want {
			t.Errorf("%s: got %s (%s), want %s", tt.id, got.Status, got.Detail, tt.want)
		}
		if len(got.Components) != 2 {
			t.Errorf("%s: got %d component findings, want libssl3 and libcrypto3", tt.id, len(got.Components))
		}
		if tt.want == advisory.StatusNotAffected && got.Justification != "vulnerable_code_not_present" {
			t.Errorf("%s: got justification %q", tt.id, got.Justification)
		}
		// The other image is not the product the statements name.
		if other := f.status(t, "ACME/IMG2", tt.id); other.Status != advisory.StatusNotAffected || other.Justification != JustificationComponentNotPresent {
			t.Errorf("%s: other image got %s %q", tt.id, other.Status, other.Justification)
		}
	}
}

// The Zephyr SBOM names its one package without purl or CPE, so the
// status reports that it could not be compared.
func TestStatusNamesUncomparedComponents(t *testing.T) {
	f := newFixture(t)
	f.release(t, "releases/zephyr.bin", readTestdata(t, "zephyr-firmware.spdx"))
	f.device(t, "ZEPH/1", "releases/zephyr.bin")
	f.advisory(t, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"), advisory.Source{Origin: "import"})
	got := f.status(t, "ZEPH/1", "CVE-2021-44228")
	if got.Status != advisory.StatusNotAffected || got.Justification != JustificationComponentNotPresent {
		t.Errorf("got %s %q", got.Status, got.Justification)
	}
	if !strings.Contains(got.Detail, "1 component(s) have no package URL") {
		t.Errorf("got detail %q, want it to count the uncompared package", got.Detail)
	}
}

func TestUnknownOrderNeverNotAffected(t *testing.T) {
	f := newFixture(t)
	f.release(t, "releases/web-1.bin", cycloneDX(t, "web", "1",
		component{"laravel", "9.1.0", "pkg:composer/laravel/framework@9.1.0", "MIT"},
		component{"libfoo", "1.2.3", "pkg:github/foo/libfoo@1.2.3", "MIT"}))
	f.device(t, "ACME/WEB1", "releases/web-1.bin")
	f.advisory(t, []byte(`[
	  {"id":"OSV-PHP-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Packagist","name":"laravel/framework"},
	    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"9.0.0"}]}]}]},
	  {"id":"OSV-GIT-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Packagist","name":"laravel/framework"},
	    "ranges":[{"type":"GIT","repo":"https://github.com/laravel/framework","events":[{"introduced":"0"},{"fixed":"abcdef0"}]}]}]}
	]`), advisory.Source{Origin: "import"})
	for _, id := range []string{"OSV-PHP-1", "OSV-GIT-1"} {
		if got := f.status(t, "ACME/WEB1", id); got.Status != advisory.StatusUnknown {
			t.Errorf("%s: got %s (%s), want unknown", id, got.Status, got.Detail)
		}
	}
}
