package version

import (
	"errors"
	"strings"
)

// SemVer is SemVer 2.0.0 precedence (semver.org, section 11). Parsing
// accepts a leading "v" and fills a missing minor or patch number with 0
// ("1.2" reads as "1.2.0"), because SBOMs often carry such versions. Build
// metadata after "+" is ignored, as the specification requires.
var SemVer Order = order[semver]{name: "SemVer", parse: parseSemVer, cmp: compareSemVer}

// NPM is node-semver's order: SemVer 2.0.0 precedence, also accepting a
// leading "=" as npm does.
var NPM Order = order[semver]{name: "npm", parse: func(s string) (semver, error) {
	return parseSemVer(strings.TrimPrefix(strings.TrimSpace(s), "="))
}, cmp: compareSemVer}

// Go is the order of Go module versions: SemVer 2.0.0 with an optional "v"
// prefix (OSV writes Go versions without it, go.mod with it). Pseudo-versions
// are SemVer prereleases and sort as such.
var Go Order = order[semver]{name: "Go", parse: parseSemVer, cmp: compareSemVer}

type semver struct {
	major, minor, patch string
	pre                 []string
}

var errEmpty = errors.New("version is empty")

func parseSemVer(s string) (semver, error) {
	s = strings.TrimSpace(s)
	if len(s) > 0 && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	if s == "" {
		return semver{}, errEmpty
	}
	if i := strings.IndexByte(s, '+'); i >= 0 {
		if !validIdentifiers(s[i+1:]) {
			return semver{}, errors.New("build metadata must be dot-separated [0-9A-Za-z-] identifiers")
		}
		s = s[:i]
	}
	var v semver
	core := s
	if i := strings.IndexByte(s, '-'); i >= 0 {
		core = s[:i]
		pre := s[i+1:]
		if !validIdentifiers(pre) {
			return semver{}, errors.New("prerelease must be dot-separated [0-9A-Za-z-] identifiers")
		}
		v.pre = strings.Split(pre, ".")
	}
	parts := strings.Split(core, ".")
	if len(parts) > 3 {
		return semver{}, errors.New("version core has more than three numbers")
	}
	for _, p := range parts {
		if !allDigits(p) {
			return semver{}, errors.New("version core must be numbers separated by dots")
		}
	}
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	v.major, v.minor, v.patch = parts[0], parts[1], parts[2]
	return v, nil
}

func validIdentifiers(s string) bool {
	if s == "" {
		return false
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !isDigit(c) && !isAlpha(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func compareSemVer(a, b semver) int {
	if c := compareDigits(a.major, b.major); c != 0 {
		return c
	}
	if c := compareDigits(a.minor, b.minor); c != 0 {
		return c
	}
	if c := compareDigits(a.patch, b.patch); c != 0 {
		return c
	}
	return comparePrerelease(a.pre, b.pre, false)
}

// comparePrerelease applies SemVer's prerelease precedence: no prerelease
// sorts after any prerelease, numeric identifiers compare as numbers and
// before alphanumeric ones, and a longer list wins when all shared
// identifiers are equal. foldCase compares alphanumeric identifiers without
// regard to case, as NuGet does.
func comparePrerelease(a, b []string, foldCase bool) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		xn, yn := allDigits(x), allDigits(y)
		switch {
		case xn && yn:
			if c := compareDigits(x, y); c != 0 {
				return c
			}
		case xn:
			return -1
		case yn:
			return 1
		default:
			if foldCase {
				x, y = strings.ToLower(x), strings.ToLower(y)
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return sign(len(a) - len(b))
}
