package sbom

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// newestCycloneDX is the newest CycloneDX minor version that
// cyclonedx-go v0.12.0 models. Newer 1.x documents are read with this
// model and lose only the fields it does not know.
const newestCycloneDX = 7

const cycloneDXNamespacePrefix = "http://cyclonedx.org/schema/bom/"

// cycloneDXMinor reads a "1.N" CycloneDX version.
func cycloneDXMinor(v string) (int, error) {
	major, minor, ok := strings.Cut(strings.TrimSpace(v), ".")
	if !ok || major != "1" {
		return 0, fmt.Errorf("CycloneDX specVersion %q is not a 1.x version; only CycloneDX 1.x is supported", v)
	}
	n, err := strconv.Atoi(minor)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("CycloneDX specVersion %q is not of the form 1.N", v)
	}
	return n, nil
}

func parseCycloneDXJSON(data []byte, col *collector) (*Document, error) {
	var probe struct {
		SpecVersion string `json:"specVersion"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("reading CycloneDX JSON: %w", err)
	}
	if probe.SpecVersion == "" {
		return nil, errors.New("CycloneDX JSON has no specVersion; add one such as \"1.6\"")
	}
	minor, err := cycloneDXMinor(probe.SpecVersion)
	if err != nil {
		return nil, err
	}
	if minor < 2 {
		return nil, fmt.Errorf("CycloneDX %s has no JSON format (JSON starts at 1.2); use the XML form", probe.SpecVersion)
	}
	if minor > newestCycloneDX {
		col.warn("", "", "CycloneDX %s is newer than the newest version this reader models (1.%d); fields that 1.%d does not define are ignored",
			probe.SpecVersion, newestCycloneDX, newestCycloneDX)
		data, err = withSpecVersion(data, fmt.Sprintf("1.%d", newestCycloneDX))
		if err != nil {
			return nil, err
		}
	}
	var bom cdx.BOM
	if err := json.Unmarshal(data, &bom); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return nil, fmt.Errorf("reading CycloneDX JSON: %w", err)
		}
		// encoding/json fills every other field before it reports a value
		// of the wrong type, so the rest of the document is still usable.
		col.warn(typeErr.Field, "", "value of the wrong type is ignored: %v", err)
	}
	doc := fromCycloneDX(&bom, col)
	doc.Format = CycloneDXJSON
	doc.SpecVersion = probe.SpecVersion
	return doc, nil
}

// withSpecVersion rewrites the top-level specVersion of a JSON document.
func withSpecVersion(data []byte, version string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("reading CycloneDX JSON: %w", err)
	}
	top["specVersion"] = json.RawMessage(strconv.Quote(version))
	return json.Marshal(top)
}

func parseCycloneDXXML(data []byte, namespace string, col *collector) (*Document, error) {
	specVersion := strings.TrimPrefix(namespace, cycloneDXNamespacePrefix)
	minor, err := cycloneDXMinor(specVersion)
	if err != nil {
		return nil, err
	}
	if minor > newestCycloneDX {
		col.warn("", "", "CycloneDX %s is newer than the newest version this reader models (1.%d); elements that 1.%d does not define are ignored",
			specVersion, newestCycloneDX, newestCycloneDX)
	}
	var bom cdx.BOM
	dec := xml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&bom); err != nil {
		return nil, fmt.Errorf("reading CycloneDX XML: %w", err)
	}
	doc := fromCycloneDX(&bom, col)
	doc.Format = CycloneDXXML
	doc.SpecVersion = specVersion
	return doc, nil
}

func fromCycloneDX(bom *cdx.BOM, col *collector) *Document {
	doc := &Document{SerialNumber: bom.SerialNumber, BOMVersion: bom.Version}
	if md := bom.Metadata; md != nil {
		doc.Created = col.parseCreated("metadata.timestamp", md.Timestamp)
		if md.Component != nil {
			subject := col.cycloneDXComponent(md.Component, "metadata.component")
			doc.Subject = &subject
			doc.Name = subject.Name
			if md.Component.Components != nil {
				col.walkCycloneDX(*md.Component.Components, "metadata.component.components", &doc.Components)
			}
		}
	}
	if bom.Components != nil {
		col.walkCycloneDX(*bom.Components, "components", &doc.Components)
	}
	if doc.Components == nil {
		doc.Components = []Component{}
	}
	return doc
}

func (col *collector) walkCycloneDX(list []cdx.Component, path string, out *[]Component) {
	for i := range list {
		loc := fmt.Sprintf("%s[%d]", path, i)
		*out = append(*out, col.cycloneDXComponent(&list[i], loc))
		if list[i].Components != nil {
			col.walkCycloneDX(*list[i].Components, loc+".components", out)
		}
	}
}

func (col *collector) cycloneDXComponent(in *cdx.Component, loc string) Component {
	c := Component{
		Ref:      in.BOMRef,
		Location: loc,
		Type:     strings.ToLower(string(in.Type)),
		Name:     strings.TrimSpace(in.Name),
		Group:    strings.TrimSpace(in.Group),
		PURL:     strings.TrimSpace(in.PackageURL),
		CPE:      strings.TrimSpace(in.CPE),
		Excluded: in.Scope == cdx.ScopeExcluded,
	}
	switch {
	case in.Supplier != nil && in.Supplier.Name != "":
		c.Supplier = in.Supplier.Name
	case in.Manufacturer != nil && in.Manufacturer.Name != "":
		c.Supplier = in.Manufacturer.Name
	case in.Publisher != "":
		c.Supplier = in.Publisher
	case in.Author != "":
		c.Supplier = in.Author
	}
	if c.Name == "" {
		col.warn(loc, c.Ref, "component has no name")
	}
	col.identify(&c, in.Version)
	if in.Licenses != nil {
		for _, choice := range *in.Licenses {
			kind := ""
			if choice.Acknowledgement != nil {
				kind = string(*choice.Acknowledgement)
			}
			switch {
			case choice.Expression != "":
				l := expressionLicense(choice.Expression, kind)
				if !l.Resolved() {
					col.warn(loc, c.Ref, "license expression %q is not a valid SPDX expression; it is kept as unresolved text", choice.Expression)
				}
				c.Licenses = append(c.Licenses, l)
			case choice.License != nil:
				if choice.License.Acknowledgement != "" {
					kind = string(choice.License.Acknowledgement)
				}
				switch {
				case choice.License.ID != "":
					l := idLicense(choice.License.ID, kind)
					if !l.Resolved() {
						col.warn(loc, c.Ref, "license id %q is not an SPDX license id; it is kept as unresolved text", choice.License.ID)
					}
					c.Licenses = append(c.Licenses, l)
				case choice.License.Name != "":
					c.Licenses = append(c.Licenses, nameLicense(choice.License.Name, kind))
				}
			}
		}
	}
	if in.Hashes != nil {
		for _, h := range *in.Hashes {
			c.Hashes = append(c.Hashes, normaliseHash(string(h.Algorithm), h.Value))
		}
	}
	if in.Properties != nil {
		for _, p := range *in.Properties {
			switch supportProperty(p.Name) {
			case "end":
				col.applySupportEnd(&c, p.Value)
			case "level":
				col.applySupportLevel(&c, p.Value)
			}
		}
	}
	return c
}
