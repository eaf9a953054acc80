package advisory

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardgate/wardgate/cache/advisory/version"
)

// versOrder returns the order of a vers scheme, which is a purl type or
// "semver".
func versOrder(scheme string) (version.Order, bool) {
	switch strings.ToLower(scheme) {
	case "semver":
		return version.SemVer, true
	case "maven":
		return version.Maven, true
	case "npm":
		return version.NPM, true
	case "pypi":
		return version.PyPI, true
	case "golang":
		return version.Go, true
	case "deb":
		return version.Debian, true
	case "apk", "alpine":
		return version.Alpine, true
	case "rpm":
		return version.RPM, true
	case "gem":
		return version.RubyGems, true
	case "nuget":
		return version.NuGet, true
	case "cargo", "hex", "swift":
		return version.SemVer, true
	}
	return nil, false
}

type versConstraint struct {
	op, version string
}

// InVers reports whether v lies in a vers range ("vers:maven/>=2.0|<2.15.0"),
// evaluated as the vers specification describes: equality and inequality
// constraints first, then the remaining constraints, sorted, as a sequence
// of intervals. It returns an error for a malformed range, an unknown
// scheme or a version the scheme's order cannot parse.
func InVers(expr, v string) (bool, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(expr), "vers:")
	if !ok {
		return false, fmt.Errorf("vers range %q does not start with \"vers:\"", expr)
	}
	scheme, body, ok := strings.Cut(rest, "/")
	if !ok || scheme == "" {
		return false, fmt.Errorf("vers range %q has no scheme", expr)
	}
	body = strings.ReplaceAll(body, " ", "")
	if body == "*" {
		return true, nil
	}
	order, ok := versOrder(scheme)
	if !ok {
		return false, fmt.Errorf("vers scheme %q has no known version order", scheme)
	}
	if !order.Valid(v) {
		return false, fmt.Errorf("version %q is not a valid %s version", v, order.Name())
	}
	var ordered []versConstraint
	for _, part := range strings.Split(body, "|") {
		if part == "" {
			return false, fmt.Errorf("vers range %q has an empty constraint", expr)
		}
		c := versConstraint{op: "="}
		for _, op := range []string{">=", "<=", "!=", "<", ">", "="} {
			if strings.HasPrefix(part, op) {
				c.op = op
				part = part[len(op):]
				break
			}
		}
		c.version = part
		cmp, err := order.Compare(v, c.version)
		if err != nil {
			return false, fmt.Errorf("vers range %q: %w", expr, err)
		}
		switch c.op {
		case "=":
			if cmp == 0 {
				return true, nil
			}
		case "!=":
			if cmp == 0 {
				return false, nil
			}
		default:
			ordered = append(ordered, c)
		}
	}
	slices.SortStableFunc(ordered, func(a, b versConstraint) int {
		c, _ := order.Compare(a.version, b.version)
		return c
	})
	satisfies := func(c versConstraint) bool {
		cmp, _ := order.Compare(v, c.version)
		switch c.op {
		case "<":
			return cmp < 0
		case "<=":
			return cmp <= 0
		case ">":
			return cmp > 0
		}
		return cmp >= 0
	}
	lower := func(c versConstraint) bool { return c.op == ">" || c.op == ">=" }
	for i, c := range ordered {
		if i == 0 && !lower(c) && satisfies(c) {
			return true, nil
		}
		if i == len(ordered)-1 && lower(c) && satisfies(c) {
			return true, nil
		}
		if i+1 < len(ordered) && lower(c) && !lower(ordered[i+1]) && satisfies(c) && satisfies(ordered[i+1]) {
			return true, nil
		}
	}
	return false, nil
}
