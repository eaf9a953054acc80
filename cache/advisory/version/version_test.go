package version

import (
	"testing"
)

// ascending checks that every version in vs sorts strictly before the next
// one and that Compare is antisymmetric on each pair.
func ascending(t *testing.T, o Order, vs ...string) {
	t.Helper()
	for i := 0; i+1 < len(vs); i++ {
		for j := i + 1; j < len(vs); j++ {
			got, err := o.Compare(vs[i], vs[j])
			if err != nil {
				t.Fatalf("%s.Compare(%q, %q): %v", o.Name(), vs[i], vs[j], err)
			}
			if got != -1 {
				t.Errorf("%s.Compare(%q, %q) = %d, want -1", o.Name(), vs[i], vs[j], got)
			}
			back, _ := o.Compare(vs[j], vs[i])
			if back != 1 {
				t.Errorf("%s.Compare(%q, %q) = %d, want 1", o.Name(), vs[j], vs[i], back)
			}
		}
	}
}

func equal(t *testing.T, o Order, a, b string) {
	t.Helper()
	got, err := o.Compare(a, b)
	if err != nil {
		t.Fatalf("%s.Compare(%q, %q): %v", o.Name(), a, b, err)
	}
	if got != 0 {
		t.Errorf("%s.Compare(%q, %q) = %d, want 0", o.Name(), a, b, got)
	}
}

func invalid(t *testing.T, o Order, vs ...string) {
	t.Helper()
	for _, v := range vs {
		if o.Valid(v) {
			t.Errorf("%s.Valid(%q) = true, want false", o.Name(), v)
		}
		if _, err := o.Compare(v, "1"); err == nil {
			t.Errorf("%s.Compare(%q, \"1\") returned no error", o.Name(), v)
		}
	}
}

func TestSemVerPrecedence(t *testing.T) {
	// The precedence example of semver.org section 11.
	ascending(t, SemVer, "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
		"1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0",
		"1.0.1", "1.1.0", "2.0.0", "2.1.0", "2.1.1", "10.0.0")
	equal(t, SemVer, "1.0.0+build.1", "1.0.0+other")
	equal(t, SemVer, "v1.2", "1.2.0")
	equal(t, Go, "v0.0.0-20210101000000-abcdefabcdef", "0.0.0-20210101000000-abcdefabcdef")
	equal(t, Go, "v2.0.0+incompatible", "2.0.0")
	ascending(t, Go, "v0.0.0-20200101000000-aaaaaaaaaaaa", "v0.0.0-20210101000000-aaaaaaaaaaaa", "v0.1.0")
	equal(t, NPM, "=1.2.3", "v1.2.3")
	ascending(t, NPM, "1.2.3-beta.2", "1.2.3-beta.10", "1.2.3")
	invalid(t, SemVer, "", "1.2.3.4", "1.x", "1.2.3-", "1.2.3-a..b", "1.2.3+")
}

func TestMavenOrder(t *testing.T) {
	// Orderings given by the Maven version order specification and
	// ComparableVersion's documentation.
	ascending(t, Maven, "1-alpha", "1-beta", "1-milestone", "1-rc", "1-snapshot", "1", "1-sp")
	ascending(t, Maven, "1.foo", "1-foo", "1-1", "1.1")
	ascending(t, Maven, "1-foo2", "1-foo10")
	ascending(t, Maven, "1", "1.1", "1.2", "1.10")
	ascending(t, Maven, "2.0-beta9", "2.0-rc1", "2.0", "2.3", "2.3.1", "2.4", "2.12.1",
		"2.12.2", "2.12.3", "2.13.0-rc1", "2.13.0", "2.14.1", "2.15.0-rc1", "2.15.0", "2.16.0")
	ascending(t, Maven, "1-sp", "1-xyz", "1-zzz")
	for _, pair := range [][2]string{
		{"1", "1.0"}, {"1", "1.0.0"}, {"1.ga", "1"}, {"1-ga", "1"}, {"1.final", "1"},
		{"1-0", "1"}, {"1.0.0-foo.0.0", "1-foo"}, {"1.0.0-0.0.0", "1"}, {"1a1", "1-alpha-1"},
		{"1-cr1", "1-rc1"}, {"2.4", "2.4.0"}, {"1.RELEASE", "1"}, {"1.", "1"}, {"1-", "1"},
	} {
		equal(t, Maven, pair[0], pair[1])
	}
	invalid(t, Maven, "", "  ")
}

func TestPEP440Order(t *testing.T) {
	// The ordering example of PEP 440's "Summary of permitted suffixes".
	ascending(t, PyPI, "1.dev0", "1.0.dev456", "1.0a1", "1.0a2.dev456", "1.0a12.dev456",
		"1.0a12", "1.0b1.dev456", "1.0b2", "1.0b2.post345.dev456", "1.0b2.post345",
		"1.0rc1.dev456", "1.0rc1", "1.0", "1.0+abc.5", "1.0+abc.7", "1.0+5",
		"1.0.post456.dev34", "1.0.post456", "1.0.15", "1.1.dev1", "1!0.1")
	for _, pair := range [][2]string{
		{"1.0", "1.0.0"}, {"1.0alpha1", "1.0a1"}, {"1.0c1", "1.0rc1"}, {"1.0-1", "1.0.post1"},
		{"1.0.rev1", "1.0.post1"}, {"v1.0", "1.0"}, {"1.0-dev1", "1.0.dev1"}, {"1.0RC1", "1.0rc1"},
		{"1.0.preview2", "1.0rc2"}, {"1.0a", "1.0a0"},
	} {
		equal(t, PyPI, pair[0], pair[1])
	}
	invalid(t, PyPI, "", "1.0-beta-x", "french toast", "1.0+")
}

