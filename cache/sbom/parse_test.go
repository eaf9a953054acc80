package sbom

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading testdata: %v", err)
	}
	return b
}

func mustParse(t *testing.T, data []byte) (*Document, []Warning) {
	t.Helper()
	doc, warnings, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return doc, warnings
}

func findComponent(t *testing.T, doc *Document, name string) Component {
	t.Helper()
	for _, c := range doc.Components {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("component %q not found", name)
	return Component{}
}

// The medical-device SBOM is CycloneDX 1.4 JSON with 55 top-level
// components (51 library, 3 firmware, 1 device), each with a purl and a
// CPE; 51 purls carry a version. 41 license names are exact SPDX ids (MIT 19,
// Apache-2.0 16, BSD-3-Clause 4, MPL-2.0 1, MS-PL 1) and 14 are free text.
func TestParseMedicalDeviceCycloneDX(t *testing.T) {
	doc, warnings := mustParse(t, readTestdata(t, "medical-device.cdx.json"))
	if len(warnings) != 0 {
		t.Errorf("got warnings %v, want none", warnings)
	}
	if doc.Format != CycloneDXJSON || doc.SpecVersion != "1.4" {
		t.Errorf("got format %s %s, want CycloneDX JSON 1.4", doc.Format, doc.SpecVersion)
	}
	if doc.SerialNumber != "urn:uuid:02826796-d30c-4aa6-b0a8-44207a01cb6c" {
		t.Errorf("got serial %q", doc.SerialNumber)
	}
	if want := time.Date(2025, 7, 23, 20, 52, 41, 344402000, time.UTC); !doc.Created.Equal(want) {
		t.Errorf("got created %v, want %v", doc.Created, want)
	}
	if doc.Subject == nil || doc.Subject.Type != "device" || doc.Subject.Name != "REDACTED" {
		t.Errorf("got subject %+v, want the REDACTED device", doc.Subject)
	}
	if got := len(doc.Components); got != 55 {
		t.Fatalf("got %d components, want 55", got)
	}
	types := map[string]int{}
	resolved, unresolved, fromPURL := 0, 0, 0
	for _, c := range doc.Components {
		types[c.Type]++
		if c.Identity.Source == FromPURL {
			fromPURL++
		}
		if c.CPE == "" {
			t.Errorf("%s has no CPE", c.Location)
		}
		for _, l := range c.Licenses {
			if l.Resolved() {
				resolved++
			} else {
				unresolved++
			}
		}
	}
	if types["library"] != 51 || types["firmware"] != 3 || types["device"] != 1 {
		t.Errorf("got types %v, want 51 library, 3 firmware, 1 device", types)
	}
	if fromPURL != 55 {
		t.Errorf("got %d components identified by purl, want 55", fromPURL)
	}
	if resolved != 41 || unresolved != 14 {
		t.Errorf("got %d resolved and %d unresolved licenses, want 41 and 14", resolved, unresolved)
	}

	wolf := findComponent(t, doc, "WolfSSL")
	// The purl pkg:github/wolfssl/wolfssl has no version; the component's
	// version field supplies it.
	if wolf.Identity.Type != "github" || wolf.Identity.Namespace != "wolfssl" || wolf.Version != "4.8.1" {
		t.Errorf("got WolfSSL identity %+v version %q", wolf.Identity, wolf.Version)
	}
	if len(wolf.Licenses) != 1 || wolf.Licenses[0].Written != "GPLv3/Commercial" || wolf.Licenses[0].Resolved() {
		t.Errorf("got WolfSSL licenses %+v, want one unresolved GPLv3/Commercial", wolf.Licenses)
	}

	aspose := findComponent(t, doc, "Aspose.Words")
	if aspose.Package != (PackageKey{Ecosystem: "NuGet", Name: "aspose.words"}) || aspose.Version != "20.1.0" {
		t.Errorf("got Aspose.Words package %v version %q", aspose.Package, aspose.Version)
	}
	if l := aspose.Licenses[0]; l.Expression != "MPL-2.0" || !l.FromName {
		t.Errorf("got Aspose.Words license %+v, want MPL-2.0 resolved from its name", l)
	}

	fv := findComponent(t, doc, "FluentValidationNA")
	if !fv.Support.Ended || fv.Support.Text != "No longer supported" || fv.Support.Level != "Deprecated" {
		t.Errorf("got FluentValidationNA support %+v, want ended, deprecated", fv.Support)
	}
	ended := 0
	for _, c := range doc.Components {
		if c.Support.PastEnd(time.Now()) {
			ended++
		}
	}
	if ended != 1 {
		t.Errorf("got %d components past end of support, want 1 (FluentValidationNA)", ended)
	}
}

// The webapp SBOM is CycloneDX 1.2 XML whose version is given only by its
// namespace: 43 npm components (33 MIT, 8 ISC, 1 Apache-2.0, 1 BSD-2-Clause)
// and the application itself as metadata.component.
func TestParseWebappCycloneDXXML(t *testing.T) {
	doc, warnings := mustParse(t, readTestdata(t, "webapp-1.2.cdx.xml"))
	if len(warnings) != 0 {
		t.Errorf("got warnings %v, want none", warnings)
	}
	if doc.Format != CycloneDXXML || doc.SpecVersion != "1.2" {
		t.Errorf("got %s %s, want CycloneDX XML 1.2", doc.Format, doc.SpecVersion)
	}
	if doc.Subject == nil || doc.Subject.PURL != "pkg:npm/lhc-vdm-editor@0.0.1" {
		t.Errorf("got subject %+v", doc.Subject)
	}
	if got := len(doc.Components); got != 43 {
		t.Fatalf("got %d components, want 43", got)
	}
	licenses := map[string]int{}
	for _, c := range doc.Components {
		if c.Identity.Ecosystem != "npm" {
			t.Errorf("%s: got ecosystem %q, want npm", c.Location, c.Identity.Ecosystem)
		}
		for _, l := range c.Licenses {
			licenses[l.Expression]++
		}
	}
	want := map[string]int{"MIT": 33, "ISC": 8, "Apache-2.0": 1, "BSD-2-Clause": 1}
	for id, n := range want {
		if licenses[id] != n {
			t.Errorf("got %d %s licenses, want %d", licenses[id], id, n)
		}
	}
	debug := 0
	for _, c := range doc.Components {
		if c.Package == (PackageKey{Ecosystem: "npm", Name: "debug"}) {
			debug++
		}
	}
	if debug != 3 {
		t.Errorf("got %d versions of npm debug, want 3 (4.1.1, 2.6.9, 3.2.6)", debug)
	}
	if c := doc.Components[0]; c.Name != "puppeteer" || c.Version != "1.19.0" || len(c.Hashes) != 1 || c.Hashes[0].Algorithm != "SHA-512" {
		t.Errorf("got first component %+v", c)
	}
}

// The Zephyr SBOM is SPDX 2.2 tag-value with one package (no purl, no
// CPE) and 125 files, 116 of them concluded Apache-2.0 and 9 NOASSERTION.
func TestParseZephyrSPDXTagValue(t *testing.T) {
	doc, _ := mustParse(t, readTestdata(t, "zephyr-firmware.spdx"))
	if doc.Format != SPDXTagValue || doc.SpecVersion != "SPDX-2.2" {
		t.Errorf("got %s %s, want SPDX tag-value SPDX-2.2", doc.Format, doc.SpecVersion)
	}
	if len(doc.Components) != 1 {
		t.Fatalf("got %d packages, want 1", len(doc.Components))
	}
	c := doc.Components[0]
	if c.Name != "zephyr-sources" || c.Identity.Source != FromName || c.Ref != "SPDXRef-zephyr-sources" {
		t.Errorf("got package %+v", c)
	}
	if len(c.Licenses) != 1 || c.Licenses[0].Expression != "Apache-2.0" || c.Licenses[0].Kind != "concluded" {
		t.Errorf("got licenses %+v, want concluded Apache-2.0 (declared is NOASSERTION)", c.Licenses)
	}
	if doc.Subject == nil || doc.Subject.Ref != "SPDXRef-zephyr-sources" {
		t.Errorf("got subject %+v, want the described zephyr-sources", doc.Subject)
	}
	if len(doc.Files) != 125 {
		t.Fatalf("got %d files, want 125", len(doc.Files))
	}
	apache, noAssertion := 0, 0
	for _, f := range doc.Files {
		switch f.License {
		case "Apache-2.0":
			apache++
		case "NOASSERTION":
			noAssertion++
		}
		if len(f.Hashes) != 2 {
			t.Errorf("file %s has %d checksums, want SHA1 and SHA256", f.Name, len(f.Hashes))
		}
	}
	if apache != 116 || noAssertion != 9 {
		t.Errorf("got %d Apache-2.0 and %d NOASSERTION files, want 116 and 9", apache, noAssertion)
	}
	first := doc.Files[0]
	if first.Name != "./modules/hal/stm32/stm32cube/stm32g4xx/drivers/src/stm32g4xx_hal.c" ||
		first.Hashes[1] != (Hash{Algorithm: "SHA256", Value: "a20c5a59f7a19a2ed50e3d2e57beeb6b7199373c6f664ea739413397995fb5ff"}) {
		t.Errorf("got first file %+v", first)
	}
}

// The SPDX 2.3 JSON example has two packages: tools-java (described, purl
// pkg:github/spdx/tools-java@<commit>) and xlsx (Maven purl and an NVD
// advisory reference).
func TestParseSecurityRefsSPDXJSON(t *testing.T) {
	doc, _ := mustParse(t, readTestdata(t, "security-refs-2.3.spdx.json"))
	if doc.Format != SPDXJSON || doc.SpecVersion != "SPDX-2.3" {
		t.Errorf("got %s %s", doc.Format, doc.SpecVersion)
	}
	if len(doc.Components) != 2 {
		t.Fatalf("got %d packages, want 2", len(doc.Components))
	}
	if doc.Subject == nil || doc.Subject.Name != "tools-java" {
		t.Errorf("got subject %+v, want tools-java", doc.Subject)
	}
	xlsx := findComponent(t, doc, "xlsx")
	if xlsx.Package != (PackageKey{Ecosystem: "Maven", Name: "org.webjars.npm:xlsx"}) || xlsx.Version != "0.16.6" {
		t.Errorf("got xlsx %v %q", xlsx.Package, xlsx.Version)
	}
	if len(xlsx.SecurityRefs) != 1 || xlsx.SecurityRefs[0] != "https://nvd.nist.gov/vuln/detail/CVE-2021-32012" {
		t.Errorf("got xlsx security refs %v", xlsx.SecurityRefs)
	}
	if xlsx.Supplier != "Webjar" {
		t.Errorf("got supplier %q, want Webjar", xlsx.Supplier)
	}
	tj := findComponent(t, doc, "tools-java")
	if tj.Package != (PackageKey{Ecosystem: "github", Name: "spdx/tools-java"}) || tj.Version != "2235d5d7f7fe46ce1e0d54b7831c5681633b25cc" {
		t.Errorf("got tools-java %v %q, want the purl's commit as version", tj.Package, tj.Version)
	}
}

const badPURLCycloneDX = `{
  "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 3,
  "metadata": {"component": {"type": "firmware", "name": "pump-fw", "version": "4.2.0", "bom-ref": "fw"}},
  "components": [
    {"type": "library", "name": "openssl", "version": "3.0.8", "purl": "pkg:generic/openssl@3.0.8",
     "licenses": [{"expression": "Apache-2.0 OR MIT"}],
     "properties": [{"name": "cdx:eos", "value": "2024-12-31"}]},
    {"type": "library", "bom-ref": "broken", "name": "zlib", "version": "1.2.13",
     "purl": "not-a-purl", "cpe": "cpe:2.3:a:zlib:zlib:1.2.13:*:*:*:*:*:*:*",
     "components": [
        {"type": "library", "name": "inner", "purl": "pkg:maven/org.example/inner@1.0", "scope": "excluded"}
     ]},
    {"type": "library", "name": "lonely", "purl": "pkg:", "licenses": [{"license": {"id": "NotALicense"}}]}
  ]
}`

func TestParseBadPURLWarns(t *testing.T) {
	doc, warnings := mustParse(t, []byte(badPURLCycloneDX))
	if len(doc.Components) != 4 {
		t.Fatalf("got %d components, want 4 (nested included)", len(doc.Components))
	}
	zlib := findComponent(t, doc, "zlib")
	if zlib.Identity.Source != FromCPE || zlib.Identity.Namespace != "zlib" || zlib.Version != "1.2.13" {
		t.Errorf("got zlib identity %+v, want CPE zlib:zlib 1.2.13", zlib.Identity)
	}
	lonely := findComponent(t, doc, "lonely")
	if lonely.Identity.Source != FromName {
		t.Errorf("got lonely identity %+v, want name only", lonely.Identity)
	}
	inner := findComponent(t, doc, "inner")
	if inner.Location != "components[1].components[0]" || !inner.Excluded {
		t.Errorf("got inner at %q excluded=%v", inner.Location, inner.Excluded)
	}
	var zlibWarn, lonelyWarn, licenseWarn bool
	for _, w := range warnings {
		switch {
		case w.Location == "components[1]" && w.Ref == "broken" && strings.Contains(w.Message, `"not-a-purl"`) && strings.Contains(w.Message, "CPE"):
			zlibWarn = true
		case w.Location == "components[2]" && strings.Contains(w.Message, "purl") && strings.Contains(w.Message, "name"):
			lonelyWarn = true
		case w.Location == "components[2]" && strings.Contains(w.Message, "NotALicense"):
			licenseWarn = true
		}
	}
	if !zlibWarn || !lonelyWarn || !licenseWarn {
		t.Errorf("got warnings %v, want ones locating zlib's and lonely's purls and lonely's license", warnings)
	}
	openssl := findComponent(t, doc, "openssl")
	if l := openssl.Licenses[0]; l.Expression != "Apache-2.0 OR MIT" {
		t.Errorf("got openssl license %+v", l)
	}
	want := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if !openssl.Support.EndOfSupport.Equal(want) {
		t.Errorf("got end of support %v, want %v (the day after 2024-12-31)", openssl.Support.EndOfSupport, want)
	}
	if openssl.Support.PastEnd(want.Add(-time.Second)) || !openssl.Support.PastEnd(want) {
		t.Errorf("PastEnd is wrong around %v", want)
	}
	if doc.Subject == nil || doc.Subject.Name != "pump-fw" || doc.BOMVersion != 3 {
		t.Errorf("got subject %+v, BOM version %d", doc.Subject, doc.BOMVersion)
	}
}

func TestParseNewerCycloneDXMinor(t *testing.T) {
	tests := []struct {
		name string
		data string
		spec string
	}{
		{"json 1.9", `{"bomFormat":"CycloneDX","specVersion":"1.9","version":1,
			"newTopLevelThing":{"x":1},
			"components":[{"type":"library","name":"log4j-core","purl":"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1","futureField":[1,2]}]}`, "1.9"},
		{"xml 1.8", `<?xml version="1.0"?>
<bom xmlns="http://cyclonedx.org/schema/bom/1.8" version="1">
  <components>
    <component type="library"><name>log4j-core</name><version>2.14.1</version>
      <purl>pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1</purl><futureElement>x</futureElement></component>
  </components>
</bom>`, "1.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, warnings := mustParse(t, []byte(tt.data))
			if doc.SpecVersion != tt.spec {
				t.Errorf("got spec version %q, want %q", doc.SpecVersion, tt.spec)
			}
			if len(doc.Components) != 1 || doc.Components[0].Package.Name != "org.apache.logging.log4j:log4j-core" {
				t.Fatalf("got components %+v", doc.Components)
			}
			if len(warnings) != 1 || !strings.Contains(warnings[0].Message, "newer") {
				t.Errorf("got warnings %v, want one saying the version is newer", warnings)
			}
		})
	}
}

