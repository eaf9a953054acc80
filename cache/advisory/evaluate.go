package advisory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/cache/advisory/version"
	"github.com/wardgate/wardgate/cache/sbom"
)

// Verdict is the outcome of evaluating an OSV record for one package
// version.
type Verdict struct {
	// Status is affected, not affected, fixed or unknown. Fixed means the
	// version lies past a fixed or last_affected event of a range that it
	// had entered, so it contains the fix. Not affected means it is outside
	// every range and the versions list.
	Status Status `json:"status"`
	// Reason explains the status in a sentence.
	Reason string `json:"reason"`
	// FixedIn is, for affected, the first fixed version above this one in
	// the range that matched (the upgrade target), and for fixed, the fixed
	// version that this one has reached. It is empty when no fix is known.
	FixedIn string `json:"fixed_in,omitempty"`
}

// rank orders statuses from the least (1) to the most (5) urgent, for
// combining several findings about one thing.
func rank(s Status) int {
	switch s {
	case StatusAffected:
		return 5
	case StatusUnderInvestigation:
		return 4
	case StatusUnknown:
		return 3
	case StatusFixed:
		return 2
	case StatusNotAffected:
		return 1
	}
	return 0
}

// Matches reports whether the affected entry names the package, and for
// ecosystems scoped to a distribution release ("Debian:11"), whether
// distro (the purl distro qualifier, may be empty) is that release or
// unknown.
func (a Affected) Matches(pkg sbom.PackageKey, distro string) bool {
	key := a.Key()
	if key.Name == "" || key != pkg {
		return false
	}
	return distroMatches(a.Package.Ecosystem, distro)
}

// Key returns the package key of the entry, from its ecosystem and name,
// or from its purl when those are missing.
func (a Affected) Key() sbom.PackageKey {
	if a.Package.Ecosystem != "" && a.Package.Name != "" {
		return sbom.NewPackageKey(a.Package.Ecosystem, a.Package.Name)
	}
	if a.Package.PURL != "" {
		if id, err := sbom.ParsePURL(a.Package.PURL); err == nil {
			return id.Key()
		}
	}
	return sbom.PackageKey{}
}

// Evaluate applies the OSV evaluation rules to one version of the entry's
// package: the version is affected if it is in the versions list (exact
// string match) or inside any range. SEMVER ranges use SemVer 2.0.0 order,
// ECOSYSTEM ranges the ecosystem's order. A GIT range, an ECOSYSTEM range
// of an ecosystem without a known order, an invalid range, or a version the
// order cannot parse make the result unknown unless another part of the
// entry shows the version affected.
func (a Affected) Evaluate(v string) Verdict {
	v = strings.TrimSpace(v)
	if v == "" {
		return Verdict{Status: StatusUnknown, Reason: "the component has no version"}
	}
	for _, listed := range a.Versions {
		if listed == v || (isGoLike(a.Package.Ecosystem) && strings.TrimPrefix(listed, "v") == strings.TrimPrefix(v, "v")) {
			return Verdict{Status: StatusAffected, Reason: fmt.Sprintf("version %s is listed as affected", v)}
		}
	}
	best := Verdict{Status: StatusNotAffected, Reason: fmt.Sprintf("version %s is outside every affected range", v)}
	if len(a.Ranges) == 0 && len(a.Versions) > 0 {
		best.Reason = fmt.Sprintf("version %s is not in the affected versions list", v)
	}
	var unknown []string
	for i, r := range a.Ranges {
		got := evaluateRange(r, a.Package.Ecosystem, v)
		switch got.Status {
		case StatusAffected:
			return got
		case StatusUnknown:
			unknown = append(unknown, fmt.Sprintf("range %d: %s", i, got.Reason))
		case StatusFixed:
			if rank(best.Status) < rank(StatusFixed) || laterFix(a.Package.Ecosystem, r.Type, got, best) {
				best = got
			}
		}
	}
	if len(unknown) > 0 {
		return Verdict{Status: StatusUnknown, Reason: strings.Join(unknown, "; ")}
	}
	return best
}

func isGoLike(ecosystem string) bool {
	base, _, _ := strings.Cut(ecosystem, ":")
	return base == "Go" || base == "Kubernetes"
}

