package advisory

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/wardgate/wardgate/cache/sbom"
)

// VEX is one VEX document: a manufacturer's statements about whether its
// products are affected by vulnerabilities.
type VEX struct {
	Kind Kind `json:"kind"`
	// ID is the OpenVEX @id or the CycloneDX serialNumber; Parse derives
	// one from the content hash when the document has none.
	ID        string    `json:"id"`
	Author    string    `json:"author,omitempty"`
	Timestamp time.Time `json:"timestamp,omitzero"`
	// Version is the document version (OpenVEX version, CycloneDX BOM
	// version).
	Version    int         `json:"version,omitempty"`
	Statements []Statement `json:"statements"`
}

// Statement is one VEX statement: the status of one vulnerability in some
// products.
type Statement struct {
	// Vulnerability is the id the statement names ("CVE-2021-44228").
	Vulnerability string    `json:"vulnerability"`
	Aliases       []string  `json:"aliases,omitempty"`
	Products      []Product `json:"products"`
	// Status is affected, not affected, fixed or under investigation.
	Status Status `json:"status"`
	// Justification is the machine-readable reason for not affected, in the
	// vocabulary of the document's format (OpenVEX
	// "vulnerable_code_not_present", CycloneDX "code_not_present").
	Justification string `json:"justification,omitempty"`
	// Detail is the human-readable impact statement or analysis detail.
	Detail string `json:"detail,omitempty"`
	// Action is the action statement or the CycloneDX responses.
	Action string `json:"action,omitempty"`
	// Timestamp is when the statement was made or last updated; when the
	// statement has no time of its own, the document's.
	Timestamp time.Time `json:"timestamp,omitzero"`
	// Document is the id of the VEX document that made the statement.
	Document string `json:"document"`
	// Index is the statement's position in its document, which breaks ties
	// between statements with equal timestamps (the later one wins).
	Index int `json:"index"`
	// Release, when set, limits the statement to one release (its TUF
	// target path): a VEX published for a release applies to it alone.
	Release string `json:"release,omitempty"`
	// Sequence is the order in which the store received the document; it
	// breaks ties between documents with equal timestamps.
	Sequence uint64 `json:"sequence,omitempty"`
}

// Product is the subject of a statement: a whole product (a release) or a
// package, named by any of these identifiers.
type Product struct {
	// Ref is the OpenVEX @id or the CycloneDX affects ref as written.
	Ref  string `json:"ref,omitempty"`
	PURL string `json:"purl,omitempty"`
	CPE  string `json:"cpe,omitempty"`
	// Name and Version identify a product that has no purl or CPE (a
	// CycloneDX metadata component such as "ABC" "4.2").
	Name    string      `json:"name,omitempty"`
	Version string      `json:"version,omitempty"`
	Hashes  []sbom.Hash `json:"hashes,omitempty"`
	// Serial and BOMRef come from a CycloneDX BOM-Link
	// ("urn:cdx:SERIAL/VERSION#REF") that points into an SBOM.
	Serial string `json:"serial,omitempty"`
	BOMRef string `json:"bom_ref,omitempty"`
	// Subcomponents narrow the statement to these packages inside the
	// product.
	Subcomponents []Product `json:"subcomponents,omitempty"`
	// Versions narrow a CycloneDX statement to versions of the product,
	// each with its own status.
	Versions []VersionRule `json:"versions,omitempty"`
}

// VersionRule is a CycloneDX affects version entry: an exact version or a
// vers range ("vers:maven/>=2.0|<2.15.0"), and its status.
type VersionRule struct {
	Version string `json:"version,omitempty"`
	Range   string `json:"range,omitempty"`
	// Status is affected, not affected or unknown.
	Status Status `json:"status"`
}

// parseVEXTime reads the RFC 3339 times that VEX documents use; an empty or
// invalid value is zero.
func parseVEXTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