const spdx3Doc = `{
  "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
  "@graph": [
    {"type": "CreationInfo", "@id": "_:ci", "specVersion": "3.0.1", "created": "2024-05-01T10:00:00Z", "createdBy": ["urn:tool"]},
    {"type": "SpdxDocument", "spdxId": "urn:doc:1", "name": "infusion-pump", "creationInfo": "_:ci", "rootElement": ["urn:sbom:1"]},
    {"type": "software_Sbom", "spdxId": "urn:sbom:1", "creationInfo": "_:ci", "rootElement": ["urn:pkg:fw"]},
    {"type": "Organization", "spdxId": "urn:org:acme", "name": "Acme Medical", "creationInfo": "_:ci"},
    {"type": "software_Package", "spdxId": "urn:pkg:fw", "name": "pump-firmware", "software_packageVersion": "5.1.0",
     "suppliedBy": "urn:org:acme", "software_primaryPurpose": "firmware", "creationInfo": "_:ci"},
    {"type": "software_Package", "spdxId": "urn:pkg:log4j", "name": "log4j-core", "software_packageVersion": "2.14.1",
     "externalIdentifier": [{"type": "ExternalIdentifier", "externalIdentifierType": "packageUrl", "identifier": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"}],
     "verifiedUsing": [{"type": "Hash", "algorithm": "sha256", "hashValue": "ABCDEF"}],
     "supportLevel": ["endOfSupport"], "validUntilTime": "2023-01-01T00:00:00Z", "creationInfo": "_:ci"},
    {"type": "software_Package", "spdxId": "urn:pkg:rtos", "name": "rtos", "software_packageVersion": "3.4",
     "externalIdentifier": [{"type": "ExternalIdentifier", "externalIdentifierType": "cpe23", "identifier": "cpe:2.3:o:zephyrproject:zephyr:3.4:*:*:*:*:*:*:*"}], "creationInfo": "_:ci"},
    {"type": "simplelicensing_LicenseExpression", "spdxId": "urn:lic:1", "simplelicensing_licenseExpression": "Apache-2.0", "creationInfo": "_:ci"},
    {"type": "Relationship", "spdxId": "urn:rel:1", "from": "urn:pkg:log4j", "to": ["urn:lic:1"], "relationshipType": "hasConcludedLicense", "creationInfo": "_:ci"},
    {"type": "Relationship", "spdxId": "urn:rel:2", "from": "urn:pkg:rtos", "to": ["https://spdx.org/licenses/Apache-2.0"], "relationshipType": "hasDeclaredLicense", "creationInfo": "_:ci"},
    {"type": "software_File", "spdxId": "urn:file:1", "name": "boot.bin", "creationInfo": "_:ci"}
  ]
}`

