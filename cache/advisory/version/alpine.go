package version

import (
	"errors"
	"strings"
)

// Alpine is apk-tools' version order (version.c in apk-tools 2.x):
// numbers[.numbers]*[letter][_suffix[number]]*[-rN], where the pre-release
// suffixes _alpha, _beta, _pre and _rc sort before the bare version and
// _cvs, _svn, _git, _hg and _p after it. A number after "." with leading
// zeros compares as a fraction, as apk does.
var Alpine Order = order[string]{name: "Alpine", parse: parseAlpine, cmp: compareAlpine}

// apk token types, in apk-tools' order.
const (
	apkInvalid = iota - 1
	apkDigitOrZero
	apkDigit
	apkLetter
	apkSuffix
	apkSuffixNo
	apkRevisionNo
	apkEnd
)

var (
	apkPreSuffixes  = []string{"alpha", "beta", "pre", "rc"}
	apkPostSuffixes = []string{"cvs", "svn", "git", "hg", "p"}
)

type apkCursor struct {
	s   string
	pos int
	typ int
}

func (c *apkCursor) rest() string { return c.s[c.pos:] }

// next sets the type of the token that starts at the cursor.
func (c *apkCursor) next() {
	n := apkInvalid
	r := c.rest()
	switch {
	case r == "":
		n = apkEnd
	case (c.typ == apkDigit || c.typ == apkDigitOrZero) && isLower(r[0]):
		n = apkLetter
	case c.typ == apkLetter && isDigit(r[0]):
		n = apkDigit
	case c.typ == apkSuffix && isDigit(r[0]):
		n = apkSuffixNo
	default:
		switch r[0] {
		case '.':
			n = apkDigitOrZero
		case '_':
			n = apkSuffix
		case '-':
			if len(r) > 1 && r[1] == 'r' {
				n = apkRevisionNo
				c.pos++
			}
		}
		c.pos++
	}
	if n < c.typ {
		if !((n == apkDigitOrZero && c.typ == apkDigit) ||
			(n == apkSuffix && c.typ == apkSuffixNo) ||
			(n == apkDigit && c.typ == apkLetter)) {
			n = apkInvalid
		}
	}
	c.typ = n
}

// token reads the value of the token at the cursor and advances to the
// next one.
func (c *apkCursor) token() int64 {
	r := c.rest()
	if r == "" {
		c.typ = apkEnd
		return 0
	}
	var v int64
	i := 0
	nt := apkInvalid
	switch c.typ {
	case apkDigitOrZero, apkDigit, apkSuffixNo, apkRevisionNo:
		if c.typ == apkDigitOrZero && r[0] == '0' {
			for i < len(r) && r[i] == '0' {
				i++
			}
			nt = apkDigit
			v = int64(-i)
			break
		}
		for i < len(r) && isDigit(r[i]) {
			if v < 1<<58 {
				v = v*10 + int64(r[i]-'0')
			}
			i++
		}
	case apkLetter:
		v = int64(r[0])
		i = 1
	case apkSuffix:
		found := false
		for k, sfx := range apkPreSuffixes {
			if strings.HasPrefix(r, sfx) {
				v, i, found = int64(k-len(apkPreSuffixes)), len(sfx), true
				break
			}
		}
		if !found {
			for k, sfx := range apkPostSuffixes {
				if strings.HasPrefix(r, sfx) {
					v, i, found = int64(k), len(sfx), true
					break
				}
			}
		}
		if !found {
			c.typ = apkInvalid
			return -1
		}
	default:
		c.typ = apkInvalid
		return -1
	}
	c.pos += i
	switch {
	case c.pos >= len(c.s):
		c.typ = apkEnd
	case nt != apkInvalid:
		c.typ = nt
	default:
		c.next()
	}
	return v
}

func parseAlpine(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errEmpty
	}
	if !isDigit(s[0]) {
		return "", errors.New("version must start with a digit")
	}
	c := apkCursor{s: s, typ: apkDigit}
	for c.typ != apkEnd {
		c.token()
		if c.typ == apkInvalid {
			return "", errors.New("not an apk version (numbers[.numbers][letter][_suffix[N]][-rN])")
		}
	}
	return s, nil
}

func compareAlpine(a, b string) int {
	ca := apkCursor{s: a, typ: apkDigit}
	cb := apkCursor{s: b, typ: apkDigit}
	var av, bv int64
	for ca.typ == cb.typ && ca.typ != apkEnd && ca.typ != apkInvalid && av == bv {
		av = ca.token()
		bv = cb.token()
	}
	if av != bv {
		if av < bv {
			return -1
		}
		return 1
	}
	if ca.typ == cb.typ {
		return 0
	}
	// The leading parts are equal, so the longer version is greater unless
	// what it has left is a pre-release suffix.
	if ca.typ == apkSuffix && ca.token() < 0 {
		return -1
	}
	if cb.typ == apkSuffix && cb.token() < 0 {
		return 1
	}
	if ca.typ > cb.typ {
		return -1
	}
	if cb.typ > ca.typ {
		return 1
	}
	return 0
}