func TestDebianOrder(t *testing.T) {
	ascending(t, Debian, "1.0~rc1", "1.0", "1.0-1", "1.0-1ubuntu1", "1.0-2", "1.0a", "1.0.1", "1:0.9")
	ascending(t, Debian, "2.30-1~", "2.30-1", "2.30-1+deb10u1", "2.30-1+deb10u2", "2.31-1")
	ascending(t, Debian, "7.64.0-4+deb10u1", "7.64.0-4+deb10u2", "7.74.0-1.3+deb11u1")
	equal(t, Debian, "0:1.2-3", "1.2-3")
	equal(t, Debian, "1.002", "1.2")
	invalid(t, Debian, "", "a1.0", "x:1.0", "1.0-", "1.0 beta")
}

func TestAlpineOrder(t *testing.T) {
	ascending(t, Alpine, "1.2_alpha1", "1.2_beta", "1.2_pre2", "1.2_rc1", "1.2", "1.2-r1", "1.2_p1", "1.2a", "1.2.1")
	ascending(t, Alpine, "3.0.8-r0", "3.0.8-r3", "3.0.9-r0", "3.0.10-r0", "3.1.0-r0")
	ascending(t, Alpine, "1.01", "1.1")
	equal(t, Alpine, "1.2.3-r0", "1.2.3-r0")
	invalid(t, Alpine, "", "abc", "1.2_foo", "1.2-x1")
}

func TestRPMOrder(t *testing.T) {
	ascending(t, RPM, "1.0~rc1", "1.0", "1.0^post1", "1.0.1", "2.0")
	ascending(t, RPM, "1.0-1.el8", "1.0-2.el8", "1:0.5-1")
	ascending(t, RPM, "1.a", "1.1")
	equal(t, RPM, "1.0-1", "0:1.0-1")
	equal(t, RPM, "1.0_1", "1.0.1")
	invalid(t, RPM, "", "x:1", "-1")
}

func TestRubyGemsOrder(t *testing.T) {
	ascending(t, RubyGems, "1.0.a", "1.0.b1", "1.0.rc1", "1.0", "1.0.1", "1.1", "2")
	ascending(t, RubyGems, "1.0.0-alpha", "1.0.0")
	equal(t, RubyGems, "1.0.0", "1")
	equal(t, RubyGems, "1.0.a", "1.a")
	invalid(t, RubyGems, "", "junk", "1..0")
}

func TestNuGetOrder(t *testing.T) {
	ascending(t, NuGet, "1.0.0-alpha", "1.0.0-Beta", "1.0.0-rc.1", "1.0.0", "1.0.0.1", "1.0.1", "20.1.0")
	equal(t, NuGet, "1.0", "1.0.0.0")
	equal(t, NuGet, "1.0.0-RC1", "1.0.0-rc1")
	equal(t, NuGet, "1.0.0+abc", "1.0.0")
	invalid(t, NuGet, "", "1.0.0.0.0", "one")
}

func TestForEcosystems(t *testing.T) {
	tests := []struct {
		ecosystem string
		want      string
		ok        bool
	}{
		{"Maven", "Maven", true},
		{"Maven:https://maven.google.com", "Maven", true},
		{"npm", "npm", true},
		{"PyPI", "PEP 440", true},
		{"Go", "Go", true},
		{"Debian:11", "Debian", true},
		{"Ubuntu:22.04:LTS", "Debian", true},
		{"Alpine:v3.18", "Alpine", true},
		{"Red Hat:rhel_aus:8.4::appstream", "RPM", true},
		{"crates.io", "SemVer", true},
		{"NuGet", "NuGet", true},
		{"RubyGems", "RubyGems", true},
		{"Packagist", "", false},
		{"GitHub Actions", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.ecosystem, func(t *testing.T) {
			o, ok := For(tt.ecosystem)
			if ok != tt.ok {
				t.Fatalf("For(%q) ok = %v, want %v", tt.ecosystem, ok, tt.ok)
			}
			if ok && o.Name() != tt.want {
				t.Errorf("For(%q) = %s, want %s", tt.ecosystem, o.Name(), tt.want)
			}
		})
	}
	for _, e := range Supported() {
		if _, ok := For(e); !ok {
			t.Errorf("Supported lists %q but For has no order for it", e)
		}
	}
}

// FuzzCompare checks that no order panics on any input and that each is
// antisymmetric and reflexive on the versions it accepts.
func FuzzCompare(f *testing.F) {
	for _, s := range [][2]string{
		{"1.0.0", "1.0.0-rc.1"}, {"2.0-beta9", "2.15.0"}, {"1.0a1", "1!0.1"},
		{"1:2.30-1+deb10u1", "2.30-1~"}, {"1.2_rc1-r0", "1.2.01"}, {"1.0^x~y", "1.0-1.el8"},
		{"1.0.a", "1.0.0.1"}, {"", "."},
	} {
		f.Add(s[0], s[1])
	}
	orders := []Order{SemVer, NPM, Go, Maven, PyPI, Debian, Alpine, RPM, RubyGems, NuGet}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, o := range orders {
			ab, errA := o.Compare(a, b)
			if errA != nil {
				continue
			}
			ba, errB := o.Compare(b, a)
			if errB != nil {
				t.Fatalf("%s: Compare(%q,%q) ok but Compare(%q,%q): %v", o.Name(), a, b, b, a, errB)
			}
			if ab != -ba {
				t.Fatalf("%s: Compare(%q,%q)=%d but Compare(%q,%q)=%d", o.Name(), a, b, ab, b, a, ba)
			}
			if aa, _ := o.Compare(a, a); aa != 0 {
				t.Fatalf("%s: Compare(%q,%q)=%d, want 0", o.Name(), a, a, aa)
			}
		}
	})
}
