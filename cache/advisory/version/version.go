// Package version owns the version orders of package ecosystems, as OSV
// range evaluation and VEX version ranges need them.
//
// Supported orders (see For for the ecosystem names each one serves):
//
//   - SemVer 2.0.0 precedence: OSV SEMVER ranges, npm, crates.io, Hex,
//     SwiftURL, Go (with the "v" prefix and "+incompatible" tolerated).
//   - Maven: the Maven version order specification (tokens split on ".",
//     "-" and digit/letter transitions, trailing null tokens trimmed).
//   - PyPI: PEP 440 (epoch, release, pre, post, dev and local segments).
//   - Debian and Ubuntu: dpkg's version comparison (epoch, upstream,
//     revision, "~" before the empty string).
//   - Alpine: apk-tools' comparison (letters, _alpha.._p suffixes, -rN).
//   - RPM distributions (Red Hat, Rocky Linux, AlmaLinux, openSUSE, SUSE,
//     Photon OS, Mageia, openEuler): rpmvercmp with epoch and release.
//   - RubyGems: Gem::Version.
//   - NuGet: NuGet's SemVer 2.0 variant with up to four numeric parts and
//     case-insensitive prerelease labels.
//
// Every other ecosystem has no known order here: For returns ok=false, and
// callers must treat range questions for it as unanswerable.
package version

import (
	"fmt"
	"strings"
)

// Order compares versions of one ecosystem.
type Order interface {
	// Name is the order's name, such as "SemVer" or "Maven".
	Name() string
	// Compare returns -1, 0 or +1 as a sorts before, equal to or after b.
	// It returns an error naming the version that the order cannot parse.
	Compare(a, b string) (int, error)
	// Valid reports whether v parses under this order.
	Valid(v string) bool
}

// For returns the order of an OSV ecosystem name. A release suffix such as
// "Debian:11" or "Alpine:v3.18" is ignored, because the order does not
// depend on it. ok is false for ecosystems without a supported order.
func For(ecosystem string) (Order, bool) {
	base, _, _ := strings.Cut(ecosystem, ":")
	switch base {
	case "npm":
		return NPM, true
	case "crates.io", "Hex", "SwiftURL":
		return SemVer, true
	case "Go", "Kubernetes":
		return Go, true
	case "Maven":
		return Maven, true
	case "PyPI":
		return PyPI, true
	case "Debian", "Ubuntu":
		return Debian, true
	case "Alpine":
		return Alpine, true
	case "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE",
		"Photon OS", "Mageia", "openEuler":
		return RPM, true
	case "RubyGems":
		return RubyGems, true
	case "NuGet":
		return NuGet, true
	}
	return nil, false
}

// Supported lists the OSV ecosystem names that For has an order for.
func Supported() []string {
	return []string{
		"AlmaLinux", "Alpine", "crates.io", "Debian", "Go", "Hex",
		"Kubernetes", "Mageia", "Maven", "npm", "NuGet", "openEuler",
		"openSUSE", "Photon OS", "PyPI", "Red Hat", "Rocky Linux",
		"RubyGems", "SUSE", "SwiftURL", "Ubuntu",
	}
}

// order adapts a parse function and a comparison of parsed values to Order.
type order[T any] struct {
	name  string
	parse func(string) (T, error)
	cmp   func(a, b T) int
}

func (o order[T]) Name() string { return o.name }

func (o order[T]) Compare(a, b string) (int, error) {
	pa, err := o.parse(a)
	if err != nil {
		return 0, fmt.Errorf("parsing %s version %q: %w", o.name, a, err)
	}
	pb, err := o.parse(b)
	if err != nil {
		return 0, fmt.Errorf("parsing %s version %q: %w", o.name, b, err)
	}
	return o.cmp(pa, pb), nil
}

func (o order[T]) Valid(v string) bool {
	_, err := o.parse(v)
	return err == nil
}

// sign maps a comparison result to -1, 0 or +1.
func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// compareDigits compares two strings of ASCII digits as unbounded
// non-negative integers, so that long numeric segments cannot overflow.
func compareDigits(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return sign(len(a) - len(b))
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }

func isAlpha(c byte) bool { return isLower(c) || (c >= 'A' && c <= 'Z') }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
