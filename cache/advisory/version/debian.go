package version

import (
	"errors"
	"strings"
)

// Debian is dpkg's version order (deb-version(7)) of
// [epoch:]upstream[-revision]. The epoch compares as a number. Upstream and
// revision compare by alternating non-digit runs and digit runs: in
// non-digit runs letters sort before other characters and "~" before
// everything, even the end of the string; digit runs compare as numbers.
// Ubuntu uses the same order.
var Debian Order = order[debVersion]{name: "Debian", parse: parseDebian, cmp: compareDebian}

type debVersion struct {
	epoch, upstream, revision string
}

func parseDebian(s string) (debVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return debVersion{}, errEmpty
	}
	var v debVersion
	if i := strings.IndexByte(s, ':'); i >= 0 {
		v.epoch = s[:i]
		if !allDigits(v.epoch) {
			return debVersion{}, errors.New("epoch must be a number")
		}
		s = s[i+1:]
	} else {
		v.epoch = "0"
	}
	v.upstream = s
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		v.upstream, v.revision = s[:i], s[i+1:]
		if v.revision == "" {
			return debVersion{}, errors.New("revision after the last '-' is empty")
		}
	}
	if v.upstream == "" {
		return debVersion{}, errors.New("upstream version is empty")
	}
	if !isDigit(v.upstream[0]) {
		return debVersion{}, errors.New("upstream version must start with a digit")
	}
	for _, part := range []string{v.upstream, v.revision} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !isDigit(c) && !isAlpha(c) && !strings.ContainsRune(".+~-:", rune(c)) {
				return debVersion{}, errors.New("version contains a character outside [A-Za-z0-9.+~-:]")
			}
		}
	}
	return v, nil
}

func compareDebian(a, b debVersion) int {
	if c := compareDigits(a.epoch, b.epoch); c != 0 {
		return c
	}
	if c := dpkgCompare(a.upstream, b.upstream); c != 0 {
		return c
	}
	return dpkgCompare(a.revision, b.revision)
}

// dpkgOrder is the weight of a character in a non-digit run, as in dpkg's
// verrevcmp: "~" sorts before the end of the run, letters before other
// characters.
func dpkgOrder(c byte, ok bool) int {
	switch {
	case !ok:
		return 0
	case c == '~':
		return -1
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	}
	return int(c) + 256
}

func dpkgCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			var ca, cb byte
			oka, okb := i < len(a), j < len(b)
			if oka {
				ca = a[i]
			}
			if okb {
				cb = b[j]
			}
			oa, ob := dpkgOrder(ca, oka), dpkgOrder(cb, okb)
			if oa != ob {
				return sign(oa - ob)
			}
			i++
			j++
		}
		si := i
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		sj := j
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		if c := compareDigits(a[min(si, len(a)):min(i, len(a))], b[min(sj, len(b)):min(j, len(b))]); c != 0 {
			return c
		}
	}
	return 0
}
