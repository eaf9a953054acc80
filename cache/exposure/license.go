package exposure

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp"

	"github.com/wardgate/wardgate/cache/sbom"
)

// LicensePolicy is hospital IT's license policy, as the config file
// states it.
type LicensePolicy struct {
	// Allow lists the SPDX license ids (or LicenseRef- ids) that are
	// acceptable. When it is empty, every license that is not denied is
	// acceptable.
	Allow []string `json:"allow" yaml:"allow"`
	// Deny lists SPDX license ids that are never acceptable. Denying an id
	// also denies it with any exception ("GPL-2.0-only WITH
	// Classpath-exception-2.0" is denied by "GPL-2.0-only").
	Deny []string `json:"deny" yaml:"deny"`
}

// Validate checks that every id is a known SPDX license id or a
// LicenseRef- id, and that no id is both allowed and denied.
func (p LicensePolicy) Validate() error {
	for list, ids := range map[string][]string{"allow": p.Allow, "deny": p.Deny} {
		for _, id := range ids {
			if strings.HasPrefix(id, "LicenseRef-") {
				continue
			}
			if ok, _ := spdxexp.ValidateLicenses([]string{id}); !ok || strings.ContainsAny(id, " ()") {
				return fmt.Errorf("license policy %s list: %q is not an SPDX license id; use an id from the SPDX license list or a LicenseRef- id", list, id)
			}
		}
	}
	for _, id := range p.Allow {
		if slices.ContainsFunc(p.Deny, func(d string) bool { return strings.EqualFold(d, id) }) {
			return fmt.Errorf("license policy: %q is in both the allow and the deny list", id)
		}
	}
	return nil
}

// LicenseVerdict is the outcome of checking one license statement.
type LicenseVerdict string

// License verdicts.
const (
	LicenseAllowed LicenseVerdict = "allowed"
	// LicenseDenied: every way to satisfy the expression uses a denied
	// license.
	LicenseDenied LicenseVerdict = "denied"
	// LicenseNotAllowed: the expression cannot be satisfied with allowed
	// licenses alone.
	LicenseNotAllowed LicenseVerdict = "not_allowed"
	// LicenseUnresolved: the license is free text or names a LicenseRef-
	// that the policy does not list, so a person must review it.
	LicenseUnresolved LicenseVerdict = "unresolved"
	// LicenseMissing: the component states no license.
	LicenseMissing LicenseVerdict = "missing"
)

// Check evaluates one license statement against the policy and returns
// the verdict and its reason.
func (p LicensePolicy) Check(l sbom.License) (LicenseVerdict, string) {
	if !l.Resolved() {
		return LicenseUnresolved, fmt.Sprintf("%q is not an SPDX license expression", l.Written)
	}
	expr := l.Expression
	ids, err := spdxexp.ExtractLicenses(expr)
	if err != nil {
		return LicenseUnresolved, fmt.Sprintf("expression %q does not parse: %v", expr, err)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if isRef(id) && !listed(p.Allow, id) && !listed(p.Deny, id) {
			return LicenseUnresolved, fmt.Sprintf("%s is a custom license that the policy does not list", id)
		}
	}
	var usable, denied []string
	for _, id := range ids {
		if p.denies(id) {
			denied = append(denied, id)
		} else {
			usable = append(usable, id)
		}
	}
	if len(denied) > 0 {
		ok := len(usable) > 0
		if ok {
			ok, err = spdxexp.Satisfies(expr, usable)
			ok = ok && err == nil
		}
		if !ok {
			return LicenseDenied, fmt.Sprintf("%s requires denied %s", expr, strings.Join(denied, ", "))
		}
	}
	if len(p.Allow) == 0 {
		return LicenseAllowed, ""
	}
	var allowed []string
	for _, a := range p.Allow {
		if !p.denies(a) {
			allowed = append(allowed, a)
		}
	}
	if len(allowed) > 0 {
		if ok, err := spdxexp.Satisfies(expr, allowed); err == nil && ok {
			return LicenseAllowed, ""
		}
	}
	return LicenseNotAllowed, fmt.Sprintf("%s cannot be satisfied with allowed licenses alone", expr)
}

