package sbom

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxDocumentSize is the largest SBOM that Parse reads, 64 MiB. Release
// SBOMs are far smaller; the limit bounds the memory one malformed or
// hostile file can take.
const MaxDocumentSize = 64 << 20

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Detect returns the format of an SBOM from its content.
func Detect(data []byte) (Format, error) {
	f, _, err := detect(data)
	return f, err
}

// detect also returns the XML root namespace, which carries the CycloneDX
// version.
func detect(data []byte) (Format, string, error) {
	data = bytes.TrimSpace(bytes.TrimPrefix(data, utf8BOM))
	if len(data) == 0 {
		return "", "", errors.New("SBOM is empty")
	}
	switch data[0] {
	case '{':
		return detectJSON(data)
	case '<':
		return detectXML(data)
	}
	if isTagValue(data) {
		return SPDXTagValue, "", nil
	}
	return "", "", errors.New("SBOM is neither JSON, XML nor SPDX tag-value; supported formats are CycloneDX JSON/XML, SPDX 2.2/2.3 JSON or tag-value and SPDX 3 JSON-LD")
}

func detectJSON(data []byte) (Format, string, error) {
	var probe struct {
		BOMFormat   string          `json:"bomFormat"`
		SPDXVersion string          `json:"spdxVersion"`
		Context     json.RawMessage `json:"@context"`
		Schema      string          `json:"$schema"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return "", "", fmt.Errorf("SBOM starts with '{' but is not valid JSON: %w", err)
	}
	switch {
	case strings.EqualFold(probe.BOMFormat, "CycloneDX"):
		return CycloneDXJSON, "", nil
	case strings.HasPrefix(probe.SPDXVersion, "SPDX-2."):
		return SPDXJSON, "", nil
	case strings.HasPrefix(probe.SPDXVersion, "SPDX-3"):
		return SPDX3JSONLD, "", nil
	case bytes.Contains(probe.Context, []byte("spdx.org/rdf/3")):
		return SPDX3JSONLD, "", nil
	case probe.SPDXVersion != "":
		return "", "", fmt.Errorf("SPDX JSON declares spdxVersion %q; supported versions are SPDX-2.2 and SPDX-2.3 (and SPDX 3 JSON-LD)", probe.SPDXVersion)
	case strings.Contains(probe.Schema, "cyclonedx.org"):
		return "", "", errors.New("JSON names a CycloneDX schema but has no bomFormat \"CycloneDX\"; add the bomFormat field")
	}
	return "", "", errors.New("JSON is neither CycloneDX (bomFormat \"CycloneDX\") nor SPDX (spdxVersion or an SPDX 3 @context)")
}

func detectXML(data []byte) (Format, string, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", fmt.Errorf("SBOM starts with '<' but is not valid XML: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case start.Name.Local == "bom" && strings.HasPrefix(start.Name.Space, cycloneDXNamespacePrefix):
			return CycloneDXXML, start.Name.Space, nil
		case start.Name.Local == "bom":
			return "", "", fmt.Errorf("XML <bom> has namespace %q, not a CycloneDX namespace (%sVERSION)", start.Name.Space, cycloneDXNamespacePrefix)
		case start.Name.Local == "RDF":
			return "", "", errors.New("SPDX RDF/XML is not supported; convert the document to SPDX JSON or tag-value")
		}
		return "", "", fmt.Errorf("XML root element <%s> is not a CycloneDX <bom>", start.Name.Local)
	}
}

// isTagValue reports whether the first meaningful line is an SPDX tag and
// the document declares an SPDXVersion.
func isTagValue(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tag, _, ok := strings.Cut(line, ":")
		if first && (!ok || strings.ContainsAny(tag, " \t")) {
			return false
		}
		first = false
		if tag == "SPDXVersion" {
			return true
		}
	}
	return false
}

// Parse reads an SBOM in any supported format, detected from its content.
// It returns the document and warnings about parts it could read only in
// part, such as a component whose purl is invalid (which is then
// identified by its CPE or name). The error is set when the document as a
// whole cannot be read.
func Parse(data []byte) (doc *Document, warnings []Warning, err error) {
	if len(data) > MaxDocumentSize {
		return nil, nil, fmt.Errorf("SBOM is %d bytes, more than the %d-byte limit", len(data), MaxDocumentSize)
	}
	format, namespace, err := detect(data)
	if err != nil {
		return nil, nil, err
	}
	data = bytes.TrimPrefix(bytes.TrimSpace(data), utf8BOM)
	col := &collector{}
	defer func() {
		// The format libraries are not written for hostile input; a panic in
		// one of them rejects this document instead of the caller.
		if r := recover(); r != nil {
			doc, warnings, err = nil, col.warnings, fmt.Errorf("reading %s: parser failed on malformed input: %v", format, r)
		}
	}()
	switch format {
	case CycloneDXJSON:
		doc, err = parseCycloneDXJSON(data, col)
	case CycloneDXXML:
		doc, err = parseCycloneDXXML(data, namespace, col)
	case SPDXJSON, SPDXTagValue:
		doc, err = parseSPDX2(data, format, col)
	case SPDX3JSONLD:
		doc, err = parseSPDX3(data, col)
	}
	if err != nil {
		return nil, col.warnings, err
	}
	return doc, col.warnings, nil
}

// ParseReader reads at most MaxDocumentSize bytes from r and parses them.
func ParseReader(r io.Reader) (*Document, []Warning, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocumentSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading SBOM: %w", err)
	}
	return Parse(data)
}
