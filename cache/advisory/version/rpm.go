package version

import (
	"errors"
	"strings"
)

// RPM is rpm's version order: [epoch:]version[-release], where the epoch
// compares as a number and version and release compare with rpmvercmp
// (alphanumeric segments, numbers beat letters, "~" sorts before
// everything and "^" after the bare version but before any other
// addition).
var RPM Order = order[rpmVersion]{name: "RPM", parse: parseRPM, cmp: compareRPM}

type rpmVersion struct {
	epoch, version, release string
}

func parseRPM(s string) (rpmVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return rpmVersion{}, errEmpty
	}
	v := rpmVersion{epoch: "0"}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		v.epoch = s[:i]
		if !allDigits(v.epoch) {
			return rpmVersion{}, errors.New("epoch must be a number")
		}
		s = s[i+1:]
	}
	v.version = s
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		v.version, v.release = s[:i], s[i+1:]
	}
	if v.version == "" {
		return rpmVersion{}, errors.New("version part is empty")
	}
	return v, nil
}

func compareRPM(a, b rpmVersion) int {
	if c := compareDigits(a.epoch, b.epoch); c != 0 {
		return c
	}
	if c := rpmvercmp(a.version, b.version); c != 0 {
		return c
	}
	return rpmvercmp(a.release, b.release)
}

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isAlnum(a[i]) && a[i] != '~' && a[i] != '^' {
			i++
		}
		for j < len(b) && !isAlnum(b[j]) && b[j] != '~' && b[j] != '^' {
			j++
		}
		// A tilde sorts before everything, even the end of the string.
		if (i < len(a) && a[i] == '~') || (j < len(b) && b[j] == '~') {
			if i >= len(a) || a[i] != '~' {
				return 1
			}
			if j >= len(b) || b[j] != '~' {
				return -1
			}
			i++
			j++
			continue
		}
		// A caret sorts after the end of the string but before anything else.
		if (i < len(a) && a[i] == '^') || (j < len(b) && b[j] == '^') {
			if i >= len(a) {
				return -1
			}
			if j >= len(b) {
				return 1
			}
			if a[i] != '^' {
				return 1
			}
			if b[j] != '^' {
				return -1
			}
			i++
			j++
			continue
		}
		if i >= len(a) || j >= len(b) {
			break
		}
		si, sj := i, j
		numeric := isDigit(a[i])
		if numeric {
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
		} else {
			for i < len(a) && isAlpha(a[i]) {
				i++
			}
			for j < len(b) && isAlpha(b[j]) {
				j++
			}
		}
		if sj == j {
			// Segments of different kinds: a number is newer than letters.
			if numeric {
				return 1
			}
			return -1
		}
		var c int
		if numeric {
			c = compareDigits(a[si:i], b[sj:j])
		} else {
			c = strings.Compare(a[si:i], b[sj:j])
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	}
	return 1
}