// evaluateRange runs the OSV schema's IncludedInRanges for one range.
func evaluateRange(r Range, ecosystem, v string) Verdict {
	if r.Invalid != "" {
		return Verdict{Status: StatusUnknown, Reason: "invalid range: " + r.Invalid}
	}
	var order version.Order
	switch r.Type {
	case "SEMVER":
		order = version.SemVer
	case "ECOSYSTEM":
		o, ok := version.For(ecosystem)
		if !ok {
			return Verdict{Status: StatusUnknown, Reason: fmt.Sprintf("no version order is known for ecosystem %q", ecosystem)}
		}
		order = o
	case "GIT":
		return Verdict{Status: StatusUnknown, Reason: "a GIT range needs the repository's commit graph, which the gateway does not have"}
	default:
		return Verdict{Status: StatusUnknown, Reason: fmt.Sprintf("range type %q is not defined by the OSV schema", r.Type)}
	}
	if !order.Valid(v) {
		return Verdict{Status: StatusUnknown, Reason: fmt.Sprintf("version %q is not a valid %s version", v, order.Name())}
	}
	cmp := func(a, b string) (int, bool) {
		c, err := order.Compare(a, b)
		return c, err == nil
	}

	// Limits: with none, "*" is implied; otherwise v must be below one.
	hasLimit, belowLimit := false, false
	for _, e := range r.Events {
		if e.Limit == "" {
			continue
		}
		hasLimit = true
		if strings.Contains(e.Limit, "*") {
			belowLimit = true
			continue
		}
		c, ok := cmp(v, e.Limit)
		if !ok {
			return Verdict{Status: StatusUnknown, Reason: fmt.Sprintf("limit %q is not a valid %s version", e.Limit, order.Name())}
		}
		if c < 0 {
			belowLimit = true
		}
	}
	if hasLimit && !belowLimit {
		return Verdict{Status: StatusNotAffected, Reason: fmt.Sprintf("version %s is at or above every limit of the range", v)}
	}

	events, err := sortEvents(r.Events, order)
	if err != nil {
		return Verdict{Status: StatusUnknown, Reason: err.Error()}
	}
	vulnerable, entered := false, false
	var fixedBy string
	for _, e := range events {
		switch {
		case e.Introduced != "":
			if e.Introduced == "0" {
				vulnerable, entered = true, true
				continue
			}
			if c, _ := cmp(v, e.Introduced); c >= 0 {
				vulnerable, entered = true, true
			}
		case e.Fixed != "":
			if c, _ := cmp(v, e.Fixed); c >= 0 {
				vulnerable = false
				fixedBy = e.Fixed
			}
		case e.LastAffected != "":
			if c, _ := cmp(v, e.LastAffected); c > 0 {
				vulnerable = false
				fixedBy = "after " + e.LastAffected
			}
		}
	}
	if vulnerable {
		verdict := Verdict{Status: StatusAffected, Reason: fmt.Sprintf("version %s is inside an affected %s range", v, r.Type)}
		// The upgrade target is the first fixed event above v.
		for _, e := range events {
			if e.Fixed != "" {
				if c, _ := cmp(v, e.Fixed); c < 0 {
					verdict.FixedIn = e.Fixed
					verdict.Reason = fmt.Sprintf("version %s is inside an affected %s range that is fixed in %s", v, r.Type, e.Fixed)
					break
				}
			}
		}
		return verdict
	}
	if entered && fixedBy != "" {
		fixed := Verdict{Status: StatusFixed, FixedIn: strings.TrimPrefix(fixedBy, "after "),
			Reason: fmt.Sprintf("version %s is at or past the fix %s", v, fixedBy)}
		if strings.HasPrefix(fixedBy, "after ") {
			fixed.FixedIn = ""
			fixed.Reason = fmt.Sprintf("version %s is above the last affected version %s", v, strings.TrimPrefix(fixedBy, "after "))
		}
		return fixed
	}
	return Verdict{Status: StatusNotAffected, Reason: fmt.Sprintf("version %s is below the range's introduced version", v)}
}