// denies reports whether an extracted license (possibly "ID WITH
// EXCEPTION" or "ID+") falls under the deny list.
func (p LicensePolicy) denies(id string) bool {
	base, _, _ := strings.Cut(id, " WITH ")
	base = strings.TrimSuffix(base, "+")
	return listed(p.Deny, id) || listed(p.Deny, base)
}

func listed(list []string, id string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, id) })
}

func isRef(id string) bool {
	return strings.HasPrefix(id, "LicenseRef-") || strings.HasPrefix(id, "DocumentRef-")
}

// LicenseFinding is one license statement of one component of one release
// that is not plainly allowed.
type LicenseFinding struct {
	Release     string         `json:"release"`
	DeviceCount int            `json:"device_count"`
	Component   string         `json:"component"`
	Version     string         `json:"version,omitempty"`
	PURL        string         `json:"purl,omitempty"`
	License     string         `json:"license,omitempty"`
	Expression  string         `json:"expression,omitempty"`
	Kind        string         `json:"kind,omitempty"`
	Verdict     LicenseVerdict `json:"verdict"`
	Reason      string         `json:"reason,omitempty"`
}

// LicenseReport lists license findings across every indexed release.
type LicenseReport struct {
	Policy LicensePolicy `json:"policy"`
	// Counts counts every license statement (and every component without
	// one, as missing) by verdict, allowed ones included.
	Counts map[LicenseVerdict]int `json:"counts"`
	// Findings lists every statement that is not allowed, by release and
	// document order.
	Findings []LicenseFinding `json:"findings"`
}

// Licenses checks every component of every indexed release against the
// policy.
func (ix *Index) Licenses(policy LicensePolicy) LicenseReport {
	rep := LicenseReport{Policy: policy, Counts: map[LicenseVerdict]int{}}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	targets := make([]string, 0, len(ix.releases))
	for t := range ix.releases {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	// Components repeat across releases; each distinct statement is
	// checked once.
	type memo struct {
		verdict LicenseVerdict
		reason  string
	}
	checked := map[sbom.License]memo{}
	for _, t := range targets {
		r := ix.releases[t]
		devices := len(ix.onRelease[t])
		for i := range r.doc.Components {
			c := &r.doc.Components[i]
			if c.Excluded {
				continue
			}
			finding := LicenseFinding{Release: t, DeviceCount: devices, Component: c.Name, Version: c.Version, PURL: c.PURL}
			if len(c.Licenses) == 0 {
				rep.Counts[LicenseMissing]++
				finding.Verdict = LicenseMissing
				finding.Reason = "the SBOM states no license"
				rep.Findings = append(rep.Findings, finding)
				continue
			}
			for _, l := range c.Licenses {
				m, ok := checked[l]
				if !ok {
					m.verdict, m.reason = policy.Check(l)
					checked[l] = m
				}
				rep.Counts[m.verdict]++
				if m.verdict == LicenseAllowed {
					continue
				}
				f := finding
				f.License, f.Expression, f.Kind, f.Verdict, f.Reason = l.Written, l.Expression, l.Kind, m.verdict, m.reason
				rep.Findings = append(rep.Findings, f)
			}
		}
	}
	return rep
}

// WriteJSON writes the license report as JSON.
func (r LicenseReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per finding.
func (r LicenseReport) WriteCSV(w io.Writer) error {
	header := []string{"release", "device_count", "component", "version", "purl", "license", "expression", "kind", "verdict", "reason"}
	rows := make([][]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		rows = append(rows, []string{f.Release, strconv.Itoa(f.DeviceCount), f.Component, f.Version, f.PURL,
			f.License, f.Expression, f.Kind, string(f.Verdict), f.Reason})
	}
	return writeCSV(w, header, rows)
}
