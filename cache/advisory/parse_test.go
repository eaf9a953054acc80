package advisory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cache/sbom"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading testdata: %v", err)
	}
	return b
}

func mustParse(t *testing.T, data []byte) (*Document, []Warning) {
	t.Helper()
	doc, warnings, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return doc, warnings
}

var log4jCore = sbom.PackageKey{Ecosystem: "Maven", Name: "org.apache.logging.log4j:log4j-core"}

// GHSA-jfh8-c2jp-5v3q is OSV 1.3.0 with one alias (CVE-2021-44228), one
// CVSS v3.1 vector, database severity CRITICAL and three affected entries
// for log4j-core: [2.13.0, 2.15.0), [0, 2.3.1) and [2.4, 2.12.2).
func TestParseLog4ShellOSV(t *testing.T) {
	doc, warnings := mustParse(t, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"))
	if len(warnings) != 0 {
		t.Errorf("got warnings %v", warnings)
	}
	if doc.Kind != KindOSV || len(doc.Records) != 1 {
		t.Fatalf("got kind %s with %d records, want one OSV record", doc.Kind, len(doc.Records))
	}
	r := doc.Records[0]
	if r.ID != "GHSA-jfh8-c2jp-5v3q" || r.SchemaVersion != "1.3.0" {
		t.Errorf("got id %q schema %q", r.ID, r.SchemaVersion)
	}
	if len(r.Aliases) != 1 || r.Aliases[0] != "CVE-2021-44228" {
		t.Errorf("got aliases %v, want [CVE-2021-44228]", r.Aliases)
	}
	if want := time.Date(2022, 3, 25, 20, 56, 18, 0, time.UTC); !r.Modified.Equal(want) {
		t.Errorf("got modified %v, want %v", r.Modified, want)
	}
	if want := time.Date(2021, 12, 10, 0, 40, 56, 0, time.UTC); !r.Published.Equal(want) {
		t.Errorf("got published %v, want %v", r.Published, want)
	}
	if r.Summary != "Remote code injection in Log4j" {
		t.Errorf("got summary %q", r.Summary)
	}
	if len(r.Affected) != 3 {
		t.Fatalf("got %d affected entries, want 3", len(r.Affected))
	}
	wantRanges := [][2]string{{"2.13.0", "2.15.0"}, {"0", "2.3.1"}, {"2.4", "2.12.2"}}
	for i, a := range r.Affected {
		if a.Key() != log4jCore {
			t.Errorf("affected[%d] package %v, want %v", i, a.Key(), log4jCore)
		}
		if len(a.Ranges) != 1 || a.Ranges[0].Type != "ECOSYSTEM" || len(a.Ranges[0].Events) != 2 {
			t.Fatalf("affected[%d] ranges %+v", i, a.Ranges)
		}
		ev := a.Ranges[0].Events
		if ev[0].Introduced != wantRanges[i][0] || ev[1].Fixed != wantRanges[i][1] {
			t.Errorf("affected[%d] events %+v, want introduced %s fixed %s", i, ev, wantRanges[i][0], wantRanges[i][1])
		}
	}
	if got := r.Packages(); len(got) != 1 || got[0] != log4jCore {
		t.Errorf("got packages %v", got)
	}
	label, score := r.Rating()
	if label != SeverityCritical || score != 10.0 {
		t.Errorf("got rating %s %.1f, want CRITICAL 10.0", label, score)
	}
}

// The OpenVEX example has five statements about one OCI image and its two
// apk subcomponents: three fixed, two not_affected with justification
// vulnerable_code_not_present.
func TestParseOpenVEX(t *testing.T) {
	doc, warnings := mustParse(t, readTestdata(t, "fixed.openvex.json"))
	if len(warnings) != 0 {
		t.Errorf("got warnings %v", warnings)
	}
	if doc.Kind != KindOpenVEX || doc.VEX == nil {
		t.Fatalf("got kind %s", doc.Kind)
	}
	v := doc.VEX
	if v.ID != "https://openvex.dev/docs/public/vex-d4e9020b6d0d26f131d535e055902dd6ccf3e2088bce3079a8cd3588a4b14c78" || v.Version != 1 {
		t.Errorf("got id %q version %d", v.ID, v.Version)
	}
	if v.Author != "The OpenVEX Project <openvex@openssf.org>" {
		t.Errorf("got author %q", v.Author)
	}
	wantTime := time.Date(2023, 7, 18, 0, 28, 47, 696004345, time.UTC)
	if !v.Timestamp.Equal(wantTime) {
		t.Errorf("got timestamp %v, want %v", v.Timestamp, wantTime)
	}
	if len(v.Statements) != 5 {
		t.Fatalf("got %d statements, want 5", len(v.Statements))
	}
	want := []struct {
		id     string
		status Status
	}{
		{"CVE-2023-1255", StatusFixed}, {"CVE-2023-2650", StatusFixed}, {"CVE-2023-2975", StatusFixed},
		{"CVE-2023-3446", StatusNotAffected}, {"CVE-2023-3817", StatusNotAffected},
	}
	for i, st := range v.Statements {
		if st.Vulnerability != want[i].id || st.Status != want[i].status {
			t.Errorf("statement %d: got %s %s, want %s %s", i, st.Vulnerability, st.Status, want[i].id, want[i].status)
		}
		if len(st.Products) != 1 || st.Products[0].PURL != "pkg:oci/alpine@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126" {
			t.Fatalf("statement %d products %+v", i, st.Products)
		}
		subs := st.Products[0].Subcomponents
		if len(subs) != 2 || subs[0].PURL != "pkg:apk/alpine/libssl3@3.0.8-r3" || subs[1].PURL != "pkg:apk/alpine/libcrypto3@3.0.8-r3" {
			t.Errorf("statement %d subcomponents %+v", i, subs)
		}
		if !st.Timestamp.Equal(wantTime) {
			t.Errorf("statement %d timestamp %v, want the document's", i, st.Timestamp)
		}
		if st.Status == StatusNotAffected {
			if st.Justification != "vulnerable_code_not_present" || st.Detail != "affected functions were removed before packaging" {
				t.Errorf("statement %d justification %q detail %q", i, st.Justification, st.Detail)
			}
		}
	}
}

// The CISA CycloneDX VEX case states that product ABC 4.2 (metadata.component,
// bom-ref product-ABC) is not_affected by CVE-2021-44228: code_not_present,
// response will_not_fix.
func TestParseCycloneDXVEX(t *testing.T) {
	doc, _ := mustParse(t, readTestdata(t, "log4shell-not-affected.cdx.vex.json"))
	if doc.Kind != KindCycloneDXVEX || doc.VEX == nil || len(doc.VEX.Statements) != 1 {
		t.Fatalf("got %+v", doc)
	}
	if !strings.HasPrefix(doc.VEX.ID, "sha256:") {
		t.Errorf("got id %q, want one derived from the digest (the document has no serialNumber)", doc.VEX.ID)
	}
	st := doc.VEX.Statements[0]
	if st.Vulnerability != "CVE-2021-44228" || st.Status != StatusNotAffected || st.Justification != "code_not_present" || st.Action != "will_not_fix" {
		t.Errorf("got statement %+v", st)
	}
	if !strings.Contains(st.Detail, "Class with vulnerable code was removed") {
		t.Errorf("got detail %q", st.Detail)
	}
	if want := time.Date(2022, 3, 3, 0, 0, 0, 0, time.UTC); !st.Timestamp.Equal(want) {
		t.Errorf("got timestamp %v, want the metadata timestamp %v", st.Timestamp, want)
	}
	if len(st.Products) != 1 {
		t.Fatalf("got products %+v", st.Products)
	}
	p := st.Products[0]
	if p.Ref != "product-ABC" || p.Name != "ABC" || p.Version != "4.2" {
		t.Errorf("got product %+v, want ref product-ABC resolved to ABC 4.2", p)
	}
	if st.Document != doc.VEX.ID {
		t.Errorf("statement document %q, want %q", st.Document, doc.VEX.ID)
	}
}

func TestParseOSVArrayAndRejects(t *testing.T) {
	doc, warnings := mustParse(t, []byte(`[
	  {"id":"OSV-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"x"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.0.0"}]}]}]},
	  {"modified":"2024-01-01T00:00:00Z"},
	  {"id":"OSV-2","modified":"yesterday","affected":[{"package":{"ecosystem":"npm","name":"y"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.0.0","fixed":"2.0.0"}]}]}]}
	]`))
	if len(doc.Records) != 2 {
		t.Fatalf("got %d records, want 2", len(doc.Records))
	}
	var skipped, badTime, badEvent bool
	for _, w := range warnings {
		switch {
		case w.Location == "[1]" && strings.Contains(w.Message, "no id"):
			skipped = true
		case w.Location == "OSV-2" && strings.Contains(w.Message, "yesterday"):
			badTime = true
		case strings.HasPrefix(w.Location, "OSV-2 affected[0].ranges[0]") && strings.Contains(w.Message, "exactly one"):
			badEvent = true
		}
	}
	if !skipped || !badTime || !badEvent {
		t.Errorf("got warnings %v", warnings)
	}

	for _, tt := range []struct{ name, data, want string }{
		{"empty", " ", "empty"},
		{"text", "CVE-2021-44228", "neither JSON nor XML"},
		{"unknown JSON", `{"hello":1}`, "neither an OSV record"},
		{"SBOM, not VEX", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}`, "no vulnerabilities"},
		{"OpenVEX without statements", `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"x","statements":[]}`, "no statements"},
		{"XML not CycloneDX", `<osv/>`, "not a CycloneDX"},
		{"empty array", `[]`, "no valid record"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseCycloneDXVEXXMLWithVersions(t *testing.T) {
	data := `<?xml version="1.0"?>
<bom xmlns="http://cyclonedx.org/schema/bom/1.5" serialNumber="urn:uuid:11111111-2222-3333-4444-555555555555" version="2">
  <components><component type="application" bom-ref="pump"><name>pump-fw</name><purl>pkg:generic/acme/pump-fw</purl></component></components>
  <vulnerabilities>
    <vulnerability>
      <id>CVE-2021-44228</id>
      <references><reference><id>GHSA-jfh8-c2jp-5v3q</id><source><name>GitHub</name></source></reference></references>
      <analysis><state>exploitable</state><lastUpdated>2024-02-01T00:00:00Z</lastUpdated></analysis>
      <affects>
        <target><ref>pump</ref><versions>
          <version><version>4.1</version><status>affected</status></version>
          <version><range>vers:generic/&gt;=4.2</range><status>unaffected</status></version>
        </versions></target>
        <target><ref>urn:cdx:aaaaaaaa-0000-0000-0000-000000000000/1#log4j</ref></target>
      </affects>
    </vulnerability>
  </vulnerabilities>
</bom>`
	doc, _ := mustParse(t, []byte(data))
	st := doc.VEX.Statements[0]
	if doc.VEX.ID != "urn:uuid:11111111-2222-3333-4444-555555555555" || doc.VEX.Version != 2 {
		t.Errorf("got id %q version %d", doc.VEX.ID, doc.VEX.Version)
	}
	if st.Status != StatusAffected || len(st.Aliases) != 1 || st.Aliases[0] != "GHSA-jfh8-c2jp-5v3q" {
		t.Errorf("got statement %+v", st)
	}
	if len(st.Products) != 2 {
		t.Fatalf("got products %+v", st.Products)
	}
	pump := st.Products[0]
	if pump.PURL != "pkg:generic/acme/pump-fw" || len(pump.Versions) != 2 || pump.Versions[1].Status != StatusNotAffected {
		t.Errorf("got pump product %+v", pump)
	}
	link := st.Products[1]
	if link.Serial != "urn:uuid:aaaaaaaa-0000-0000-0000-000000000000" || link.BOMRef != "log4j" {
		t.Errorf("got BOM-Link product %+v", link)
	}
}

func TestCVSS3BaseScore(t *testing.T) {
	tests := []struct {
		vector string
		want   float64
	}{
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0},
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8},
		{"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5},
		{"CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9},
		{"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4},
		{"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0},
	}
	for _, tt := range tests {
		got, err := CVSS3BaseScore(tt.vector)
		if err != nil {
			t.Fatalf("CVSS3BaseScore(%q): %v", tt.vector, err)
		}
		if got != tt.want {
			t.Errorf("CVSS3BaseScore(%q) = %.1f, want %.1f", tt.vector, got, tt.want)
		}
	}
	for _, bad := range []string{"AV:N/AC:L", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:N"} {
		if _, err := CVSS3BaseScore(bad); err == nil {
			t.Errorf("CVSS3BaseScore(%q) returned no error", bad)
		}
	}
}
