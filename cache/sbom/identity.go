package sbom

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/package-url/packageurl-go"
)

// IdentitySource is the part of a component that its identity came from.
type IdentitySource string

// Identity sources, from the most to the least precise.
const (
	FromPURL IdentitySource = "purl"
	FromCPE  IdentitySource = "cpe"
	FromName IdentitySource = "name"
)

// Identity is a component's normalised identity: the fields of its package
// URL, or of its CPE where it has no usable purl, or only its name.
type Identity struct {
	Source IdentitySource `json:"source"`
	// Type is the purl type ("maven", "npm", "deb"), or "cpe", or empty for
	// a component known only by name.
	Type string `json:"type,omitempty"`
	// Ecosystem is the OSV ecosystem name ("Maven", "npm", "Debian") for
	// purl types that have one, else the purl type, else empty.
	Ecosystem string `json:"ecosystem,omitempty"`
	// Namespace is the purl namespace (Maven group, npm scope, distribution
	// vendor) or the CPE vendor.
	Namespace string `json:"namespace,omitempty"`
	// Name is the purl name or the CPE product; for a component known only
	// by name, its name as written.
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Distro is the purl "distro" qualifier ("debian-11", "alpine-3.18").
	Distro string `json:"distro,omitempty"`
	// Upstream is the source package name from the purl "upstream"
	// qualifier, which OSV Linux distribution records name.
	Upstream string `json:"upstream,omitempty"`
}

// PackageKey identifies a package, without version, the way OSV records
// name it. Ecosystem is the OSV ecosystem without any release suffix. Name
// is the package name in that ecosystem's form ("group:artifact" for Maven,
// "@scope/name" for npm, the module path for Go), case-folded where the
// ecosystem is case-insensitive. Components and advisories meet on this key.
type PackageKey struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
}

func (k PackageKey) String() string { return k.Ecosystem + "/" + k.Name }

// purlEcosystems maps purl types to OSV ecosystems. deb, apk and rpm
// depend on the namespace and are handled in ecosystemForPURL.
var purlEcosystems = map[string]string{
	"maven":    "Maven",
	"npm":      "npm",
	"pypi":     "PyPI",
	"golang":   "Go",
	"nuget":    "NuGet",
	"gem":      "RubyGems",
	"cargo":    "crates.io",
	"composer": "Packagist",
	"hex":      "Hex",
	"pub":      "Pub",
	"swift":    "SwiftURL",
	"hackage":  "Hackage",
	"cran":     "CRAN",
	"conan":    "ConanCenter",
	"bitnami":  "Bitnami",
	"opam":     "opam",
	"julia":    "Julia",
}

var distroEcosystems = map[string]string{
	"debian":     "Debian",
	"ubuntu":     "Ubuntu",
	"alpine":     "Alpine",
	"wolfi":      "Wolfi",
	"chainguard": "Chainguard",
	"redhat":     "Red Hat",
	"rhel":       "Red Hat",
	"rocky":      "Rocky Linux",
	"almalinux":  "AlmaLinux",
	"opensuse":   "openSUSE",
	"suse":       "SUSE",
	"sles":       "SUSE",
	"photon":     "Photon OS",
	"mageia":     "Mageia",
	"openeuler":  "openEuler",
}

func ecosystemForPURL(typ, namespace string) string {
	switch typ {
	case "deb", "apk", "rpm":
		if e, ok := distroEcosystems[strings.ToLower(namespace)]; ok {
			return e
		}
		return typ
	}
	if e, ok := purlEcosystems[typ]; ok {
		return e
	}
	return typ
}

// PURLTypeForEcosystem returns the purl type of an OSV ecosystem, ignoring
// any release suffix, or "" when none is known.
func PURLTypeForEcosystem(ecosystem string) string {
	base, _, _ := strings.Cut(ecosystem, ":")
	for typ, e := range purlEcosystems {
		if e == base {
			return typ
		}
	}
	switch base {
	case "Debian", "Ubuntu":
		return "deb"
	case "Alpine", "Wolfi", "Chainguard":
		return "apk"
	}
	for _, e := range distroEcosystems {
		if e == base {
			return "rpm"
		}
	}
	return ""
}

var pypiSeparators = regexp.MustCompile(`[-_.]+`)

// NewPackageKey normalises an OSV ecosystem and package name into a key.
// The release suffix of the ecosystem is dropped ("Debian:11" becomes
// "Debian"). The name is case-folded for ecosystems whose names are
// case-insensitive, and PyPI names are also normalised as PEP 503 requires.
func NewPackageKey(ecosystem, name string) PackageKey {
	base, _, _ := strings.Cut(ecosystem, ":")
	name = strings.TrimSpace(name)
	switch base {
	case "PyPI":
		name = pypiSeparators.ReplaceAllString(strings.ToLower(name), "-")
	case "npm", "Go", "NuGet", "Packagist", "crates.io", "Debian", "Ubuntu",
		"Alpine", "Wolfi", "Chainguard", "Hex", "Pub", "GitHub Actions":
		name = strings.ToLower(name)
	}
	return PackageKey{Ecosystem: base, Name: name}
}

