package advisory

import (
	"strings"
	"testing"

	"github.com/wardgate/wardgate/cache/sbom"
)

func log4shell(t *testing.T) *OSV {
	t.Helper()
	doc, _ := mustParse(t, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"))
	return doc.Records[0]
}

// Expected statuses worked out by hand from the three ranges of
// GHSA-jfh8-c2jp-5v3q under Maven order: [2.13.0, 2.15.0), [0, 2.3.1),
// [2.4, 2.12.2). Every introduced and fixed version is a boundary case.
func TestEvaluateLog4ShellBoundaries(t *testing.T) {
	rec := log4shell(t)
	tests := []struct {
		version string
		want    Status
		fixedIn string
	}{
		{"2.0-beta9", StatusAffected, "2.3.1"}, // first 2.x release, inside [0, 2.3.1)
		{"2.0", StatusAffected, "2.3.1"},
		{"2.3", StatusAffected, "2.3.1"},
		{"2.3.1", StatusFixed, "2.3.1"},   // fixed is exclusive
		{"2.3.2", StatusFixed, "2.3.1"},   // past the first fix, below 2.4
		{"2.4", StatusAffected, "2.12.2"}, // introduced is inclusive
		{"2.4.0", StatusAffected, "2.12.2"},
		{"2.4.1", StatusAffected, "2.12.2"},
		{"2.12.1", StatusAffected, "2.12.2"},
		{"2.12.2", StatusFixed, "2.12.2"},
		{"2.12.3", StatusFixed, "2.12.2"},
		{"2.13.0-rc1", StatusFixed, "2.12.2"}, // a prerelease sorts before 2.13.0
		{"2.13.0", StatusAffected, "2.15.0"},
		{"2.14.1", StatusAffected, "2.15.0"},
		{"2.15.0-rc1", StatusAffected, "2.15.0"},
		{"2.15.0", StatusFixed, "2.15.0"},
		{"2.16.0", StatusFixed, "2.15.0"},
		{"2.17.1", StatusFixed, "2.15.0"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			got, ok := rec.EvaluatePackage(log4jCore, "", tt.version)
			if !ok {
				t.Fatal("record does not name log4j-core")
			}
			if got.Status != tt.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Reason, tt.want)
			}
			if got.FixedIn != tt.fixedIn {
				t.Errorf("got fixed in %q, want %q", got.FixedIn, tt.fixedIn)
			}
		})
	}
	if _, ok := rec.EvaluatePackage(sbom.PackageKey{Ecosystem: "Maven", Name: "org.apache.logging.log4j:log4j-api"}, "", "2.14.1"); ok {
		t.Error("record matched log4j-api, which it does not list")
	}
	if got, _ := rec.EvaluatePackage(log4jCore, "", ""); got.Status != StatusUnknown {
		t.Errorf("empty version gives %s, want unknown", got.Status)
	}
}

func entry(ecosystem string, ranges []Range, versions ...string) Affected {
	return Affected{Package: Package{Ecosystem: ecosystem, Name: "pkg"}, Ranges: ranges, Versions: versions}
}

func events(typ string, ev ...Event) Range { return Range{Type: typ, Events: ev} }

