package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
	"github.com/spdx/tools-golang/tagvalue"
)

// parseSPDX2 reads SPDX 2.1, 2.2 or 2.3 JSON or tag-value with
// spdx/tools-golang, which converts every version to its 2.3 model.
func parseSPDX2(data []byte, format Format, col *collector) (*Document, error) {
	var in spdx.Document
	var err error
	switch format {
	case SPDXJSON:
		err = spdxjson.ReadInto(bytes.NewReader(data), &in)
	default:
		err = tagvalue.ReadInto(bytes.NewReader(data), &in)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", format, err)
	}
	doc := &Document{
		Format:       format,
		SpecVersion:  in.SPDXVersion,
		SerialNumber: in.DocumentNamespace,
		Name:         in.DocumentName,
		Components:   []Component{},
	}
	if original := spdxVersionOf(data, format); original != "" {
		// tools-golang reports the version it converted to; the document's
		// own version is the one to show.
		doc.SpecVersion = original
	}
	if in.CreationInfo != nil {
		doc.Created = col.parseCreated("creationInfo.created", in.CreationInfo.Created)
	}

	described := map[string]bool{}
	for _, r := range in.Relationships {
		if r == nil {
			continue
		}
		switch strings.ToUpper(r.Relationship) {
		case "DESCRIBES":
			if r.RefA.ElementRefID == "DOCUMENT" {
				described[string(r.RefB.ElementRefID)] = true
			}
		case "DESCRIBED_BY":
			if r.RefB.ElementRefID == "DOCUMENT" {
				described[string(r.RefA.ElementRefID)] = true
			}
		}
	}

	seenFiles := map[string]bool{}
	addFile := func(f *spdx.File) {
		if f == nil || seenFiles[string(f.FileSPDXIdentifier)] {
			return
		}
		seenFiles[string(f.FileSPDXIdentifier)] = true
		file := File{Ref: spdxElementRef(f.FileSPDXIdentifier), Name: f.FileName, License: f.LicenseConcluded}
		for _, c := range f.Checksums {
			file.Hashes = append(file.Hashes, normaliseHash(string(c.Algorithm), c.Value))
		}
		doc.Files = append(doc.Files, file)
	}

	for _, p := range in.Packages {
		if p == nil {
			continue
		}
		c := col.spdxPackage(p)
		doc.Components = append(doc.Components, c)
		if described[string(p.PackageSPDXIdentifier)] && doc.Subject == nil {
			subject := c
			doc.Subject = &subject
		}
		for _, f := range p.Files {
			addFile(f)
		}
	}
	for _, f := range in.Files {
		addFile(f)
	}
	return doc, nil
}

// spdxVersionOf finds the spdxVersion the document itself declares.
func spdxVersionOf(data []byte, format Format) string {
	if format == SPDXJSON {
		var probe struct {
			SPDXVersion string `json:"spdxVersion"`
		}
		if json.Unmarshal(data, &probe) == nil {
			return probe.SPDXVersion
		}
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "SPDXVersion:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (col *collector) spdxPackage(p *spdx.Package) Component {
	ref := spdxElementRef(p.PackageSPDXIdentifier)
	c := Component{
		Ref:      ref,
		Location: "package " + ref,
		Name:     strings.TrimSpace(p.PackageName),
		Type:     strings.ToLower(strings.ReplaceAll(p.PrimaryPackagePurpose, "-", "_")),
	}
	if p.PackageSupplier != nil && !noLicense(p.PackageSupplier.Supplier) {
		c.Supplier = p.PackageSupplier.Supplier
	}
	var purls, cpes []string
	for _, ref := range p.PackageExternalReferences {
		if ref == nil {
			continue
		}
		locator := strings.TrimSpace(ref.Locator)
		switch strings.ToLower(ref.RefType) {
		case "purl":
			purls = append(purls, locator)
		case "cpe23type", "cpe22type":
			cpes = append(cpes, locator)
		case "advisory", "fix", "url", "swid":
			if strings.EqualFold(ref.Category, "SECURITY") || strings.EqualFold(ref.Category, "SECURITY-OTHER") {
				c.SecurityRefs = append(c.SecurityRefs, locator)
			}
		}
	}
	if len(purls) > 0 {
		c.PURL = purls[0]
		if len(purls) > 1 {
			col.warn(c.Location, ref, "package has %d purls; the first, %q, identifies it", len(purls), purls[0])
		}
	}
	if len(cpes) > 0 {
		c.CPE = cpes[0]
	}
	col.identify(&c, p.PackageVersion)
	if !noLicense(p.PackageLicenseDeclared) {
		c.Licenses = append(c.Licenses, col.spdxLicense(c, p.PackageLicenseDeclared, "declared"))
	}
	if !noLicense(p.PackageLicenseConcluded) {
		c.Licenses = append(c.Licenses, col.spdxLicense(c, p.PackageLicenseConcluded, "concluded"))
	}
	for _, cs := range p.PackageChecksums {
		c.Hashes = append(c.Hashes, normaliseHash(string(cs.Algorithm), cs.Value))
	}
	if p.ValidUntilDate != "" {
		col.applySupportEnd(&c, p.ValidUntilDate)
		if c.Support.EndOfSupport.IsZero() {
			col.warn(c.Location, ref, "validUntilDate %q is not a date; it is kept as text", p.ValidUntilDate)
		}
	}
	return c
}

func (col *collector) spdxLicense(c Component, written, kind string) License {
	l := expressionLicense(written, kind)
	if !l.Resolved() {
		col.warn(c.Location, c.Ref, "license %s %q is not a valid SPDX expression; it is kept as unresolved text", kind, written)
	}
	return l
}

// spdxElementRef is the text form of an element id with its prefix.
func spdxElementRef(id common.ElementID) string { return "SPDXRef-" + string(id) }
