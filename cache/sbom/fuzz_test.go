package sbom

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes to every reader through format
// detection. Parse must not panic, and a document it accepts must have a
// location for every component.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"medical-device.cdx.json", "webapp-1.2.cdx.xml", "zephyr-firmware.spdx", "security-refs-2.3.spdx.json"} {
		f.Add(readTestdata(f, name))
	}
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