func TestEvaluateSchemaRules(t *testing.T) {
	tests := []struct {
		name    string
		entry   Affected
		version string
		want    Status
	}{
		{"last_affected inclusive", entry("npm", []Range{events("SEMVER", Event{Introduced: "1.0.0"}, Event{LastAffected: "1.4.0"})}), "1.4.0", StatusAffected},
		{"above last_affected", entry("npm", []Range{events("SEMVER", Event{Introduced: "1.0.0"}, Event{LastAffected: "1.4.0"})}), "1.4.1", StatusFixed},
		{"introduced 0 alone", entry("PyPI", []Range{events("ECOSYSTEM", Event{Introduced: "0"})}), "0.0.1.dev1", StatusAffected},
		{"below introduced", entry("Go", []Range{events("SEMVER", Event{Introduced: "1.2.0"}, Event{Fixed: "1.3.0"})}), "1.1.9", StatusNotAffected},
		{"go v prefix", entry("Go", []Range{events("SEMVER", Event{Introduced: "1.2.0"}, Event{Fixed: "1.3.0"})}), "v1.2.5", StatusAffected},
		{"two intervals, gap", entry("npm", []Range{events("SEMVER", Event{Introduced: "1.0.0"}, Event{Fixed: "1.0.2"}, Event{Introduced: "3.0.0"}, Event{Fixed: "3.2.5"})}), "2.0.0", StatusFixed},
		{"two intervals, second", entry("npm", []Range{events("SEMVER", Event{Introduced: "1.0.0"}, Event{Fixed: "1.0.2"}, Event{Introduced: "3.0.0"}, Event{Fixed: "3.2.5"})}), "3.1.0", StatusAffected},
		{"unsorted events", entry("npm", []Range{events("SEMVER", Event{Fixed: "3.2.5"}, Event{Introduced: "3.0.0"}, Event{Fixed: "1.0.2"}, Event{Introduced: "1.0.0"})}), "1.0.1", StatusAffected},
		{"versions list exact", entry("Packagist", nil, "1.2.3", "1.2.4"), "1.2.4", StatusAffected},
		{"versions list miss", entry("Packagist", nil, "1.2.3"), "1.2.30", StatusNotAffected},
		{"versions list beats GIT", entry("Packagist", []Range{{Type: "GIT", Repo: "https://example.com/x.git", Events: []Event{{Introduced: "0"}}}}, "1.0"), "1.0", StatusAffected},
		{"GIT range unknown", entry("npm", []Range{{Type: "GIT", Repo: "https://example.com/x.git", Events: []Event{{Introduced: "abc"}, {Fixed: "def"}}}}), "1.0.0", StatusUnknown},
		{"unknown ecosystem order", entry("Packagist", []Range{events("ECOSYSTEM", Event{Introduced: "1.0"}, Event{Fixed: "2.0"})}), "3.0", StatusUnknown},
		{"unparseable version", entry("npm", []Range{events("SEMVER", Event{Introduced: "1.0.0"})}), "latest", StatusUnknown},
		{"invalid range", entry("npm", []Range{{Type: "SEMVER", Invalid: "range has no introduced event"}}), "1.0.0", StatusUnknown},
		{"affected beats unknown", entry("npm", []Range{{Type: "GIT", Events: []Event{{Introduced: "a"}}}, events("SEMVER", Event{Introduced: "0"})}), "1.0.0", StatusAffected},
		{"limit above", entry("npm", []Range{events("SEMVER", Event{Introduced: "0"}, Event{Limit: "2.0.0"})}), "2.0.0", StatusNotAffected},
		{"limit below", entry("npm", []Range{events("SEMVER", Event{Introduced: "0"}, Event{Limit: "2.0.0"})}), "1.9.9", StatusAffected},
		{"limit star", entry("npm", []Range{events("SEMVER", Event{Introduced: "0"}, Event{Limit: "*"})}), "9.9.9", StatusAffected},
		{"debian epoch", entry("Debian:12", []Range{events("ECOSYSTEM", Event{Introduced: "0"}, Event{Fixed: "1:2.0-1"})}), "2.5-1", StatusAffected},
		{"alpine revision", entry("Alpine:v3.18", []Range{events("ECOSYSTEM", Event{Introduced: "0"}, Event{Fixed: "3.0.8-r3"})}), "3.0.8-r3", StatusFixed},
		{"pypi prerelease", entry("PyPI", []Range{events("ECOSYSTEM", Event{Introduced: "2.0"}, Event{Fixed: "2.2"})}), "2.0rc1", StatusNotAffected},
		{"bad event version", entry("npm", []Range{events("SEMVER", Event{Introduced: "x.y"})}), "1.0.0", StatusUnknown},
		{"unknown range type", entry("npm", []Range{{Type: "DATE", Events: []Event{{Introduced: "0"}}}}), "1.0.0", StatusUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.entry.Evaluate(tt.version)
			if got.Status != tt.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Reason, tt.want)
			}
		})
	}
}

