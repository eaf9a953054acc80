package sbom

import (
	"fmt"
	"strings"
	"time"

	"github.com/github/go-spdx/v2/spdxexp"
)

// collector gathers warnings while a document is read.
type collector struct {
	warnings []Warning
}

func (c *collector) warn(location, ref, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{Location: location, Ref: ref, Message: fmt.Sprintf(format, args...)})
}

// identify sets the identity, package key and version of c from its purl,
// else its CPE, else its name. declaredVersion is the version the document
// states for the component outside the purl.
func (col *collector) identify(c *Component, declaredVersion string) {
	declaredVersion = strings.TrimSpace(declaredVersion)
	var cpeID *Identity
	if c.CPE != "" {
		cpe, err := ParseCPE(c.CPE)
		if err != nil {
			col.warn(c.Location, c.Ref, "%v; the CPE is ignored", err)
		} else {
			id := Identity{Source: FromCPE, Type: "cpe", Namespace: cpe.Vendor, Name: cpe.Product}
			if specific(cpe.Version) {
				id.Version = cpe.Version
			}
			cpeID = &id
		}
	}
	if c.PURL != "" {
		id, err := ParsePURL(c.PURL)
		if err == nil {
			if id.Version == "" {
				id.Version = declaredVersion
			}
			if id.Version == "" && cpeID != nil {
				id.Version = cpeID.Version
			}
			c.Identity = id
			c.Version = id.Version
			c.Package = id.Key()
			return
		}
		fallback := "its name"
		if cpeID != nil {
			fallback = "its CPE"
		}
		col.warn(c.Location, c.Ref, "%v; the component is identified by %s instead", err, fallback)
	}
	if cpeID != nil {
		if declaredVersion != "" {
			cpeID.Version = declaredVersion
		}
		c.Identity = *cpeID
		c.Version = cpeID.Version
		return
	}
	c.Identity = Identity{Source: FromName, Name: c.Name, Version: declaredVersion}
	if c.Group != "" {
		c.Identity.Namespace = c.Group
	}
	c.Version = declaredVersion
}

// noLicense reports SPDX's placeholders for an absent license.
func noLicense(s string) bool {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "NOASSERTION", "NONE":
		return true
	}
	return false
}

// expressionLicense reads an SPDX license expression. An invalid one is
// kept as written and left unresolved.
func expressionLicense(written, kind string) License {
	written = strings.TrimSpace(written)
	l := License{Written: written, Kind: kind}
	normalised, invalid := spdxexp.ValidateAndNormalizeLicensesWithOptions([]string{written}, spdxexp.ValidateLicensesOptions{})
	if len(invalid) == 0 && len(normalised) == 1 {
		l.Expression = normalised[0]
	}
	return l
}

// idLicense reads a CycloneDX license id, which must be a single SPDX
// license id (deprecated ids included), never an expression.
func idLicense(id, kind string) License {
	l := expressionLicense(id, kind)
	if strings.ContainsAny(l.Written, " ()") {
		l.Expression = ""
	}
	return l
}

// nameLicense reads a CycloneDX license name. Names are free text; one
// that is exactly an SPDX license id (such as "MIT") is resolved to it.
func nameLicense(name, kind string) License {
	l := License{Written: strings.TrimSpace(name), Kind: kind}
	if ok, canonical := spdxexp.ActiveLicense(l.Written); ok {
		l.Expression = canonical
		l.FromName = true
	}
	return l
}

// endedPhrases are end-of-support or level-of-support texts that state
// that support has ended. They are matched case-insensitively as whole
// values or as substrings.
var endedPhrases = []string{
	"no longer supported", "no longer maintained", "not supported", "unsupported",
	"end of life", "end-of-life", "end of support", "end-of-support", "eol", "eos",
	"abandoned", "discontinued", "obsolete", "retired",
}

func statesEnded(text string) bool {
	t := strings.ToLower(strings.TrimSpace(text))
	if t == "" {
		return false
	}
	for _, p := range endedPhrases {
		if t == p || (len(p) > 3 && strings.Contains(t, p)) {
			return true
		}
	}
	return false
}

// supportProperty classifies a property name: "end" for an end-of-support
// date or statement, "level" for a level of support, or "". Names compare
// without case or punctuation, after any "namespace:" prefix.
func supportProperty(name string) string {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	switch b.String() {
	case "endofsupport", "endofsupportdate", "eos", "eosdate", "endoflife", "endoflifedate",
		"eol", "eoldate", "supportend", "supportenddate", "supportedthrough", "supporteduntil",
		"validuntil", "validuntildate":
		return "end"
	case "levelofsupport", "supportlevel", "supportstatus":
		return "level"
	}
	return ""
}

// applySupportEnd records an end-of-support value: a date or time when it
// parses as one, otherwise a statement that may state that support ended.
func (col *collector) applySupportEnd(c *Component, value string) {
	value = strings.TrimSpace(value)
	if value == "" {
		return
	}
	c.Support.Text = value
	if t, ok := parseSupportTime(value); ok {
		c.Support.EndOfSupport = t
		return
	}
	if statesEnded(value) {
		c.Support.Ended = true
	}
}

func (col *collector) applySupportLevel(c *Component, value string) {
	value = strings.TrimSpace(value)
	if value == "" {
		return
	}
	c.Support.Level = value
	if statesEnded(value) {
		c.Support.Ended = true
	}
}

// parseSupportTime reads a time (RFC 3339) or a date, month or year. A date
// without a time of day marks the last supported period, so the result is
// the start of the following day, month or year in UTC.
func parseSupportTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02T15:04:05", s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.AddDate(0, 0, 1), true
	}
	if t, err := time.Parse("2006-01", s); err == nil {
		return t.AddDate(0, 1, 0), true
	}
	if len(s) == 4 && allDigitString(s) {
		if t, err := time.Parse("2006", s); err == nil {
			return t.AddDate(1, 0, 0), true
		}
	}
	return time.Time{}, false
}

func allDigitString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// normaliseHash upper-cases the algorithm and lower-cases the digest.
func normaliseHash(alg, value string) Hash {
	return Hash{Algorithm: strings.ToUpper(strings.TrimSpace(alg)), Value: strings.ToLower(strings.TrimSpace(value))}
}

// parseCreated reads a document creation time; an invalid one is reported
// and left zero.
func (col *collector) parseCreated(location, value string) time.Time {
	value = strings.TrimSpace(value)
	if value == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		col.warn(location, "", "creation time %q is not an RFC 3339 time; it is ignored", value)
		return time.Time{}
	}
	return t.UTC()
}
