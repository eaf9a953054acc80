package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed software version.
//
// A version that follows semantic versioning 2.0.0, optionally with a
// leading "v" and with one to any number of numeric components ("3",
// "3.2", "3.2.0", "3.2.0.17"), is ordered by semantic-versioning
// precedence: numeric components compare as numbers, a missing component
// counts as 0 (so "3.2" equals "3.2.0"), a pre-release sorts before its
// release, and build metadata after "+" is ignored. Any other non-empty
// string ("R12b", "2024-06 build 7") is kept as raw text and ordered by
// the fallback described at CompareVersions.
type Version struct {
	raw   string
	valid bool      // the string parsed as a (lenient) semantic version
	n     int       // numeric components, trailing zeros trimmed
	head  [4]uint64 // the first four numeric components
	tail  []uint64  // components after the fourth, rarely present
	pre   string    // pre-release identifiers, "" for none
}

// ParseVersion parses s. It returns an error only for an empty string,
// every other string yields a Version, either semantic or raw text.
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Version{}, fmt.Errorf("parsing version: empty string: report a version such as 3.2.0")
	}
	v := Version{raw: s}
	v.valid = v.parseSemver(s)
	if !v.valid {
		v.n, v.head, v.tail, v.pre = 0, [4]uint64{}, nil, ""
	}
	return v, nil
}

// String returns the version as it was written.
func (v Version) String() string { return v.raw }

// Semantic reports whether v parsed as a semantic version rather than raw
// text.
func (v Version) Semantic() bool { return v.valid }

func (v *Version) num(i int) uint64 {
	switch {
	case i >= v.n:
		return 0
	case i < len(v.head):
		return v.head[i]
	}
	return v.tail[i-len(v.head)]
}

// parseSemver fills v from a lenient semantic version and reports
// whether s is one. It allocates only for more than four components.
func (v *Version) parseSemver(s string) bool {
	if s[0] == 'v' || s[0] == 'V' {
		s = s[1:]
	}
	if i := strings.IndexByte(s, '+'); i >= 0 {
		if !validIdentifiers(s[i+1:], false) {
			return false
		}
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		if !validIdentifiers(s[i+1:], true) {
			return false
		}
		v.pre = s[i+1:]
		s = s[:i]
	}
	if s == "" {
		return false
	}
	count := 0
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || len(part) > 19 {
			return false
		}
		n, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return false
		}
		if count < len(v.head) {
			v.head[count] = n
		} else {
			v.tail = append(v.tail, n)
		}
		count++
		if n != 0 {
			v.n = count
		}
	}
	if v.n <= len(v.head) {
		v.tail = nil
	} else {
		v.tail = v.tail[:v.n-len(v.head)]
	}
	return true
}

// validIdentifiers checks dot-separated identifiers of [0-9A-Za-z-], and for
// pre-release identifiers, numeric ones must not have leading zeros.
func validIdentifiers(s string, pre bool) bool {
	if s == "" {
		return false
	}
	for id := range strings.SplitSeq(s, ".") {
		if id == "" {
			return false
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return false
			}
		}
		if pre && numeric && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// Compare returns -1, 0 or +1 as v sorts before, equal to or after w. See
// CompareVersions for the order.
func (v Version) Compare(w Version) int {
	if !v.valid || !w.valid {
		return compareNatural(trimV(v.raw), trimV(w.raw))
	}
	for i := 0; i < v.n || i < w.n; i++ {
		if a, b := v.num(i), w.num(i); a != b {
			return cmpInt(a, b)
		}
	}
	return comparePre(v.pre, w.pre)
}

// comparePre orders pre-release identifiers by semantic-versioning rules:
// no pre-release sorts after any pre-release, numeric identifiers compare
// as numbers and sort before alphanumeric ones, and a shorter list sorts
// first when all shared identifiers are equal.
func comparePre(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	for a != "" && b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				return cmpInt(xn, yn)
			}
		case xerr == nil:
			return -1
		case yerr == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return cmpInt(uint64(len(a)), uint64(len(b)))
}

func cmpInt(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func trimV(s string) string {
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && s[1] >= '0' && s[1] <= '9' {
		return s[1:]
	}
	return s
}

// compareNatural orders strings by runs: a run of digits compares with a
// run of digits as a number (ignoring leading zeros), any other run
// compares byte-wise, and a digit run sorts before a non-digit run. When
// all runs are equal the shorter string sorts first, and strings that
// differ only in leading zeros compare byte-wise so the order is total.
func compareNatural(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ad, bd := isDigit(a[i]), isDigit(b[j])
		switch {
		case ad && bd:
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			x := strings.TrimLeft(a[si:i], "0")
			y := strings.TrimLeft(b[sj:j], "0")
			if len(x) != len(y) {
				return cmpInt(uint64(len(x)), uint64(len(y)))
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		case ad:
			return -1
		case bd:
			return 1
		default:
			si, sj := i, j
			for i < len(a) && !isDigit(a[i]) {
				i++
			}
			for j < len(b) && !isDigit(b[j]) {
				j++
			}
			if c := strings.Compare(a[si:i], b[sj:j]); c != 0 {
				return c
			}
		}
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// CompareVersions returns -1, 0 or +1 as version a sorts before, equal to
// or after b.
//
// When both parse as semantic versions (see Version), semantic-versioning
// precedence decides. Otherwise both strings, minus a leading "v" before a
// digit, are compared in natural order: runs of digits compare as numbers
// and other runs byte-wise, so "R9" < "R10" and "1.2.3a" < "1.2.3b". The
// fallback never fails, and an empty string sorts before everything.
func CompareVersions(a, b string) int {
	va, erra := ParseVersion(a)
	vb, errb := ParseVersion(b)
	switch {
	case erra != nil && errb != nil:
		return 0
	case erra != nil:
		return -1
	case errb != nil:
		return 1
	}
	return va.Compare(vb)
}
