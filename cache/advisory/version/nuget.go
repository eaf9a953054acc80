package version

import (
	"errors"
	"strings"
)

// NuGet is NuGet's version order: one to four numeric parts (missing parts
// are 0, so "1.0" equals "1.0.0.0"), then SemVer 2.0.0 prerelease
// precedence with labels compared without regard to case. Build metadata is
// ignored.
var NuGet Order = order[nugetVersion]{name: "NuGet", parse: parseNuGet, cmp: compareNuGet}

type nugetVersion struct {
	parts [4]string
	pre   []string
}

func parseNuGet(s string) (nugetVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nugetVersion{}, errEmpty
	}
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	var v nugetVersion
	core := s
	if i := strings.IndexByte(s, '-'); i >= 0 {
		core = s[:i]
		if !validIdentifiers(s[i+1:]) {
			return nugetVersion{}, errors.New("prerelease must be dot-separated [0-9A-Za-z-] labels")
		}
		v.pre = strings.Split(s[i+1:], ".")
	}
	parts := strings.Split(core, ".")
	if len(parts) > 4 {
		return nugetVersion{}, errors.New("version has more than four numeric parts")
	}
	for i := range v.parts {
		v.parts[i] = "0"
	}
	for i, p := range parts {
		if !allDigits(p) {
			return nugetVersion{}, errors.New("version parts must be numbers separated by dots")
		}
		v.parts[i] = p
	}
	return v, nil
}

func compareNuGet(a, b nugetVersion) int {
	for i := range a.parts {
		if c := compareDigits(a.parts[i], b.parts[i]); c != 0 {
			return c
		}
	}
	return comparePrerelease(a.pre, b.pre, true)
}