// openVEXJSON is the wire form of OpenVEX 0.0.x and 0.2.x.
type openVEXJSON struct {
	Context     string          `json:"@context"`
	ID          string          `json:"@id"`
	Author      string          `json:"author"`
	Timestamp   string          `json:"timestamp"`
	LastUpdated string          `json:"last_updated"`
	Version     json.RawMessage `json:"version"`
	Statements  []struct {
		Vulnerability   json.RawMessage `json:"vulnerability"`
		Products        json.RawMessage `json:"products"`
		Subcomponents   json.RawMessage `json:"subcomponents"`
		Status          string          `json:"status"`
		Justification   string          `json:"justification"`
		ImpactStatement string          `json:"impact_statement"`
		ActionStatement string          `json:"action_statement"`
		StatusNotes     string          `json:"status_notes"`
		Timestamp       string          `json:"timestamp"`
		LastUpdated     string          `json:"last_updated"`
	} `json:"statements"`
}

type openVEXProduct struct {
	ID          string            `json:"@id"`
	Identifiers map[string]string `json:"identifiers"`
	Hashes      map[string]string `json:"hashes"`
	Subs        json.RawMessage   `json:"subcomponents"`
}

func parseOpenVEX(data []byte, warn func(location, format string, args ...any)) (*VEX, error) {
	var in openVEXJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("reading OpenVEX: %w", err)
	}
	doc := &VEX{Kind: KindOpenVEX, ID: in.ID, Author: in.Author}
	doc.Timestamp = parseVEXTime(in.LastUpdated)
	if doc.Timestamp.IsZero() {
		doc.Timestamp = parseVEXTime(in.Timestamp)
	}
	if in.Timestamp != "" && parseVEXTime(in.Timestamp).IsZero() {
		warn("timestamp", "%q is not an RFC 3339 time; it is ignored", in.Timestamp)
	}
	var n json.Number
	if json.Unmarshal(in.Version, &n) == nil {
		if v, err := n.Int64(); err == nil {
			doc.Version = int(v)
		}
	}
	if len(in.Statements) == 0 {
		return nil, errors.New("OpenVEX document has no statements")
	}
	for i, s := range in.Statements {
		loc := fmt.Sprintf("statements[%d]", i)
		st := Statement{Document: doc.ID, Index: i, Justification: s.Justification, Detail: s.ImpactStatement, Action: s.ActionStatement}
		if st.Detail == "" {
			st.Detail = s.StatusNotes
		}
		st.Vulnerability, st.Aliases = openVEXVulnerability(s.Vulnerability)
		if st.Vulnerability == "" {
			warn(loc, "statement names no vulnerability; it is skipped")
			continue
		}
		status, ok := openVEXStatus(s.Status)
		if !ok {
			warn(loc, "status %q is not an OpenVEX status (not_affected, affected, fixed, under_investigation); the statement is skipped", s.Status)
			continue
		}
		st.Status = status
		if status == StatusNotAffected && st.Justification == "" && st.Detail == "" {
			warn(loc, "not_affected statement has neither justification nor impact_statement, which OpenVEX requires")
		}
		st.Timestamp = parseVEXTime(s.LastUpdated)
		if st.Timestamp.IsZero() {
			st.Timestamp = parseVEXTime(s.Timestamp)
		}
		if st.Timestamp.IsZero() {
			st.Timestamp = doc.Timestamp
		}
		st.Products = openVEXProducts(s.Products)
		if subs := openVEXProducts(s.Subcomponents); len(subs) > 0 {
			// OpenVEX 0.0.x lists subcomponents beside the products.
			for j := range st.Products {
				st.Products[j].Subcomponents = append(st.Products[j].Subcomponents, subs...)
			}
		}
		if len(st.Products) == 0 {
			warn(loc, "statement names no products; it is skipped")
			continue
		}
		doc.Statements = append(doc.Statements, st)
	}
	return doc, nil
}

