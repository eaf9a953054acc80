package exposure

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/cache/sbom"
)

func TestLicensePolicyCheck(t *testing.T) {
	policy := LicensePolicy{Allow: []string{"MIT", "Apache-2.0", "BSD-3-Clause", "LicenseRef-acme-eula"}, Deny: []string{"GPL-3.0-only", "AGPL-3.0-only"}}
	if err := policy.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct {
		name    string
		license sbom.License
		want    LicenseVerdict
	}{
		{"allowed id", sbom.License{Written: "MIT", Expression: "MIT"}, LicenseAllowed},
		{"OR with a denied choice", sbom.License{Written: "MIT OR GPL-3.0-only", Expression: "MIT OR GPL-3.0-only"}, LicenseAllowed},
		{"AND with a denied part", sbom.License{Written: "MIT AND GPL-3.0-only", Expression: "MIT AND GPL-3.0-only"}, LicenseDenied},
		{"denied alone", sbom.License{Written: "AGPL-3.0-only", Expression: "AGPL-3.0-only"}, LicenseDenied},
		{"denied with exception", sbom.License{Written: "GPL-3.0-only WITH GCC-exception-3.1", Expression: "GPL-3.0-only WITH GCC-exception-3.1"}, LicenseDenied},
		{"not on allow list", sbom.License{Written: "ISC", Expression: "ISC"}, LicenseNotAllowed},
		{"listed custom license", sbom.License{Written: "LicenseRef-acme-eula", Expression: "LicenseRef-acme-eula"}, LicenseAllowed},
		{"unlisted custom license", sbom.License{Written: "LicenseRef-other", Expression: "LicenseRef-other"}, LicenseUnresolved},
		{"free text", sbom.License{Written: "GPLv3/Commercial"}, LicenseUnresolved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := policy.Check(tt.license)
			if got != tt.want {
				t.Errorf("got %s (%s), want %s", got, reason, tt.want)
			}
		})
	}
	noAllow := LicensePolicy{Deny: []string{"GPL-3.0-only"}}
	if got, _ := noAllow.Check(sbom.License{Written: "ISC", Expression: "ISC"}); got != LicenseAllowed {
		t.Errorf("with no allow list ISC got %s, want allowed", got)
	}
	for _, bad := range []LicensePolicy{{Allow: []string{"Not A License"}}, {Deny: []string{"MIT OR ISC"}}, {Allow: []string{"MIT"}, Deny: []string{"mit"}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) returned no error", bad)
		}
	}
}