func TestParseSPDX3JSONLD(t *testing.T) {
	doc, warnings := mustParse(t, []byte(spdx3Doc))
	if len(warnings) != 0 {
		t.Errorf("got warnings %v", warnings)
	}
	if doc.Format != SPDX3JSONLD || doc.SpecVersion != "3.0.1" || doc.Name != "infusion-pump" {
		t.Errorf("got %s %s %q", doc.Format, doc.SpecVersion, doc.Name)
	}
	if len(doc.Components) != 3 || len(doc.Files) != 1 {
		t.Fatalf("got %d packages and %d files, want 3 and 1", len(doc.Components), len(doc.Files))
	}
	if doc.Subject == nil || doc.Subject.Name != "pump-firmware" || doc.Subject.Supplier != "Acme Medical" || doc.Subject.Type != "firmware" {
		t.Errorf("got subject %+v", doc.Subject)
	}
	log4j := findComponent(t, doc, "log4j-core")
	if log4j.Package.Name != "org.apache.logging.log4j:log4j-core" || log4j.Version != "2.14.1" {
		t.Errorf("got log4j %v %q", log4j.Package, log4j.Version)
	}
	if !log4j.Support.Ended || log4j.Support.EndOfSupport.Year() != 2023 {
		t.Errorf("got log4j support %+v", log4j.Support)
	}
	if len(log4j.Licenses) != 1 || log4j.Licenses[0].Expression != "Apache-2.0" || log4j.Licenses[0].Kind != "concluded" {
		t.Errorf("got log4j licenses %+v", log4j.Licenses)
	}
	if len(log4j.Hashes) != 1 || log4j.Hashes[0].Value != "abcdef" {
		t.Errorf("got log4j hashes %+v", log4j.Hashes)
	}
	rtos := findComponent(t, doc, "rtos")
	if rtos.Identity.Source != FromCPE || rtos.Identity.Name != "zephyr" || rtos.Licenses[0].Kind != "declared" {
		t.Errorf("got rtos %+v", rtos)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "  \n", "empty"},
		{"plain text", "hello world", "neither JSON"},
		{"unknown JSON", `{"name":"x"}`, "neither CycloneDX"},
		{"bad JSON", `{"bomFormat":`, "not valid JSON"},
		{"SPDX 1.2", `{"spdxVersion":"SPDX-1.2"}`, "SPDX-1.2"},
		{"SPDX RDF", `<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"></rdf:RDF>`, "RDF/XML is not supported"},
		{"other XML", `<project/>`, "not a CycloneDX"},
		{"foreign bom XML", `<bom xmlns="urn:other"/>`, "not a CycloneDX namespace"},
		{"CycloneDX 2.0", `{"bomFormat":"CycloneDX","specVersion":"2.0"}`, "not a 1.x version"},
		{"CycloneDX 1.1 JSON", `{"bomFormat":"CycloneDX","specVersion":"1.1"}`, "no JSON format"},
		{"CycloneDX no version", `{"bomFormat":"CycloneDX"}`, "no specVersion"},
		{"SPDX 3 without graph", `{"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld"}`, "no @graph"},
		{"SPDX 3 without version", `{"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld","@graph":[]}`, "only SPDX 3.x"},
		{"tag-value 2.0", "SPDXVersion: SPDX-2.0\nDataLicense: CC0-1.0\n", "unsupported SPDX version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse returned no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDetectIgnoresFileName(t *testing.T) {
	// Detection reads content only: the same bytes give the same format
	// whatever they would be called, and a UTF-8 byte order mark is skipped.
	tests := []struct {
		file string
		want Format
	}{
		{"medical-device.cdx.json", CycloneDXJSON},
		{"webapp-1.2.cdx.xml", CycloneDXXML},
		{"zephyr-firmware.spdx", SPDXTagValue},
		{"security-refs-2.3.spdx.json", SPDXJSON},
	}
	for _, tt := range tests {
		data := append([]byte{0xEF, 0xBB, 0xBF}, readTestdata(t, tt.file)...)
		got, err := Detect(data)
		if err != nil {
			t.Fatalf("Detect(%s): %v", tt.file, err)
		}
		if got != tt.want {
			t.Errorf("Detect(%s) = %s, want %s", tt.file, got, tt.want)
		}
	}
}

func TestParseTooLarge(t *testing.T) {
	_, _, err := Parse(make([]byte, MaxDocumentSize+1))
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("got %v, want a size limit error", err)
	}
}