// Key returns the package key of the identity, or a zero key when the
// identity has no ecosystem (CPE or name only).
func (id Identity) Key() PackageKey {
	if id.Source != FromPURL || id.Ecosystem == "" {
		return PackageKey{}
	}
	name := id.Name
	switch id.Ecosystem {
	case "Maven":
		if id.Namespace != "" {
			name = id.Namespace + ":" + id.Name
		}
	case "npm", "Go", "Packagist", "SwiftURL":
		if id.Namespace != "" {
			name = id.Namespace + "/" + id.Name
		}
	case "Debian", "Ubuntu", "Alpine", "Wolfi", "Chainguard":
		if id.Upstream != "" {
			name = id.Upstream
		}
	default:
		if _, distro := distroEcosystemSet[id.Ecosystem]; distro && id.Upstream != "" {
			name = id.Upstream
		} else if id.Ecosystem == id.Type && id.Namespace != "" {
			// A purl type without an OSV ecosystem keeps its namespace, so
			// that pkg:github/a/x and pkg:github/b/x stay apart.
			name = id.Namespace + "/" + id.Name
		}
	}
	return NewPackageKey(id.Ecosystem, name)
}

var distroEcosystemSet = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, e := range distroEcosystems {
		m[e] = struct{}{}
	}
	return m
}()

// ParsePURL parses a package URL into an identity. The version is the
// purl's version, which may be empty.
func ParsePURL(s string) (Identity, error) {
	p, err := packageurl.FromString(strings.TrimSpace(s))
	if err != nil {
		return Identity{}, fmt.Errorf("invalid package URL %q: %w", s, err)
	}
	if p.Name == "" {
		return Identity{}, fmt.Errorf("invalid package URL %q: name is empty", s)
	}
	q := p.Qualifiers.Map()
	id := Identity{
		Source:    FromPURL,
		Type:      p.Type,
		Ecosystem: ecosystemForPURL(p.Type, p.Namespace),
		Namespace: p.Namespace,
		Name:      p.Name,
		Version:   p.Version,
		Distro:    q["distro"],
	}
	if up := q["upstream"]; up != "" {
		// Tools write "name" or "name@version" (syft) here.
		up, _, _ = strings.Cut(up, "@")
		up, _, _ = strings.Cut(up, " ")
		id.Upstream = up
	}
	return id, nil
}

// CPE is a parsed CPE 2.3 formatted string or CPE 2.2 URI. Fields hold
// the values without escaping; "*" (ANY) and "-" (NA) are kept as written.
type CPE struct {
	Part, Vendor, Product, Version, Update string
}

// ParseCPE parses a CPE 2.3 formatted string ("cpe:2.3:a:vendor:product:...")
// or a CPE 2.2 URI ("cpe:/a:vendor:product:version").
func ParseCPE(s string) (CPE, error) {
	s = strings.TrimSpace(s)
	var fields []string
	switch {
	case strings.HasPrefix(strings.ToLower(s), "cpe:2.3:"):
		fields = splitCPE23(s[len("cpe:2.3:"):])
		if len(fields) != 11 {
			return CPE{}, fmt.Errorf("invalid CPE %q: a CPE 2.3 string has 13 colon-separated fields, got %d", s, len(fields)+2)
		}
	case strings.HasPrefix(strings.ToLower(s), "cpe:/"):
		fields = strings.Split(s[len("cpe:/"):], ":")
		for i, f := range fields {
			fields[i] = strings.ReplaceAll(f, "%", "")
		}
	default:
		return CPE{}, fmt.Errorf("invalid CPE %q: must start with \"cpe:2.3:\" or \"cpe:/\"", s)
	}
	for len(fields) < 5 {
		fields = append(fields, "")
	}
	c := CPE{Part: fields[0], Vendor: fields[1], Product: fields[2], Version: fields[3], Update: fields[4]}
	if c.Part != "a" && c.Part != "o" && c.Part != "h" && c.Part != "*" {
		return CPE{}, fmt.Errorf("invalid CPE %q: part must be a, o or h, got %q", s, c.Part)
	}
	if c.Product == "" || c.Product == "*" || c.Product == "-" {
		return CPE{}, fmt.Errorf("invalid CPE %q: product is missing", s)
	}
	return c, nil
}

// splitCPE23 splits at colons that are not escaped with a backslash and
// removes the escapes.
func splitCPE23(s string) []string {
	var fields []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == ':':
			fields = append(fields, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(fields, b.String())
}

// specific reports whether a CPE field names a value rather than ANY or NA.
func specific(field string) bool {
	return field != "" && field != "*" && field != "-"
}