func openVEXVulnerability(raw json.RawMessage) (string, []string) {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return strings.TrimSpace(name), nil
	}
	var v struct {
		ID      string   `json:"@id"`
		Name    string   `json:"name"`
		Aliases []string `json:"aliases"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return "", nil
	}
	id := strings.TrimSpace(v.Name)
	aliases := cleanIDs(v.Aliases)
	if id == "" {
		id = strings.TrimSpace(v.ID)
	}
	return id, aliases
}

func openVEXStatus(s string) (Status, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "not_affected":
		return StatusNotAffected, true
	case "affected":
		return StatusAffected, true
	case "fixed":
		return StatusFixed, true
	case "under_investigation":
		return StatusUnderInvestigation, true
	}
	return "", false
}

// openVEXProducts reads a products or subcomponents list, whose entries
// are strings (0.0.x) or objects with @id, identifiers and hashes (0.2.x).
func openVEXProducts(raw json.RawMessage) []Product {
	if len(raw) == 0 {
		return nil
	}
	var entries []json.RawMessage
	if json.Unmarshal(raw, &entries) != nil {
		return nil
	}
	var out []Product
	for _, e := range entries {
		var s string
		if json.Unmarshal(e, &s) == nil {
			out = append(out, productFromID(s))
			continue
		}
		var p openVEXProduct
		if json.Unmarshal(e, &p) != nil {
			continue
		}
		prod := productFromID(p.ID)
		if v := p.Identifiers["purl"]; v != "" {
			prod.PURL = v
		}
		if v := p.Identifiers["cpe23"]; v != "" {
			prod.CPE = v
		} else if v := p.Identifiers["cpe22"]; v != "" {
			prod.CPE = v
		}
		for alg, value := range p.Hashes {
			prod.Hashes = append(prod.Hashes, sbom.Hash{Algorithm: strings.ToUpper(alg), Value: strings.ToLower(value)})
		}
		prod.Subcomponents = openVEXProducts(p.Subs)
		if prod.Ref != "" || prod.PURL != "" || prod.CPE != "" || len(prod.Hashes) > 0 {
			out = append(out, prod)
		}
	}
	return out
}

// productFromID reads an identifier that may be a purl, a CPE or another
// IRI.
func productFromID(id string) Product {
	id = strings.TrimSpace(id)
	p := Product{Ref: id}
	lower := strings.ToLower(id)
	switch {
	case strings.HasPrefix(lower, "pkg:"):
		p.PURL = id
	case strings.HasPrefix(lower, "cpe:"):
		p.CPE = id
	case strings.HasPrefix(lower, "urn:cdx:"):
		p.Serial, p.BOMRef = parseBOMLink(id)
	}
	return p
}

// parseBOMLink splits a CycloneDX BOM-Link "urn:cdx:SERIAL/VERSION#REF"
// into the BOM's serial number ("urn:uuid:SERIAL") and the bom-ref.
func parseBOMLink(link string) (serial, ref string) {
	rest := link[len("urn:cdx:"):]
	rest, ref, _ = strings.Cut(rest, "#")
	uuid, _, _ := strings.Cut(rest, "/")
	return "urn:uuid:" + uuid, ref
}

func parseCycloneDXVEX(data []byte, isXML bool, warn func(location, format string, args ...any)) (*VEX, error) {
	var bom cdx.BOM
	var err error
	if isXML {
		err = xml.NewDecoder(bytes.NewReader(data)).Decode(&bom)
	} else {
		err = json.Unmarshal(data, &bom)
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			warn(typeErr.Field, "value of the wrong type is ignored: %v", err)
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading CycloneDX VEX: %w", err)
	}
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) == 0 {
		return nil, errors.New("CycloneDX document has no vulnerabilities, so it is an SBOM, not a VEX; add it as an SBOM instead")
	}
	doc := &VEX{Kind: KindCycloneDXVEX, ID: bom.SerialNumber, Version: bom.Version}
	refs := map[string]Product{}
	addRef := func(c *cdx.Component) {
		if c.BOMRef == "" {
			return
		}
		p := Product{Ref: c.BOMRef, PURL: c.PackageURL, CPE: c.CPE, Name: c.Name, Version: c.Version}
		if c.Hashes != nil {
			for _, h := range *c.Hashes {
				p.Hashes = append(p.Hashes, sbom.Hash{Algorithm: strings.ToUpper(string(h.Algorithm)), Value: strings.ToLower(h.Value)})
			}
		}
		refs[c.BOMRef] = p
	}
	var walk func(list *[]cdx.Component)
	walk = func(list *[]cdx.Component) {
		if list == nil {
			return
		}
		for i := range *list {
			addRef(&(*list)[i])
			walk((*list)[i].Components)
		}
	}
	if bom.Metadata != nil {
		doc.Timestamp = parseVEXTime(bom.Metadata.Timestamp)
		if bom.Metadata.Component != nil {
			addRef(bom.Metadata.Component)
			walk(bom.Metadata.Component.Components)
		}
	}
	walk(bom.Components)

	for i, v := range *bom.Vulnerabilities {
		loc := fmt.Sprintf("vulnerabilities[%d]", i)
		st := Statement{Document: doc.ID, Index: i, Vulnerability: strings.TrimSpace(v.ID), Detail: v.Detail}
		if st.Vulnerability == "" {
			warn(loc, "vulnerability has no id; it is skipped")
			continue
		}
		if v.References != nil {
			for _, r := range *v.References {
				if id := strings.TrimSpace(r.ID); id != "" && id != st.Vulnerability {
					st.Aliases = append(st.Aliases, id)
				}
			}
		}
		st.Status = StatusAffected
		if a := v.Analysis; a != nil {
			status, ok := cycloneDXState(a.State)
			if !ok {
				warn(loc, "analysis state %q is not a CycloneDX impact analysis state; the statement is skipped", a.State)
				continue
			}
			st.Status = status
			st.Justification = string(a.Justification)
			if a.State == cdx.IASFalsePositive && st.Justification == "" {
				st.Justification = "false_positive"
			}
			if a.Detail != "" {
				st.Detail = a.Detail
			}
			if a.Response != nil {
				var rs []string
				for _, r := range *a.Response {
					rs = append(rs, string(r))
				}
				st.Action = strings.Join(rs, ", ")
			}
			st.Timestamp = firstTime(a.LastUpdated, v.Updated, a.FirstIssued, v.Published)
		} else {
			st.Timestamp = firstTime(v.Updated, v.Published)
		}
		if st.Timestamp.IsZero() {
			st.Timestamp = doc.Timestamp
		}
		if v.Affects == nil || len(*v.Affects) == 0 {
			warn(loc, "vulnerability affects nothing; it is skipped")
			continue
		}
		for j, a := range *v.Affects {
			p, ok := refs[a.Ref]
			if !ok {
				p = productFromID(a.Ref)
				if p.Serial == "" && p.PURL == "" && p.CPE == "" {
					warn(fmt.Sprintf("%s.affects[%d]", loc, j), "ref %q is not a bom-ref of this document; it can only match a component with that bom-ref in the release the VEX is imported for", a.Ref)
				}
			}
			if a.Range != nil {
				for _, r := range *a.Range {
					rule := VersionRule{Version: r.Version, Range: r.Range, Status: StatusUnknown}
					switch r.Status {
					case cdx.VulnerabilityStatusAffected:
						rule.Status = StatusAffected
					case cdx.VulnerabilityStatusNotAffected:
						rule.Status = StatusNotAffected
					}
					p.Versions = append(p.Versions, rule)
				}
			}
			st.Products = append(st.Products, p)
		}
		doc.Statements = append(doc.Statements, st)
	}
	return doc, nil
}

func cycloneDXState(s cdx.ImpactAnalysisState) (Status, bool) {
	switch s {
	case cdx.IASResolved, cdx.IASResolvedWithPedigree:
		return StatusFixed, true
	case cdx.IASExploitable:
		return StatusAffected, true
	case cdx.IASInTriage:
		return StatusUnderInvestigation, true
	case cdx.IASFalsePositive, cdx.IASNotAffected:
		return StatusNotAffected, true
	case "":
		return StatusAffected, true
	}
	return "", false
}

func firstTime(values ...string) time.Time {
	for _, v := range values {
		if t := parseVEXTime(v); !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// IDs returns the statement's vulnerability id followed by its aliases.
func (s Statement) IDs() []string {
	return append([]string{s.Vulnerability}, s.Aliases...)
}

// Later reports whether s supersedes other. The later timestamp wins. At
// equal timestamps the statement from the document added to the store
// later wins, then the later statement in the same document.
func (s Statement) Later(other Statement) bool {
	if !s.Timestamp.Equal(other.Timestamp) {
		return s.Timestamp.After(other.Timestamp)
	}
	if s.Sequence != other.Sequence {
		return s.Sequence > other.Sequence
	}
	return s.Index > other.Index
}
