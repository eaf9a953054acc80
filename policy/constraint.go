package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Constraint is a parsed version constraint such as ">=2.1.0, <3".
//
// Syntax: one or more alternatives separated by "||". Each alternative is
// one or more comparisons separated by commas or spaces, all of which must
// hold. A comparison is an operator followed by a version. The operators
// are "=" or "==", "!=", ">", ">=", "<", "<=", "~" and "^", and a bare
// version means "=". As in npm, "~" keeps the major and minor version
// ("~1.4.2" is ">=1.4.2, <1.5" and "~1" is ">=1, <2"), and "^" keeps the
// leftmost non-zero component ("^1.4.2" is ">=1.4.2, <2", "^0.4.2" is
// ">=0.4.2, <0.5" and "^0.0.3" is ">=0.0.3, <0.0.4"). "*" alone matches
// every version.
// Comparisons use the order of CompareVersions, so a pre-release of 3.0.0
// satisfies "<3".
type Constraint struct {
	raw  string
	alts [][]comparison
}

type comparison struct {
	op string // one of = != > >= < <=
	v  Version
}

// ParseConstraint parses s, naming the faulty part in its error.
func ParseConstraint(s string) (Constraint, error) {
	c := Constraint{raw: strings.TrimSpace(s)}
	if c.raw == "" {
		return Constraint{}, fmt.Errorf("parsing version constraint: empty: write one such as \">=2.1.0, <3\"")
	}
	if c.raw == "*" {
		return c, nil
	}
	for alt := range strings.SplitSeq(c.raw, "||") {
		var cmps []comparison
		fields := strings.FieldsFunc(alt, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		// Join an operator written apart from its version (">= 2.1").
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			if isOperator(f) {
				if i+1 >= len(fields) {
					return Constraint{}, fmt.Errorf("parsing version constraint %q: operator %q has no version after it", s, f)
				}
				f += fields[i+1]
				i++
			}
			more, err := parseComparison(f)
			if err != nil {
				return Constraint{}, fmt.Errorf("parsing version constraint %q: %w", s, err)
			}
			cmps = append(cmps, more...)
		}
		if len(cmps) == 0 {
			return Constraint{}, fmt.Errorf("parsing version constraint %q: empty alternative around \"||\"", s)
		}
		c.alts = append(c.alts, cmps)
	}
	return c, nil
}

func isOperator(s string) bool {
	switch s {
	case "=", "==", "!=", ">", ">=", "<", "<=", "~", "^":
		return true
	}
	return false
}

func parseComparison(f string) ([]comparison, error) {
	op := ""
	for _, o := range []string{"==", "!=", ">=", "<=", "=", ">", "<", "~", "^"} {
		if strings.HasPrefix(f, o) {
			op = o
			break
		}
	}
	text := f[len(op):]
	if text == "" {
		return nil, fmt.Errorf("comparison %q has no version", f)
	}
	v, err := ParseVersion(text)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(text, "<>=!~^|") {
		return nil, fmt.Errorf("comparison %q: unexpected operator inside the version", f)
	}
	switch op {
	case "", "=", "==":
		return []comparison{{"=", v}}, nil
	case "~", "^":
		if !v.valid {
			return nil, fmt.Errorf("comparison %q: %q needs a semantic version such as 1.4.2", f, op)
		}
		return []comparison{{">=", v}, {"<", upperBound(v, op)}}, nil
	}
	return []comparison{{op, v}}, nil
}

// upperBound returns the exclusive bound of a tilde or caret range.
func upperBound(v Version, op string) Version {
	major, minor, patch := v.num(0), v.num(1), v.num(2)
	// As in npm, a tilde on a bare major version allows its minor
	// versions ("~1" is "<2"), and a caret keeps the leftmost component
	// that is non-zero or written last ("^0.0" is "<0.1").
	written := writtenComponents(v.raw)
	var bound string
	switch {
	case op == "~" && written == 1:
		bound = strconv.FormatUint(major+1, 10) + ".0.0"
	case op == "~":
		bound = strconv.FormatUint(major, 10) + "." + strconv.FormatUint(minor+1, 10) + ".0"
	case major > 0 || written == 1:
		bound = strconv.FormatUint(major+1, 10) + ".0.0"
	case minor > 0 || written == 2:
		bound = "0." + strconv.FormatUint(minor+1, 10) + ".0"
	default:
		bound = "0.0." + strconv.FormatUint(patch+1, 10)
	}
	// The bound carries the lowest pre-release so that pre-releases of the
	// next version ("2.0.0-rc.1") fall outside "^1.4".
	b, _ := ParseVersion(bound + "-0")
	return b
}

// writtenComponents counts the numeric components written in a version,
// before any pre-release or build suffix.
func writtenComponents(raw string) int {
	if i := strings.IndexAny(raw, "-+"); i >= 0 {
		raw = raw[:i]
	}
	return strings.Count(raw, ".") + 1
}

// String returns the constraint as it was written.
func (c Constraint) String() string { return c.raw }

// Check reports whether v satisfies the constraint.
func (c Constraint) Check(v Version) bool {
	if len(c.alts) == 0 {
		return c.raw == "*"
	}
	for _, alt := range c.alts {
		ok := true
		for _, cmp := range alt {
			if !cmp.holds(v) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (cmp comparison) holds(v Version) bool {
	c := v.Compare(cmp.v)
	switch cmp.op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	}
	return false
}
