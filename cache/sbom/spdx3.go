package sbom

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SPDX 3.0 JSON-LD is read from its compacted form (the "@graph" array
// that the SPDX 3.0 context produces): software_Package elements become
// components, software_File elements files, and hasDeclaredLicense and
// hasConcludedLicense relationships their licenses. Profiles beyond
// Software and SimpleLicensing (build, AI, dataset, security) are ignored.

type spdx3Element = map[string]any

func parseSPDX3(data []byte, col *collector) (*Document, error) {
	var top map[string]any
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("reading SPDX 3 JSON-LD: %w", err)
	}
	graph, ok := top["@graph"].([]any)
	if !ok {
		return nil, errors.New("SPDX 3 JSON-LD has no @graph array; only the compacted serialisation with an @graph is read")
	}
	byID := map[string]spdx3Element{}
	var elements []spdx3Element
	for _, raw := range graph {
		el, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		elements = append(elements, el)
		if id := spdx3ID(el); id != "" {
			byID[id] = el
		}
	}
	doc := &Document{Format: SPDX3JSONLD, Components: []Component{}}
	licenses := map[string][]License{}
	var roots []string
	for _, el := range elements {
		switch spdx3Type(el) {
		case "CreationInfo":
			if doc.SpecVersion == "" {
				doc.SpecVersion = spdx3String(el, "specVersion")
				doc.Created = col.parseCreated("CreationInfo", spdx3String(el, "created"))
			}
		case "SpdxDocument":
			doc.SerialNumber = spdx3ID(el)
			doc.Name = spdx3String(el, "name")
			roots = append(roots, spdx3Refs(el["rootElement"])...)
			if ci, ok := el["creationInfo"].(map[string]any); ok && doc.SpecVersion == "" {
				doc.SpecVersion = spdx3String(ci, "specVersion")
				doc.Created = col.parseCreated("SpdxDocument.creationInfo", spdx3String(ci, "created"))
			}
		case "Relationship":
			kind := spdx3Enum(spdx3String(el, "relationshipType"))
			if kind != "hasDeclaredLicense" && kind != "hasConcludedLicense" {
				continue
			}
			from := firstRef(el["from"])
			licenseKind := "concluded"
			if kind == "hasDeclaredLicense" {
				licenseKind = "declared"
			}
			for _, to := range spdx3Refs(el["to"]) {
				licenses[from] = append(licenses[from], spdx3License(byID[to], to, licenseKind))
			}
		}
	}
	if !strings.HasPrefix(doc.SpecVersion, "3.") {
		return nil, fmt.Errorf("SPDX JSON-LD declares specVersion %q; only SPDX 3.x JSON-LD is read", doc.SpecVersion)
	}

	// The subject is the first package reached from the document's root
	// elements, directly or through an Sbom element's own roots.
	subjectID := ""
	for depth := 0; depth < 3 && subjectID == "" && len(roots) > 0; depth++ {
		var next []string
		for _, r := range roots {
			el := byID[r]
			if spdx3Type(el) == "software_Package" {
				subjectID = r
				break
			}
			next = append(next, spdx3Refs(el["rootElement"])...)
		}
		roots = next
	}

	for i, el := range elements {
		switch spdx3Type(el) {
		case "software_Package":
			c := col.spdx3Package(el, i, byID)
			c.Licenses = append(c.Licenses, licenses[spdx3ID(el)]...)
			for _, l := range licenses[spdx3ID(el)] {
				if !l.Resolved() {
					col.warn(c.Location, c.Ref, "license %q is not a valid SPDX expression; it is kept as unresolved text", l.Written)
				}
			}
			doc.Components = append(doc.Components, c)
			if spdx3ID(el) == subjectID && doc.Subject == nil {
				subject := c
				doc.Subject = &subject
			}
		case "software_File":
			f := File{Ref: spdx3ID(el), Name: spdx3String(el, "name")}
			f.Hashes = spdx3Hashes(el)
			for _, l := range licenses[spdx3ID(el)] {
				if l.Kind == "concluded" {
					f.License = l.Written
				}
			}
			doc.Files = append(doc.Files, f)
		}
	}
	return doc, nil
}

