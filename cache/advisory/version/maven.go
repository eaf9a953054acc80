package version

import (
	"strings"
)

// Maven is the order of the Maven version order specification (POM
// reference, "Version Order Specification"), which OSV uses for the Maven
// ecosystem. A version splits into tokens at ".", "-" and transitions
// between digits and letters, where a transition counts as "-". Empty
// tokens read as 0. Trailing null tokens (0, "", "final", "ga", "release")
// are trimmed before each hyphen from the end. Tokens then compare in
// order, with the shorter version padded by nulls.
var Maven Order = order[[]mavenToken]{name: "Maven", parse: parseMaven, cmp: compareMaven}

type mavenToken struct {
	prefix byte // '.' or '-'
	num    bool
	value  string // digits without leading zeros, or a lowercased qualifier
}

func (t mavenToken) null() bool {
	if t.num {
		return t.value == "0"
	}
	return t.value == ""
}

// rank orders tokens whose prefix or kind differ:
// ".qualifier" < "-qualifier" < "-number" < ".number".
func (t mavenToken) rank() int {
	switch {
	case t.prefix == '.' && !t.num:
		return 0
	case t.prefix == '-' && !t.num:
		return 1
	case t.prefix == '-':
		return 2
	}
	return 3
}

var mavenQualifiers = map[string]int{
	"alpha": 0, "beta": 1, "milestone": 2, "rc": 3, "snapshot": 4, "": 5, "sp": 6,
}

func parseMaven(s string) ([]mavenToken, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return nil, errEmpty
	}
	var tokens []mavenToken
	prefix := byte('.')
	start := 0
	emit := func(end int, next byte) {
		raw := s[start:end]
		t := mavenToken{prefix: prefix}
		switch {
		case raw == "":
			t.num, t.value = true, "0"
		case isDigit(raw[0]):
			t.num = true
			t.value = strings.TrimLeft(raw, "0")
			if t.value == "" {
				t.value = "0"
			}
		default:
			t.value = raw
			// "a", "b" and "m" directly followed by a number abbreviate
			// alpha, beta and milestone.
			if end < len(s) && isDigit(s[end]) {
				switch raw {
				case "a":
					t.value = "alpha"
				case "b":
					t.value = "beta"
				case "m":
					t.value = "milestone"
				}
			}
			switch t.value {
			case "cr":
				t.value = "rc"
			case "ga", "final", "release":
				t.value = ""
			}
		}
		tokens = append(tokens, t)
		prefix = next
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c == '-':
			emit(i, c)
			start = i + 1
		case i > start && isDigit(c) != isDigit(s[i-1]):
			emit(i, '-')
			start = i
		}
	}
	emit(len(s), '.')
	return trimMaven(tokens), nil
}

// trimMaven removes trailing null tokens, then repeats that before each
// remaining hyphen-prefixed token from the end to the start. The first
// token is always kept.
func trimMaven(tokens []mavenToken) []mavenToken {
	i := len(tokens) - 1
	for i > 0 {
		if tokens[i].null() {
			tokens = append(tokens[:i], tokens[i+1:]...)
			i--
			continue
		}
		j := i
		for j > 0 && tokens[j].prefix != '-' {
			j--
		}
		if j == 0 {
			break
		}
		i = j - 1
	}
	return tokens
}

func compareMaven(a, b []mavenToken) int {
	n := max(len(a), len(b))
	for i := 0; i < n; i++ {
		var x, y mavenToken
		switch {
		case i >= len(a):
			y = b[i]
			x = mavenPad(y.prefix)
		case i >= len(b):
			x = a[i]
			y = mavenPad(x.prefix)
		default:
			x, y = a[i], b[i]
		}
		if c := compareMavenToken(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// mavenPad is the null token that pads the shorter version: 0 after ".",
// the empty qualifier after "-".
func mavenPad(prefix byte) mavenToken {
	if prefix == '.' {
		return mavenToken{prefix: '.', num: true, value: "0"}
	}
	return mavenToken{prefix: '-', value: ""}
}

func compareMavenToken(x, y mavenToken) int {
	if rx, ry := x.rank(), y.rank(); rx != ry {
		return sign(rx - ry)
	}
	if x.num {
		return compareDigits(x.value, y.value)
	}
	qx, kx := mavenQualifiers[x.value]
	qy, ky := mavenQualifiers[y.value]
	switch {
	case kx && ky:
		return sign(qx - qy)
	case kx:
		return -1
	case ky:
		return 1
	}
	return strings.Compare(x.value, y.value)
}