// The webapp SBOM has 33 MIT, 8 ISC, 1 Apache-2.0 and 1 BSD-2-Clause
// licenses; the medical-device SBOM 41 names that are SPDX ids and 14 free
// text names.
func TestLicensesReportRealSBOMs(t *testing.T) {
	f := newFixture(t)
	f.release(t, "releases/webapp.bin", readTestdata(t, "webapp-1.2.cdx.xml"))
	f.release(t, "releases/device.bin", readTestdata(t, "medical-device.cdx.json"))
	f.device(t, "CERN/1", "releases/webapp.bin")
	f.device(t, "CERN/2", "releases/webapp.bin")

	rep := f.index.Licenses(LicensePolicy{Allow: []string{"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "MPL-2.0", "MS-PL"}, Deny: []string{"ISC"}})
	if rep.Counts[LicenseDenied] != 8 {
		t.Errorf("got %d denied, want the 8 ISC licenses", rep.Counts[LicenseDenied])
	}
	if rep.Counts[LicenseUnresolved] != 14 {
		t.Errorf("got %d unresolved, want the 14 free-text names", rep.Counts[LicenseUnresolved])
	}
	if rep.Counts[LicenseAllowed] != 35+41 {
		t.Errorf("got %d allowed, want 35 webapp and 41 device licenses", rep.Counts[LicenseAllowed])
	}
	if got := len(rep.Findings); got != 8+14 {
		t.Errorf("got %d findings, want 22", got)
	}
	for _, fd := range rep.Findings {
		if fd.Verdict == LicenseDenied && (fd.Release != "releases/webapp.bin" || fd.DeviceCount != 2) {
			t.Errorf("denied finding %+v, want the webapp release with 2 devices", fd)
		}
		if fd.Component == "WolfSSL" && (fd.Verdict != LicenseUnresolved || fd.License != "GPLv3/Commercial") {
			t.Errorf("WolfSSL finding %+v", fd)
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("reading CSV back: %v", err)
	}
	if len(rows) != 1+len(rep.Findings) || rows[0][0] != "release" {
		t.Errorf("got %d CSV rows with header %v", len(rows), rows[0])
	}
}

func TestEndOfSupportRealSBOM(t *testing.T) {
	f := newFixture(t)
	f.release(t, "releases/device.bin", readTestdata(t, "medical-device.cdx.json"))
	f.release(t, "releases/eos.bin", []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[
	  {"type":"library","name":"rtos","version":"1.0","purl":"pkg:generic/rtos@1.0","properties":[{"name":"End-of-Support","value":"2024-06-30"}]}]}`))
	f.device(t, "MED/1", "releases/device.bin")
	f.device(t, "MED/2", "releases/device.bin")
	f.device(t, "MED/3", "releases/eos.bin")

	before := f.index.EndOfSupport(time.Date(2024, 6, 30, 23, 0, 0, 0, time.UTC))
	if len(before.Findings) != 1 || before.Findings[0].Component != "FluentValidationNA" {
		t.Fatalf("on 2024-06-30 got %+v, want only FluentValidationNA (stated no longer supported)", before.Findings)
	}
	if fd := before.Findings[0]; fd.DeviceCount != 2 || len(fd.Devices) != 2 || fd.Devices[0] != "MED/1" {
		t.Errorf("got devices %v", fd.Devices)
	}
	after := f.index.EndOfSupport(time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC))
	if len(after.Findings) != 2 || after.Findings[1].Component != "rtos" || after.Findings[1].Devices[0] != "MED/3" {
		t.Errorf("on 2024-07-01 got %+v, want rtos added", after.Findings)
	}
}

func TestOutdatedReport(t *testing.T) {
	f := newFixture(t)
	for _, v := range []string{"4.1", "4.2", "4.10"} {
		f.release(t, "releases/pump-"+v+".bin", cycloneDX(t, "pump-fw", v))
	}
	f.device(t, "ACME/A", "releases/pump-4.1.bin")
	f.device(t, "ACME/B", "releases/pump-4.10.bin")
	f.device(t, "ACME/C", "releases/pump-4.10.bin") // ahead of its entitlement
	f.device(t, "ACME/D", "")
	f.device(t, "ACME/E", "releases/pump-4.2.bin") // not entitled to anything
	f.device(t, "ACME/F", "releases/pump-4.2.bin") // entitled to an uncached release
	rep := f.index.Outdated(map[string]string{
		"ACME/A": "releases/pump-4.10.bin",
		"ACME/B": "releases/pump-4.10.bin",
		"ACME/C": "releases/pump-4.2.bin",
		"ACME/D": "releases/pump-4.10.bin",
		"ACME/F": "releases/pump-5.0.bin",
	})
	if len(rep.Devices) != 2 || rep.Devices[0].Device != "ACME/A" || rep.Devices[1].Device != "ACME/F" {
		t.Fatalf("got outdated %+v, want ACME/A and ACME/F", rep.Devices)
	}
	if a := rep.Devices[0]; a.CurrentVersion != "4.1" || a.NewestVersion != "4.10" || !a.NewestCached {
		t.Errorf("got %+v", a)
	}
	if f := rep.Devices[1]; f.NewestCached {
		t.Errorf("got %+v, want the newest release reported as not cached", f)
	}
	if rep.UpToDate != 2 || rep.Unknown != 1 || rep.NotEntitled != 1 {
		t.Errorf("got up to date %d, unknown %d, not entitled %d, want 2, 1, 1", rep.UpToDate, rep.Unknown, rep.NotEntitled)
	}
}

func TestRiskNamesFixRelease(t *testing.T) {
	f := newLog4jFleet(t)
	f.advisory(t, []byte(`{"id":"GHSA-zlib-test","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2022-37434"],
	  "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
	  "affected":[{"package":{"ecosystem":"Maven","name":"org.apache.logging.log4j:log4j-api"},"versions":["2.14.1"]}]}`),
		advisory.Source{Origin: "import"})
	rep := f.eval.Risk(RiskOptions{})
	if rep.Vulnerabilities != 2 {
		t.Errorf("evaluated %d vulnerabilities, want 2", rep.Vulnerabilities)
	}
	top := rep.Devices[0]
	// pump-fw 1.10 has log4j-core and log4j-api 2.14.1: both open.
	if top.Device != fleetDevice(10) || top.Affected != 2 || top.MaxSeverity != advisory.SeverityCritical {
		t.Fatalf("top device %+v, want %s with 2 affected", top, fleetDevice(10))
	}
	log4shell := top.Vulnerabilities[0]
	if log4shell.Vulnerability != "CVE-2021-44228" || log4shell.FixedIn != "2.15.0" {
		t.Errorf("got %+v", log4shell)
	}
	// The next versions of pump-fw are 1.11 (log4j 2.15.0-rc1, affected)
	// and 1.12 (2.15.0, fixed).
	if log4shell.FixRelease != fleetTarget(12) {
		t.Errorf("got fix release %q, want %s", log4shell.FixRelease, fleetTarget(12))
	}
	// 1.11 already closes the log4j-api one (2.15.0-rc1 is not listed), but
	// only 1.12 closes both.
	api := top.Vulnerabilities[1]
	if api.Vulnerability != "CVE-2022-37434" || api.FixRelease != fleetTarget(11) {
		t.Errorf("got %+v, want fix release %s", api, fleetTarget(11))
	}
	if top.RecommendedRelease != fleetTarget(12) || top.RecommendedFixes != 2 {
		t.Errorf("got recommended %s (%d fixes), want %s with 2", top.RecommendedRelease, top.RecommendedFixes, fleetTarget(12))
	}
	for i := 1; i < len(rep.Devices); i++ {
		if rep.Devices[i-1].Affected < rep.Devices[i].Affected {
			t.Fatalf("devices not ranked by affected count at %d", i)
		}
	}
	// Candidates from entitlement policy take precedence over the fallback.
	rep = f.eval.Risk(RiskOptions{Candidates: map[string][]string{fleetDevice(10): {fleetTarget(13)}}, Limit: 1})
	if len(rep.Devices) != 1 || rep.Devices[0].Vulnerabilities[0].FixRelease != fleetTarget(13) {
		t.Errorf("with candidates got %+v", rep.Devices)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	var back RiskReport
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Devices[0].Device != fleetDevice(10) {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}

func TestComponentsReport(t *testing.T) {
	f := newFixture(t)
	f.release(t, "releases/device.bin", readTestdata(t, "medical-device.cdx.json"))
	f.device(t, "MED/1", "releases/device.bin")
	f.device(t, "MED/2", "")
	rep, err := f.index.DeviceComponents("MED/1")
	if err != nil {
		t.Fatalf("DeviceComponents: %v", err)
	}
	if len(rep.Components) != 55 || rep.Format != sbom.CycloneDXJSON || rep.Release != "releases/device.bin" {
		t.Errorf("got %d components, format %s, release %s", len(rep.Components), rep.Format, rep.Release)
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 56 {
		t.Fatalf("got %d CSV rows (%v), want header and 55", len(rows), err)
	}
	if _, err := f.index.DeviceComponents("MED/2"); !errors.Is(err, ErrUnknownRelease) {
		t.Errorf("device with unknown release: got %v, want ErrUnknownRelease", err)
	}
	if _, err := f.index.DeviceComponents("MED/9"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: got %v, want ErrUnknownDevice", err)
	}
}

func TestIndexUpdates(t *testing.T) {
	reg := prometheus.NewRegistry()
	ix, err := NewIndex(nil, reg)
	if err != nil {
		t.Fatalf("NewIndex: %v", err)
	}
	for _, bad := range []string{"", "ACME", "/SN1", "ACME/", "ACME/SN 1"} {
		if err := ix.SetDeviceRelease(bad, "r"); err == nil {
			t.Errorf("SetDeviceRelease(%q) returned no error", bad)
		}
	}
	if err := ix.AddRelease("", &sbom.Document{}); err == nil {
		t.Error("AddRelease with an empty target returned no error")
	}
	doc1, _, _ := sbom.Parse(cycloneDX(t, "pump-fw", "1.0", log4jCore("2.14.1")))
	doc2, _, _ := sbom.Parse(cycloneDX(t, "pump-fw", "1.0", log4jCore("2.17.1")))
	key := sbom.PackageKey{Ecosystem: "Maven", Name: "org.apache.logging.log4j:log4j-core"}
	if err := ix.AddRelease("r1", doc1); err != nil {
		t.Fatal(err)
	}
	gen := ix.Generation()
	// Re-adding a release replaces its components.
	if err := ix.AddRelease("r1", doc2); err != nil {
		t.Fatal(err)
	}
	if refs := ix.ReleasesWith(key); len(refs) != 1 || refs[0].Component.Version != "2.17.1" {
		t.Errorf("after replacement got %+v", refs)
	}
	if ix.Generation() == gen {
		t.Error("generation did not change")
	}
	if err := ix.SetDevices(map[string]string{"ACME/1": "r1", "ACME/2": "r1", "ACME/3": ""}); err != nil {
		t.Fatal(err)
	}
	if err := ix.SetDeviceRelease("ACME/2", "r2"); err != nil {
		t.Fatal(err)
	}
	if got := ix.DevicesOn("r1"); len(got) != 1 || got[0] != "ACME/1" {
		t.Errorf("DevicesOn(r1) = %v", got)
	}
	if !ix.RemoveDevice("ACME/1") || ix.RemoveDevice("ACME/1") {
		t.Error("RemoveDevice did not report presence correctly")
	}
	if !ix.RemoveRelease("r1") || len(ix.ReleasesWith(key)) != 0 {
		t.Error("RemoveRelease left postings behind")
	}
	if err := ix.SetDevices(map[string]string{"bad id": "r1"}); err == nil {
		t.Error("SetDevices accepted an invalid id")
	}
	if len(ix.Devices()) != 2 {
		t.Errorf("a rejected snapshot changed the devices: %v", ix.Devices())
	}
	families, _ := reg.Gather()
	if len(families) != 3 {
		t.Errorf("got %d metric families, want 3", len(families))
	}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	var buf bytes.Buffer
	rep := ComponentsReport{Release: "r", Components: []sbom.Component{{Name: "=HYPERLINK(\"http://x\")", Version: "+1", Supplier: "@evil"}}}
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`'=HYPERLINK`, `'+1`, `'@evil`} {
		if !strings.Contains(out, want) {
			t.Errorf("CSV %q lacks %q", out, want)
		}
	}
}

// Check-ins update the index while reports read it; run with -race.
func TestIndexConcurrentUpdates(t *testing.T) {
	f := newLog4jFleet(t)
	extra := cycloneDX(t, "extra", "1", log4jCore("2.14.1"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			if err := f.index.SetDeviceRelease(fleetDevice(i%len(log4jFleet)), fleetTarget((i+1)%len(log4jFleet))); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 0 {
				if _, err := f.index.AddReleaseSBOM("releases/extra.bin", extra); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for i := 0; i < 50; i++ {
		rep := f.eval.Exposure("CVE-2021-44228", ExposureOptions{All: true})
		total := 0
		for _, n := range rep.Counts {
			total += n
		}
		if total != len(log4jFleet)+3 {
			t.Fatalf("exposure counted %d devices, want %d", total, len(log4jFleet)+3)
		}
		f.eval.Risk(RiskOptions{})
	}
	<-done
}
