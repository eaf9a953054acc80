package advisory

import (
	"strings"

	"github.com/wardgate/wardgate/cache/sbom"
)

// MatchOptions controls how loosely a VEX product matches a component.
type MatchOptions struct {
	// Refs allows a product's bare ref to match a component's bom-ref or
	// SPDX id. Refs are local to one document, so this is only sound for a
	// statement scoped to the release whose SBOM holds the component.
	Refs bool
}

// Match reports whether the product names component c, by purl (type,
// namespace and name, and the version when the product's purl has one),
// CPE (vendor, product and a specific version), hash, bom-ref (with
// opts.Refs) or, for a product known only by name, name and version.
// status is the status a matching CycloneDX version rule assigns, or empty
// when the product has no version rules.
func (p Product) Match(c *sbom.Component, opts MatchOptions) (ok bool, status Status) {
	if !p.identifies(c, opts) {
		return false, ""
	}
	if len(p.Versions) == 0 {
		return true, ""
	}
	for _, rule := range p.Versions {
		switch {
		case rule.Version != "":
			if rule.Version == c.Version {
				return true, rule.Status
			}
		case rule.Range != "":
			if in, err := InVers(rule.Range, c.Version); err == nil && in {
				return true, rule.Status
			}
		}
	}
	return false, ""
}

func (p Product) identifies(c *sbom.Component, opts MatchOptions) bool {
	if c == nil {
		return false
	}
	if opts.Refs && p.Ref != "" && p.Ref == c.Ref {
		return true
	}
	if p.BOMRef != "" && p.BOMRef == c.Ref && opts.Refs {
		return true
	}
	if p.PURL != "" && c.PURL != "" {
		if purlMatches(p.PURL, c) {
			return true
		}
	}
	if p.CPE != "" && c.CPE != "" {
		if cpeMatches(p.CPE, c) {
			return true
		}
	}
	for _, ph := range p.Hashes {
		for _, ch := range c.Hashes {
			if hashAlgorithm(ph.Algorithm) == hashAlgorithm(ch.Algorithm) && strings.EqualFold(ph.Value, ch.Value) && ph.Value != "" {
				return true
			}
		}
	}
	if p.PURL == "" && p.CPE == "" && p.Name != "" && strings.EqualFold(p.Name, c.Name) {
		return p.Version == "" || p.Version == c.Version
	}
	return false
}

func purlMatches(purl string, c *sbom.Component) bool {
	want, err := sbom.ParsePURL(purl)
	if err != nil || c.Identity.Source != sbom.FromPURL {
		return false
	}
	got := c.Identity
	if want.Type != got.Type || !strings.EqualFold(want.Namespace, got.Namespace) || !strings.EqualFold(want.Name, got.Name) {
		return false
	}
	return want.Version == "" || want.Version == c.Version
}

func cpeMatches(cpe string, c *sbom.Component) bool {
	want, err := sbom.ParseCPE(cpe)
	if err != nil {
		return false
	}
	got, err := sbom.ParseCPE(c.CPE)
	if err != nil {
		return false
	}
	if !strings.EqualFold(want.Vendor, got.Vendor) || !strings.EqualFold(want.Product, got.Product) {
		return false
	}
	if want.Version == "" || want.Version == "*" || want.Version == "-" {
		return true
	}
	return want.Version == got.Version || want.Version == c.Version
}

// hashAlgorithm normalises "SHA-256", "sha256" and "SHA256" alike.
func hashAlgorithm(a string) string {
	return strings.ReplaceAll(strings.ToUpper(a), "-", "")
}
