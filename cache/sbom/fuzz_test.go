package sbom

import (
	"testing"
)

// smallXML and smallTagValue are short seeds in the shapes of the real
// testdata files. The fuzzer minimises every input that finds new coverage,
// which takes minutes for the 40 to 66 KB real files, so those are not seeds.
const smallXML = `<?xml version="1.0" encoding="utf-8"?>
<bom xmlns="http://cyclonedx.org/schema/bom/1.2" serialNumber="urn:uuid:591eb851-2646-4d52-aa40-ac8b35a2b2d7" version="1">
  <metadata><component type="library" bom-ref="pkg:npm/app@0.0.1"><name>app</name><version>0.0.1</version></component></metadata>
  <components>
    <component type="library" bom-ref="pkg:npm/debug@4.1.1"><name>debug</name><version>4.1.1</version>
      <hashes><hash alg="SHA-512">a580</hash></hashes>
      <licenses><license><id>MIT</id></license></licenses><purl>pkg:npm/debug@4.1.1</purl></component>
  </components>
</bom>`

const smallTagValue = `SPDXVersion: SPDX-2.2
DataLicense: CC0-1.0
SPDXID: SPDXRef-DOCUMENT
DocumentName: zephyr-sources
DocumentNamespace: https://example.com/spdx/zephyr
Creator: Tool: Zephyr SPDX builder
Created: 2021-06-08T01:29:31Z
Relationship: SPDXRef-DOCUMENT DESCRIBES SPDXRef-zephyr-sources
PackageName: zephyr-sources
SPDXID: SPDXRef-zephyr-sources
PackageDownloadLocation: NOASSERTION
PackageLicenseConcluded: Apache-2.0
FilesAnalyzed: true
FileName: ./zephyr/kernel/init.c
SPDXID: SPDXRef-File-init.c
FileChecksum: SHA1: 67707a29789f480431a7ab373353abf77d6df316
LicenseConcluded: Apache-2.0
`

// FuzzParse feeds arbitrary bytes to every reader through format
// detection. Parse must not panic, and a document it accepts must have a
// location for every component.
func FuzzParse(f *testing.F) {
	f.Add(readTestdata(f, "security-refs-2.3.spdx.json"))
	f.Add([]byte(smallXML))
	f.Add([]byte(smallTagValue))
	f.Add([]byte(badPURLCycloneDX))
	f.Add([]byte(spdx3Doc))
	f.Add([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.9","components":[{"name":"x","purl":"pkg:npm/x@1"}]}`))
	f.Add([]byte("SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\nSPDXID: SPDXRef-DOCUMENT\nPackageName: p\nSPDXID: SPDXRef-p\nExternalRef: PACKAGE-MANAGER purl pkg:npm/p@1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, _, err := Parse(data)
		if err != nil {
			return
		}
		for i, c := range doc.Components {
			if c.Location == "" {
				t.Fatalf("component %d has no location", i)
			}
		}
	})
}

func FuzzParsePURL(f *testing.F) {
	for _, s := range []string{"pkg:maven/a/b@1", "pkg:deb/debian/x@1?distro=debian-12&upstream=y%401", "pkg:", "pkg:/npm/%40s/n@v#p", "cpe:2.3:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := ParsePURL(s); err == nil {
			_ = id.Key()
		}
		_, _ = ParseCPE(s)
	})
}