func TestParseSPDXVersionsAndBadPURL(t *testing.T) {
	json22 := `{"spdxVersion":"SPDX-2.2","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"pump",
	  "documentNamespace":"https://example.com/pump-2.2","creationInfo":{"created":"2024-01-01T00:00:00Z","creators":["Tool: x"]},
	  "documentDescribes":["SPDXRef-fw"],
	  "packages":[
	    {"SPDXID":"SPDXRef-fw","name":"pump-fw","versionInfo":"4.2","downloadLocation":"NOASSERTION","licenseConcluded":"LicenseRef-acme"},
	    {"SPDXID":"SPDXRef-bad","name":"zlib","versionInfo":"1.2.13","downloadLocation":"NOASSERTION","licenseDeclared":"Zlib",
	     "externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:/"},
	                     {"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:zlib:zlib:1.2.13:*:*:*:*:*:*:*"}]}],
	  "relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-fw"}]}`
	tag23 := "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\nSPDXID: SPDXRef-DOCUMENT\nDocumentName: pump\n" +
		"DocumentNamespace: https://example.com/pump-2.3\nCreator: Tool: x\nCreated: 2024-01-01T00:00:00Z\n\n" +
		"PackageName: log4j-core\nSPDXID: SPDXRef-log4j\nPackageVersion: 2.14.1\nPackageDownloadLocation: NOASSERTION\n" +
		"PackageLicenseDeclared: Apache-2.0 OR MIT\nValidUntilDate: 2023-12-31T00:00:00Z\n" +
		"ExternalRef: PACKAGE-MANAGER purl pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1\n\n" +
		"PackageName: broken\nSPDXID: SPDXRef-broken\nPackageDownloadLocation: NOASSERTION\n" +
		"ExternalRef: PACKAGE-MANAGER purl maven:org.x/y@1\n"
	tests := []struct {
		name, data   string
		format       Format
		spec         string
		packages     int
		badLocation  string
		wantFallback IdentitySource
	}{
		{"SPDX 2.2 JSON", json22, SPDXJSON, "SPDX-2.2", 2, "package SPDXRef-bad", FromCPE},
		{"SPDX 2.3 tag-value", tag23, SPDXTagValue, "SPDX-2.3", 2, "package SPDXRef-broken", FromName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, warnings := mustParse(t, []byte(tt.data))
			if doc.Format != tt.format || doc.SpecVersion != tt.spec {
				t.Errorf("got %s %s, want %s %s", doc.Format, doc.SpecVersion, tt.format, tt.spec)
			}
			if len(doc.Components) != tt.packages {
				t.Fatalf("got %d packages, want %d", len(doc.Components), tt.packages)
			}
			located := false
			for _, w := range warnings {
				if w.Location == tt.badLocation && strings.Contains(w.Message, "purl") {
					located = true
				}
			}
			if !located {
				t.Errorf("got warnings %v, want one at %s about its purl", warnings, tt.badLocation)
			}
			if got := doc.Components[1].Identity.Source; got != tt.wantFallback {
				t.Errorf("bad-purl package identified by %s, want %s", got, tt.wantFallback)
			}
		})
	}
	doc, _ := mustParse(t, []byte(json22))
	if doc.Subject == nil || doc.Subject.Name != "pump-fw" {
		t.Errorf("got subject %+v, want pump-fw", doc.Subject)
	}
	if l := doc.Components[0].Licenses[0]; l.Expression != "LicenseRef-acme" {
		t.Errorf("got license %+v, want the LicenseRef kept as an expression", l)
	}
	tv, _ := mustParse(t, []byte(tag23))
	log4j := tv.Components[0]
	if log4j.Package.Name != "org.apache.logging.log4j:log4j-core" || log4j.Licenses[0].Expression != "Apache-2.0 OR MIT" {
		t.Errorf("got log4j %+v", log4j)
	}
	if !log4j.Support.EndOfSupport.Equal(time.Date(2023, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("got end of support %v from validUntilDate", log4j.Support.EndOfSupport)
	}
}

