package policy

import (
	"sort"
	"testing"
)

func TestCompareVersionsOrder(t *testing.T) {
	// Each list is in ascending order; semantic-versioning precedence
	// from the specification's examples, then lenient and fallback forms.
	lists := [][]string{
		{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"},
		{"0.9", "1", "1.0.1", "1.2", "1.10", "2.0.0", "10.0.0"},
		{"3.2.0.4", "3.2.0.17", "3.2.1"},
		{"R9", "R10", "R10a", "R10b"},
	}
	for _, list := range lists {
		for i := range list {
			for j := range list {
				want := 0
				switch {
				case i < j:
					want = -1
				case i > j:
					want = 1
				}
				if got := CompareVersions(list[i], list[j]); got != want {
					t.Errorf("CompareVersions(%q, %q) = %d, want %d", list[i], list[j], got, want)
				}
			}
		}
	}
	equal := [][2]string{{"1.2", "1.2.0"}, {"v1.2.0", "1.2.0"}, {"1.2.0+build.5", "1.2.0"}, {"V2", "2.0.0.0"}}
	for _, pair := range equal {
		if got := CompareVersions(pair[0], pair[1]); got != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want 0", pair[0], pair[1], got)
		}
	}
	if CompareVersions("", "0") != -1 || CompareVersions("0", "") != 1 {
		t.Error("an empty version must sort before every other")
	}
	// Sorting a mixed list never panics and keeps semantic versions in order.
	mixed := []string{"2.0.0", "build-7", "1.0.0", "", "1.0.0-rc.1", "release 3"}
	sort.Slice(mixed, func(i, j int) bool { return CompareVersions(mixed[i], mixed[j]) < 0 })
}

func TestParseVersionForms(t *testing.T) {
	tests := []struct {
		in       string
		semantic bool
	}{
		{"1.2.3", true}, {"v1.2.3-rc.1+build.7", true}, {"3.2.0.17", true}, {"7", true},
		{"1.2.3-01", false}, {"1..2", false}, {"1.2.x", false}, {"R12b", false}, {"1.2.3-", false}, {"1.2.3+", false},
		{"99999999999999999999.0", false},
	}
	for _, tc := range tests {
		v, err := ParseVersion(tc.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tc.in, err)
			continue
		}
		if v.Semantic() != tc.semantic {
			t.Errorf("ParseVersion(%q).Semantic() = %v, want %v", tc.in, v.Semantic(), tc.semantic)
		}
	}
	if _, err := ParseVersion("  "); err == nil {
		t.Error("ParseVersion of blanks: got no error, want one")
	}
}

func TestConstraints(t *testing.T) {
	tests := []struct {
		constraint string
		yes, no    []string
	}{
		{">=2.1.0, <3", []string{"2.1.0", "2.9.9", "3.0.0-rc.1"}, []string{"2.0.9", "3.0.0", "3.1"}},
		{">= 2.1 < 3", []string{"2.1", "2.5.0"}, []string{"3"}},
		{"^1.4.2", []string{"1.4.2", "1.9.0"}, []string{"1.4.1", "2.0.0", "2.0.0-rc.1"}},
		{"^0.4.2", []string{"0.4.2", "0.4.9"}, []string{"0.5.0"}},
		{"^0.0.3", []string{"0.0.3"}, []string{"0.0.4"}},
		{"~1.4.2", []string{"1.4.2", "1.4.9"}, []string{"1.5.0", "1.4.1"}},
		{"~1", []string{"1.0.0", "1.9.9"}, []string{"2.0.0", "0.9"}},
		{"^0", []string{"0.0.1", "0.9.0"}, []string{"1.0.0"}},
		{"^0.0", []string{"0.0.1", "0.0.9"}, []string{"0.1.0"}},
		{"=1.2.0", []string{"1.2", "v1.2.0"}, []string{"1.2.1"}},
		{"1.2.0", []string{"1.2.0"}, []string{"1.2.1"}},
		{"!=1.2.0", []string{"1.2.1"}, []string{"1.2.0"}},
		{"<1 || >=2.0.0, <2.1", []string{"0.9", "2.0.5"}, []string{"1.5", "2.1.0"}},
		{">R9", []string{"R10"}, []string{"R8"}},
		{"*", []string{"0.0.1", "anything"}, nil},
	}
	for _, tc := range tests {
		c, err := ParseConstraint(tc.constraint)
		if err != nil {
			t.Errorf("ParseConstraint(%q): %v", tc.constraint, err)
			continue
		}
		for _, s := range tc.yes {
			if v, _ := ParseVersion(s); !c.Check(v) {
				t.Errorf("%q.Check(%q) = false, want true", tc.constraint, s)
			}
		}
		for _, s := range tc.no {
			if v, _ := ParseVersion(s); c.Check(v) {
				t.Errorf("%q.Check(%q) = true, want false", tc.constraint, s)
			}
		}
	}
	for _, bad := range []string{"", ">=", "1.0 ||", "~R9", ">=1.0<2"} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q): got no error, want one", bad)
		}
	}
}
