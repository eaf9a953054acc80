package version

import (
	"errors"
	"regexp"
	"strings"
)

// PyPI is the PEP 440 order: epoch, release numbers (trailing zeros do not
// count), then pre-release (a < b < rc), post-release and development
// release, then the local version label. Spelling variants that PEP 440
// normalises ("alpha", "c", "pre", "preview", "rev", "r", "-N" post
// releases, "_" and "-" separators) are accepted.
var PyPI Order = order[pep440]{name: "PEP 440", parse: parsePEP440, cmp: comparePEP440}

// pep440Pattern is the version pattern of PEP 440's appendix B.
var pep440Pattern = regexp.MustCompile(`^v?` +
	`(?:(?P<epoch>[0-9]+)!)?` +
	`(?P<release>[0-9]+(?:\.[0-9]+)*)` +
	`(?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?` +
	`(?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?` +
	`(?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?` +
	`(?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?$`)

type pep440 struct {
	epoch   string
	release []string
	// pre is the pre-release phase 0 (a), 1 (b) or 2 (rc), or -1 when absent.
	pre    int
	preN   string
	hasPre bool
	// post and dev hold their numbers when present.
	post, dev       string
	hasPost, hasDev bool
	local           []string
}

func parsePEP440(s string) (pep440, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return pep440{}, errEmpty
	}
	m := pep440Pattern.FindStringSubmatch(s)
	if m == nil {
		return pep440{}, errors.New("not a PEP 440 version")
	}
	group := func(name string) string { return m[pep440Pattern.SubexpIndex(name)] }
	v := pep440{epoch: group("epoch"), pre: -1}
	if v.epoch == "" {
		v.epoch = "0"
	}
	v.release = strings.Split(group("release"), ".")
	for len(v.release) > 1 && strings.TrimLeft(v.release[len(v.release)-1], "0") == "" {
		v.release = v.release[:len(v.release)-1]
	}
	if l := group("pre_l"); l != "" {
		v.hasPre = true
		switch l {
		case "a", "alpha":
			v.pre = 0
		case "b", "beta":
			v.pre = 1
		default:
			v.pre = 2
		}
		v.preN = orZero(group("pre_n"))
	}
	if group("post") != "" {
		v.hasPost = true
		v.post = orZero(group("post_n1") + group("post_n2"))
	}
	if group("dev") != "" {
		v.hasDev = true
		v.dev = orZero(group("dev_n"))
	}
	if l := group("local"); l != "" {
		v.local = strings.FieldsFunc(l, func(r rune) bool { return r == '.' || r == '-' || r == '_' })
	}
	return v, nil
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

func comparePEP440(a, b pep440) int {
	if c := compareDigits(a.epoch, b.epoch); c != 0 {
		return c
	}
	n := max(len(a.release), len(b.release))
	for i := 0; i < n; i++ {
		x, y := "0", "0"
		if i < len(a.release) {
			x = a.release[i]
		}
		if i < len(b.release) {
			y = b.release[i]
		}
		if c := compareDigits(x, y); c != 0 {
			return c
		}
	}
	if c := comparePre(a, b); c != 0 {
		return c
	}
	// A post-release sorts after the same version without one.
	if c := compareOptional(a.hasPost, a.post, b.hasPost, b.post, -1); c != 0 {
		return c
	}
	// A development release sorts before the same version without one.
	if c := compareOptional(a.hasDev, a.dev, b.hasDev, b.dev, 1); c != 0 {
		return c
	}
	return compareLocal(a.local, b.local)
}

// preKey places a version's pre-release segment: a development release of
// a final version ("1.0.dev1") sorts before every pre-release of it, and a
// version without pre-release sorts after all of them.
func preKey(v pep440) int {
	switch {
	case !v.hasPre && !v.hasPost && v.hasDev:
		return -2
	case !v.hasPre:
		return 3
	}
	return v.pre
}

func comparePre(a, b pep440) int {
	ka, kb := preKey(a), preKey(b)
	if ka != kb {
		return sign(ka - kb)
	}
	if a.hasPre && b.hasPre {
		return compareDigits(a.preN, b.preN)
	}
	return 0
}

// compareOptional compares an optional number; absent is the value that
// sorts as absentSign relative to any present number.
func compareOptional(hasA bool, a string, hasB bool, b string, absentSign int) int {
	switch {
	case !hasA && !hasB:
		return 0
	case !hasA:
		return absentSign
	case !hasB:
		return -absentSign
	}
	return compareDigits(a, b)
}

// compareLocal orders local version labels: none sorts first, numeric
// segments sort after alphanumeric ones and compare as numbers, and a
// longer label wins when all shared segments are equal.
func compareLocal(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		xn, yn := allDigits(x), allDigits(y)
		switch {
		case xn && yn:
			if c := compareDigits(x, y); c != 0 {
				return c
			}
		case xn:
			return 1
		case yn:
			return -1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return sign(len(a) - len(b))
}