func TestEvaluateRangeValidation(t *testing.T) {
	doc, warnings := mustParse(t, []byte(`{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[
	  {"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVER","events":[{"fixed":"1.0.0"}]}]},
	  {"package":{"ecosystem":"npm","name":"b"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.0.0"},{"last_affected":"2.0.0"}]}]},
	  {"package":{"ecosystem":"npm","name":"c"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"broken":"1"}]}]}
	]}`))
	if len(warnings) != 3 {
		t.Errorf("got warnings %v, want one per invalid range", warnings)
	}
	for _, name := range []string{"a", "b", "c"} {
		got, ok := doc.Records[0].EvaluatePackage(sbom.PackageKey{Ecosystem: "npm", Name: name}, "", "0.5.0")
		if !ok || got.Status != StatusUnknown {
			t.Errorf("package %s: got %s, want unknown", name, got.Status)
		}
	}
}

func TestEvaluateWithdrawnAndDistro(t *testing.T) {
	doc, _ := mustParse(t, []byte(`[
	  {"id":"W-1","modified":"2024-01-01T00:00:00Z","withdrawn":"2024-02-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}]},
	  {"id":"D-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1n-0+deb11u1"}]}]}]}
	]`))
	if _, ok := doc.Records[0].EvaluatePackage(sbom.PackageKey{Ecosystem: "npm", Name: "a"}, "", "1.0.0"); ok {
		t.Error("withdrawn record still matches")
	}
	openssl := sbom.PackageKey{Ecosystem: "Debian", Name: "openssl"}
	tests := []struct {
		distro string
		match  bool
	}{
		{"", true}, {"debian-11", true}, {"bullseye", true}, {"debian-11.6", true}, {"debian-12", false}, {"bookworm", false},
	}
	for _, tt := range tests {
		_, ok := doc.Records[1].EvaluatePackage(openssl, tt.distro, "1.1.1k-1")
		if ok != tt.match {
			t.Errorf("distro %q: match = %v, want %v", tt.distro, ok, tt.match)
		}
	}
	if !distroMatches("Alpine:v3.18", "alpine-3.18.4") || distroMatches("Alpine:v3.18", "3.19") {
		t.Error("Alpine release matching is wrong")
	}
	if !distroMatches("Ubuntu:22.04:LTS", "ubuntu-22.04") || distroMatches("Ubuntu:Pro:18.04:LTS", "ubuntu-22.04") {
		t.Error("Ubuntu release matching is wrong")
	}
}

func TestInVers(t *testing.T) {
	tests := []struct {
		expr, version string
		want          bool
		wantErr       string
	}{
		{"vers:maven/>=2.0|<2.15.0", "2.14.1", true, ""},
		{"vers:maven/>=2.0|<2.15.0", "2.15.0", false, ""},
		{"vers:maven/>=2.0|<2.3.1|>=2.4|<2.12.2", "2.3.2", false, ""},
		{"vers:maven/>=2.0|<2.3.1|>=2.4|<2.12.2", "2.5", true, ""},
		{"vers:npm/1.2.3", "1.2.3", true, ""},
		{"vers:npm/!=1.2.3|>=1.0.0", "1.2.3", false, ""},
		{"vers:npm/<1.0.0", "0.9.0", true, ""},
		{"vers:npm/>2.0.0", "2.0.1", true, ""},
		{"vers:npm/*", "anything", true, ""},
		{"vers:pypi/>=1.0|<=1.5", "1.5", true, ""},
		{"npm/1.2.3", "1.2.3", false, "does not start"},
		{"vers:nonesuch/1.0", "1.0", false, "no known version order"},
		{"vers:npm/>=1.0.0||<2.0.0", "1.5.0", false, "empty constraint"},
		{"vers:npm/>=1.0.0", "latest", false, "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+" "+tt.version, func(t *testing.T) {
			got, err := InVers(tt.expr, tt.version)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("InVers: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