// sortEvents orders events by version, with introduced "0" first and
// limits left out. Events at equal versions keep their order in the
// record. A version the order cannot parse makes the range unanswerable.
func sortEvents(events []Event, order version.Order) ([]Event, error) {
	type keyed struct {
		e   Event
		v   string
		idx int
	}
	var list []keyed
	for i, e := range events {
		v := e.Introduced + e.Fixed + e.LastAffected
		if e.Limit != "" {
			continue
		}
		if e.Introduced == "0" {
			list = append(list, keyed{e, "", i})
			continue
		}
		if !order.Valid(v) {
			return nil, fmt.Errorf("event version %q is not a valid %s version", v, order.Name())
		}
		list = append(list, keyed{e, v, i})
	}
	slices.SortStableFunc(list, func(a, b keyed) int {
		switch {
		case a.v == "" && b.v == "":
			return 0
		case a.v == "":
			return -1
		case b.v == "":
			return 1
		}
		c, _ := order.Compare(a.v, b.v)
		return c
	})
	out := make([]Event, len(list))
	for i, k := range list {
		out[i] = k.e
	}
	return out, nil
}

// EvaluatePackage evaluates every affected entry of the record that names
// pkg and combines them: affected if any entry is affected, else unknown, else
// fixed, else not affected. ok is false when no entry names the package, or
// when the record is withdrawn.
func (o *OSV) EvaluatePackage(pkg sbom.PackageKey, distro, v string) (Verdict, bool) {
	if !o.Withdrawn.IsZero() {
		return Verdict{}, false
	}
	var best Verdict
	found := false
	for _, a := range o.Affected {
		if !a.Matches(pkg, distro) {
			continue
		}
		got := a.Evaluate(v)
		if !found || rank(got.Status) > rank(best.Status) ||
			(got.Status == StatusFixed && best.Status == StatusFixed && laterFix(a.Package.Ecosystem, "ECOSYSTEM", got, best)) {
			best = got
		}
		found = true
	}
	return best, found
}

// laterFix reports whether fixed verdict a names a later fix than fixed
// verdict b, so that a version past several fixes reports the latest one.
func laterFix(ecosystem, rangeType string, a, b Verdict) bool {
	if b.Status != StatusFixed || a.FixedIn == "" {
		return false
	}
	if b.FixedIn == "" {
		return true
	}
	order, ok := version.For(ecosystem)
	if rangeType == "SEMVER" || !ok {
		order = version.SemVer
	}
	c, err := order.Compare(a.FixedIn, b.FixedIn)
	return err == nil && c > 0
}

// Packages returns the distinct package keys that the record's affected
// entries name.
func (o *OSV) Packages() []sbom.PackageKey {
	var out []sbom.PackageKey
	for _, a := range o.Affected {
		k := a.Key()
		if k.Name != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

var debianCodenames = map[string]string{
	"wheezy": "7", "jessie": "8", "stretch": "9", "buster": "10", "bullseye": "11",
	"bookworm": "12", "trixie": "13", "forky": "14",
}

// distroMatches compares the release suffix of an OSV ecosystem with a
// purl distro qualifier. Either side missing, or a distribution whose
// release names are not understood here, counts as a match, because a
// guessed mismatch would hide an exposure.
func distroMatches(ecosystem, distro string) bool {
	base, suffix, ok := strings.Cut(ecosystem, ":")
	if !ok || suffix == "" || distro == "" {
		return true
	}
	d := strings.ToLower(distro)
	switch base {
	case "Debian":
		d = strings.TrimPrefix(d, "debian-")
		if n, ok := debianCodenames[d]; ok {
			d = n
		}
		major, _, _ := strings.Cut(d, ".")
		return major == suffix
	case "Ubuntu":
		d = strings.TrimPrefix(d, "ubuntu-")
		s := strings.TrimSuffix(strings.TrimPrefix(suffix, "Pro:"), ":LTS")
		return d == s || strings.HasPrefix(d, s+".")
	case "Alpine":
		d = strings.TrimPrefix(d, "alpine-")
		s := strings.TrimPrefix(suffix, "v")
		return majorMinor(d) == majorMinor(s)
	}
	return true
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	if _, err := strconv.Atoi(parts[0]); err != nil {
		return v
	}
	return parts[0] + "." + parts[1]
}
