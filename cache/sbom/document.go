// Package sbom owns the reading of software bills of materials that ship
// with releases: CycloneDX JSON and XML (1.2 to 1.7, newer 1.x minor
// versions read as far as the 1.7 model goes), SPDX 2.2 and 2.3 JSON and
// tag-value, and SPDX 3.0 JSON-LD. Parse detects the format from the
// content, never from a file name, and returns a Document whose components
// carry a normalised identity (from the purl, else the CPE, else the name),
// licenses, hashes and end-of-support data where the SBOM states them.
//
// Parse is a pure function of its input; problems that leave the rest of
// the document usable (an invalid purl, an unparseable date) become
// Warnings that name where in the document they are.
package sbom

import (
	"fmt"
	"time"
)

// Format is an SBOM serialisation that Parse reads.
type Format string

// Formats that Parse reads.
const (
	CycloneDXJSON Format = "CycloneDX JSON"
	CycloneDXXML  Format = "CycloneDX XML"
	SPDXJSON      Format = "SPDX JSON"
	SPDXTagValue  Format = "SPDX tag-value"
	SPDX3JSONLD   Format = "SPDX 3 JSON-LD"
)

// Document is one parsed SBOM.
type Document struct {
	Format Format `json:"format"`
	// SpecVersion is the version of the format as the document declares
	// it: "1.4" for CycloneDX, "SPDX-2.3" for SPDX 2, "3.0.1" for SPDX 3.
	SpecVersion string `json:"spec_version"`
	// SerialNumber identifies the document: the CycloneDX serialNumber
	// ("urn:uuid:..."), the SPDX 2 documentNamespace or the SPDX 3
	// document's spdxId. It may be empty.
	SerialNumber string `json:"serial_number,omitempty"`
	// BOMVersion is the CycloneDX BOM version; 0 for SPDX.
	BOMVersion int    `json:"bom_version,omitempty"`
	Name       string `json:"name,omitempty"`
	// Created is the document's creation time; zero when absent or invalid.
	Created time.Time `json:"created,omitzero"`
	// Subject is what the SBOM describes: the CycloneDX metadata.component
	// or the package an SPDX document DESCRIBES. It is nil when the
	// document names no subject.
	Subject *Component `json:"subject,omitempty"`
	// Components lists every component or package the document names. For
	// CycloneDX this excludes metadata.component itself (it is the Subject)
	// but includes components nested anywhere. For SPDX it includes every
	// package, the described one too.
	Components []Component `json:"components"`
	// Files lists the files of an SPDX document. CycloneDX file components
	// are Components.
	Files []File `json:"files,omitempty"`
}

// Component is one component or package of an SBOM.
type Component struct {
	// Ref is the component's reference inside the document: the CycloneDX
	// bom-ref or the SPDX element id.
	Ref string `json:"ref,omitempty"`
	// Location is the component's place in the document, such as
	// "components[3].components[0]" or "package SPDXRef-xlsx".
	Location string `json:"location"`
	// Type is the CycloneDX component type ("library", "firmware",
	// "device") or the SPDX primary package purpose, lowercased.
	Type string `json:"type,omitempty"`
	// Name is the component's name as written; Group is the CycloneDX group.
	Name  string `json:"name"`
	Group string `json:"group,omitempty"`
	// Version is the purl's version, else the version the document declares
	// for the component, else the CPE's version.
	Version  string   `json:"version,omitempty"`
	Supplier string   `json:"supplier,omitempty"`
	Identity Identity `json:"identity"`
	// Package is Identity.Key(), computed once at parse time.
	Package PackageKey `json:"package,omitzero"`
	PURL    string     `json:"purl,omitempty"`
	CPE     string     `json:"cpe,omitempty"`
	// Licenses are the declared and concluded licenses, in document order.
	Licenses []License `json:"licenses,omitempty"`
	Hashes   []Hash    `json:"hashes,omitempty"`
	Support  Support   `json:"support,omitzero"`
	// SecurityRefs are advisory or fix references the SBOM lists for the
	// component (SPDX SECURITY external references).
	SecurityRefs []string `json:"security_refs,omitempty"`
	// Excluded is set for CycloneDX components with scope "excluded", which
	// are not part of the shipped software.
	Excluded bool `json:"excluded,omitempty"`
}

// License is one license statement of a component.
type License struct {
	// Written is the license as the document states it: an SPDX id, an
	// expression or a free-text name.
	Written string `json:"written"`
	// Expression is the normalised SPDX license expression, or empty when
	// Written is not a valid SPDX id or expression (an unresolved license).
	Expression string `json:"expression,omitempty"`
	// FromName is set when a CycloneDX license name (free text by
	// definition) was exactly a valid SPDX license id and so was resolved.
	FromName bool `json:"from_name,omitempty"`
	// Kind is "declared", "concluded" or empty when the document does not
	// say which.
	Kind string `json:"kind,omitempty"`
}

// Resolved reports whether the license is a valid SPDX expression.
func (l License) Resolved() bool { return l.Expression != "" }

// Hash is a checksum of a component or file.
type Hash struct {
	// Algorithm is the name as written, upper-cased ("SHA-256", "SHA1").
	Algorithm string `json:"algorithm"`
	// Value is the lowercased hex digest.
	Value string `json:"value"`
}

// Support is an SBOM's statement about a component's end of support.
type Support struct {
	// EndOfSupport is the first instant at which the component is no longer
	// supported. A date without a time ("2025-06-30") means support ends
	// after that day, so EndOfSupport is the next midnight UTC. Zero when
	// no date is stated.
	EndOfSupport time.Time `json:"end_of_support,omitzero"`
	// Text is the end-of-support value as written, such as "2025-06-30" or
	// "No longer supported".
	Text string `json:"text,omitempty"`
	// Level is the stated level of support, such as "Actively maintained"
	// or the SPDX 3 supportLevel.
	Level string `json:"level,omitempty"`
	// Ended is set when the SBOM states in words that support has ended (for
	// example "No longer supported", or SPDX 3 supportLevel endOfSupport),
	// independent of any date.
	Ended bool `json:"ended,omitempty"`
}

// PastEnd reports whether the component is out of support at now.
func (s Support) PastEnd(now time.Time) bool {
	if s.Ended {
		return true
	}
	return !s.EndOfSupport.IsZero() && !now.Before(s.EndOfSupport)
}

// File is one file of an SPDX document.
type File struct {
	Ref  string `json:"ref"`
	Name string `json:"name"`
	// Hashes are the file's checksums.
	Hashes []Hash `json:"hashes,omitempty"`
	// License is the concluded license as written ("NOASSERTION" included).
	License string `json:"license,omitempty"`
}

// Warning is a problem in one part of a document that did not stop the
// rest of it from being read.
type Warning struct {
	// Location is the place of the problem in the document, in the same
	// form as Component.Location, or empty for the document as a whole.
	Location string `json:"location,omitempty"`
	// Ref is the component's bom-ref or SPDX id, when it has one.
	Ref     string `json:"ref,omitempty"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	switch {
	case w.Location == "":
		return w.Message
	case w.Ref != "":
		return fmt.Sprintf("%s (ref %s): %s", w.Location, w.Ref, w.Message)
	}
	return w.Location + ": " + w.Message
}
