package advisory

import (
	"testing"

	"github.com/wardgate/wardgate/cache/sbom"
)

// smallOSV is a short seed in the shape of the real GHSA record; the real
// 12 KB file slows the fuzzer's minimisation of new inputs.
const smallOSV = `{"schema_version":"1.3.0","id":"GHSA-jfh8-c2jp-5v3q","modified":"2022-03-25T20:56:18Z",
"aliases":["CVE-2021-44228"],"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
"affected":[{"package":{"ecosystem":"Maven","name":"org.apache.logging.log4j:log4j-core"},
"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.13.0"},{"fixed":"2.15.0"}]}],"versions":["2.14.1"]}],
"database_specific":{"severity":"CRITICAL"}}`

// FuzzParse feeds arbitrary bytes to the advisory parsers through format
// detection; a document Parse accepts must evaluate without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(smallOSV))
	f.Add(readTestdata(f, "fixed.openvex.json"))
	f.Add(readTestdata(f, "log4shell-not-affected.cdx.vex.json"))
	f.Add([]byte(`[` + smallOSV + `]`))
	f.Add([]byte(`<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><vulnerabilities><vulnerability><id>CVE-1</id><affects><target><ref>x</ref></target></affects></vulnerability></vulnerabilities></bom>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, _, err := Parse(data)
		if err != nil {
			return
		}
		for _, r := range doc.Records {
			for _, k := range r.Packages() {
				r.EvaluatePackage(k, "", "1.0.0")
			}
			r.Rating()
		}
		if doc.VEX != nil {
			c := &sbom.Component{Name: "x", Version: "1.0.0", PURL: "pkg:npm/x@1.0.0"}
			for _, st := range doc.VEX.Statements {
				for _, p := range st.Products {
					p.Match(c, MatchOptions{Refs: true})
				}
			}
		}
	})
}

// FuzzEvaluate evaluates arbitrary versions against arbitrary range bounds
// in every ordered ecosystem.
func FuzzEvaluate(f *testing.F) {
	f.Add("2.14.1", "2.13.0", "2.15.0")
	f.Add("1:2.30-1+deb10u1", "0", "2.31-1")
	f.Add("1.0a1", "1.0.dev0", "1.0")
	f.Add("3.0.8-r3", "3.0.8-r0", "3.0.9_p1")
	f.Fuzz(func(t *testing.T, v, introduced, fixed string) {
		for _, eco := range []string{"Maven", "npm", "PyPI", "Go", "Debian", "Alpine", "Red Hat", "RubyGems", "NuGet", "Packagist"} {
			a := Affected{Package: Package{Ecosystem: eco, Name: "p"}, Ranges: []Range{
				{Type: "ECOSYSTEM", Events: []Event{{Introduced: introduced}, {Fixed: fixed}}},
				{Type: "SEMVER", Events: []Event{{Introduced: introduced}, {LastAffected: fixed}, {Limit: fixed}}},
			}, Versions: []string{fixed}}
			got := a.Evaluate(v)
			if got.Status == "" {
				t.Fatalf("%s: empty status for %q in [%q, %q)", eco, v, introduced, fixed)
			}
		}
		_, _ = InVers("vers:maven/>="+introduced+"|<"+fixed, v)
	})
}