func (col *collector) spdx3Package(el spdx3Element, index int, byID map[string]spdx3Element) Component {
	c := Component{
		Ref:      spdx3ID(el),
		Location: fmt.Sprintf("@graph[%d]", index),
		Name:     spdx3String(el, "name"),
		Type:     strings.ToLower(spdx3Enum(spdx3String(el, "software_primaryPurpose"))),
		PURL:     spdx3String(el, "software_packageUrl"),
	}
	if supplier := firstRef(el["suppliedBy"]); supplier != "" {
		if org, ok := byID[supplier]; ok {
			c.Supplier = spdx3String(org, "name")
		} else {
			c.Supplier = supplier
		}
	}
	if ids, ok := el["externalIdentifier"].([]any); ok {
		for _, raw := range ids {
			ext, ok := raw.(map[string]any)
			if !ok {
				continue
			}
			value := spdx3String(ext, "identifier")
			switch spdx3Enum(spdx3String(ext, "externalIdentifierType")) {
			case "packageUrl":
				if c.PURL == "" {
					c.PURL = value
				}
			case "cpe23", "cpe22":
				if c.CPE == "" {
					c.CPE = value
				}
			case "securityOther":
				c.SecurityRefs = append(c.SecurityRefs, value)
			}
		}
	}
	col.identify(&c, spdx3String(el, "software_packageVersion"))
	c.Hashes = spdx3Hashes(el)
	for _, level := range spdx3Strings(el["supportLevel"]) {
		level = spdx3Enum(level)
		c.Support.Level = level
		if level == "endOfSupport" || level == "noSupport" {
			c.Support.Ended = true
		}
	}
	if until := spdx3String(el, "validUntilTime"); until != "" {
		if t, ok := parseSupportTime(until); ok {
			c.Support.EndOfSupport = t
			c.Support.Text = until
		} else {
			col.warn(c.Location, c.Ref, "validUntilTime %q is not a time; it is ignored", until)
		}
	}
	return c
}

func spdx3License(el spdx3Element, ref, kind string) License {
	switch spdx3Type(el) {
	case "simplelicensing_LicenseExpression":
		return expressionLicense(spdx3String(el, "simplelicensing_licenseExpression"), kind)
	case "expandedlicensing_ListedLicense":
		id := ref
		if i := strings.LastIndexByte(id, '/'); i >= 0 {
			id = id[i+1:]
		}
		return idLicense(id, kind)
	case "expandedlicensing_CustomLicense":
		return License{Written: spdx3String(el, "name"), Kind: kind}
	}
	// A reference to the SPDX license list by IRI, with no element of its own.
	if id, ok := strings.CutPrefix(ref, "https://spdx.org/licenses/"); ok {
		return idLicense(id, kind)
	}
	return License{Written: ref, Kind: kind}
}

func spdx3Hashes(el spdx3Element) []Hash {
	var out []Hash
	list, _ := el["verifiedUsing"].([]any)
	for _, raw := range list {
		h, ok := raw.(map[string]any)
		if !ok || spdx3Type(h) != "Hash" {
			continue
		}
		out = append(out, normaliseHash(spdx3Enum(spdx3String(h, "algorithm")), spdx3String(h, "hashValue")))
	}
	return out
}

func spdx3Type(el spdx3Element) string {
	if el == nil {
		return ""
	}
	for _, key := range []string{"type", "@type"} {
		if s, ok := el[key].(string); ok {
			return s
		}
	}
	return ""
}

func spdx3ID(el spdx3Element) string {
	for _, key := range []string{"spdxId", "@id"} {
		if s, ok := el[key].(string); ok {
			return s
		}
	}
	return ""
}

func spdx3String(el spdx3Element, key string) string {
	s, _ := el[key].(string)
	return strings.TrimSpace(s)
}

// spdx3Enum strips an IRI down to its last segment, so that full vocabulary
// IRIs and compacted names compare alike.
func spdx3Enum(s string) string {
	if i := strings.LastIndexAny(s, "/#"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func spdx3Strings(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// spdx3Refs reads element references, written as ids or embedded elements.
func spdx3Refs(v any) []string {
	var out []string
	add := func(x any) {
		switch t := x.(type) {
		case string:
			out = append(out, t)
		case map[string]any:
			if id := spdx3ID(t); id != "" {
				out = append(out, id)
			}
		}
	}
	if list, ok := v.([]any); ok {
		for _, x := range list {
			add(x)
		}
	} else {
		add(v)
	}
	return out
}

func firstRef(v any) string {
	if refs := spdx3Refs(v); len(refs) > 0 {
		return refs[0]
	}
	return ""
}