func TestParseCycloneDXEveryMinor(t *testing.T) {
	for minor := 2; minor <= 7; minor++ {
		spec := fmt.Sprintf("1.%d", minor)
		jsonDoc := fmt.Sprintf(`{"bomFormat":"CycloneDX","specVersion":%q,"version":1,
		  "components":[{"type":"library","name":"ms","version":"2.1.2","purl":"pkg:npm/ms@2.1.2"}]}`, spec)
		xmlDoc := fmt.Sprintf(`<bom xmlns="http://cyclonedx.org/schema/bom/%s" version="1"><components>
		  <component type="library"><name>ms</name><version>2.1.2</version><purl>pkg:npm/ms@2.1.2</purl></component>
		</components></bom>`, spec)
		for _, data := range []string{jsonDoc, xmlDoc} {
			doc, warnings, err := Parse([]byte(data))
			if err != nil {
				t.Fatalf("CycloneDX %s: %v", spec, err)
			}
			if doc.SpecVersion != spec || len(warnings) != 0 {
				t.Errorf("CycloneDX %s %s: got spec %q, warnings %v", spec, doc.Format, doc.SpecVersion, warnings)
			}
			if len(doc.Components) != 1 || doc.Components[0].Package != (PackageKey{Ecosystem: "npm", Name: "ms"}) {
				t.Errorf("CycloneDX %s %s: got components %+v", spec, doc.Format, doc.Components)
			}
		}
	}
}
