// Package advisory owns vulnerability advisories: OSV records (single, or
// a JSON array of them), CycloneDX VEX (JSON or XML) and OpenVEX documents,
// parsed from bytes that the gateway received verified through TUF or that
// hospital IT imported. It evaluates OSV ranges exactly as the OSV schema
// defines them; see Affected.Evaluate, and package version for the
// ecosystems whose order is known. It joins ids through aliases and keeps
// the advisories in a Store, which persists them in badger under the key
// prefix "sbom/advisory/".
package advisory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Status is the exposure status of a product or package for one
// vulnerability.
type Status string

// Statuses, named as OpenVEX names them.
const (
	StatusAffected           Status = "affected"
	StatusNotAffected        Status = "not_affected"
	StatusFixed              Status = "fixed"
	StatusUnderInvestigation Status = "under_investigation"
	// StatusUnknown means the question cannot be answered from the data
	// at hand (no SBOM, an unknown version order, a GIT range). It is never
	// read as not affected.
	StatusUnknown Status = "unknown"
)

// Rank orders statuses by urgency for combining findings: affected (5),
// under investigation (4), unknown (3), fixed (2), not affected (1).
func (s Status) Rank() int { return rank(s) }

// Kind is an advisory document format.
type Kind string

// Advisory formats that Parse reads.
const (
	KindOSV          Kind = "osv"
	KindCycloneDXVEX Kind = "cyclonedx-vex"
	KindOpenVEX      Kind = "openvex"
)

// MaxDocumentSize is the largest advisory document Parse reads, 32 MiB,
// which bounds the memory a malformed import can take. A full OSV
// ecosystem export is larger and must be imported in parts.
const MaxDocumentSize = 32 << 20

// Document is one parsed advisory file.
type Document struct {
	Kind Kind `json:"kind"`
	// Records holds the OSV records of an OSV document.
	Records []*OSV `json:"records,omitempty"`
	// VEX holds a VEX document.
	VEX *VEX `json:"vex,omitempty"`
	// Digest is the hex SHA-256 of the bytes parsed.
	Digest string `json:"digest"`
}

// IDs returns the OSV record ids, or the VEX document id.
func (d *Document) IDs() []string {
	if d.VEX != nil {
		return []string{d.VEX.ID}
	}
	var ids []string
	for _, r := range d.Records {
		ids = append(ids, r.ID)
	}
	return ids
}

// Parse reads an advisory document, detecting its format from the
// content: an OSV record or a JSON array of records, a CycloneDX BOM with
// vulnerabilities (JSON or XML), or an OpenVEX document. Warnings describe
// parts that were skipped or read in part; an error means nothing usable
// was found.
func Parse(data []byte) (*Document, []Warning, error) {
	if len(data) > MaxDocumentSize {
		return nil, nil, fmt.Errorf("advisory document is %d bytes, more than the %d-byte limit", len(data), MaxDocumentSize)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(data, []byte{0xEF, 0xBB, 0xBF}))
	var warnings []Warning
	warn := func(location, format string, args ...any) {
		warnings = append(warnings, Warning{Location: location, Message: fmt.Sprintf(format, args...)})
	}
	if len(trimmed) == 0 {
		return nil, nil, errors.New("advisory document is empty")
	}
	doc := &Document{Digest: digest}
	switch trimmed[0] {
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return nil, nil, fmt.Errorf("reading OSV array: %w", err)
		}
		doc.Kind = KindOSV
		for i, raw := range list {
			rec, err := parseOSVRecord(raw, warn)
			if err != nil {
				warn(fmt.Sprintf("[%d]", i), "%v; the record is skipped", err)
				continue
			}
			doc.Records = append(doc.Records, rec)
		}
		if len(doc.Records) == 0 {
			return nil, warnings, errors.New("OSV array contains no valid record; each needs at least an id")
		}
	case '{':
		kind, err := detectJSON(trimmed)
		if err != nil {
			return nil, nil, err
		}
		doc.Kind = kind
		switch kind {
		case KindOSV:
			rec, err := parseOSVRecord(trimmed, warn)
			if err != nil {
				return nil, warnings, err
			}
			doc.Records = []*OSV{rec}
		case KindOpenVEX:
			doc.VEX, err = parseOpenVEX(trimmed, warn)
		case KindCycloneDXVEX:
			doc.VEX, err = parseCycloneDXVEX(trimmed, false, warn)
		}
		if err != nil {
			return nil, warnings, err
		}
	case '<':
		if err := expectCycloneDXXML(trimmed); err != nil {
			return nil, nil, err
		}
		doc.Kind = KindCycloneDXVEX
		var err error
		if doc.VEX, err = parseCycloneDXVEX(trimmed, true, warn); err != nil {
			return nil, warnings, err
		}
	default:
		return nil, nil, errors.New("advisory document is neither JSON nor XML; supported formats are OSV JSON, CycloneDX VEX and OpenVEX")
	}
	if doc.VEX != nil {
		if doc.VEX.ID == "" {
			doc.VEX.ID = "sha256:" + digest
			for i := range doc.VEX.Statements {
				doc.VEX.Statements[i].Document = doc.VEX.ID
			}
		}
		if len(doc.VEX.Statements) == 0 {
			return nil, warnings, errors.New("VEX document has no usable statement")
		}
	}
	return doc, warnings, nil
}

func detectJSON(data []byte) (Kind, error) {
	var probe struct {
		Context   json.RawMessage `json:"@context"`
		BOMFormat string          `json:"bomFormat"`
		ID        json.RawMessage `json:"id"`
		Affected  json.RawMessage `json:"affected"`
		Modified  json.RawMessage `json:"modified"`
		Schema    json.RawMessage `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return "", fmt.Errorf("advisory document starts with '{' but is not valid JSON: %w", err)
	}
	switch {
	case bytes.Contains(probe.Context, []byte("openvex.dev/ns")):
		return KindOpenVEX, nil
	case strings.EqualFold(probe.BOMFormat, "CycloneDX"):
		return KindCycloneDXVEX, nil
	case len(probe.ID) > 0 && (len(probe.Affected) > 0 || len(probe.Modified) > 0 || len(probe.Schema) > 0):
		return KindOSV, nil
	}
	return "", errors.New("JSON is neither an OSV record (id with modified or affected), CycloneDX VEX (bomFormat) nor OpenVEX (@context)")
}

func expectCycloneDXXML(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("advisory document starts with '<' but is not valid XML: %w", err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			if start.Name.Local == "bom" && strings.HasPrefix(start.Name.Space, "http://cyclonedx.org/schema/bom/") {
				return nil
			}
			return fmt.Errorf("XML root element <%s> is not a CycloneDX <bom>", start.Name.Local)
		}
	}
}
