package sbom

import (
	"encoding/json"
	"fmt"
	"testing"
)

// generatedCycloneDX builds a CycloneDX 1.6 JSON SBOM with n library
// components, each with a purl, an SPDX license id and a SHA-256 hash.
func generatedCycloneDX(tb testing.TB, n int) []byte {
	tb.Helper()
	comps := make([]map[string]any, n)
	for i := range comps {
		comps[i] = map[string]any{
			"type": "library", "bom-ref": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("pkg%d", i), "version": "1.2.3",
			"purl":     fmt.Sprintf("pkg:maven/org.example/pkg%d@1.2.3", i),
			"licenses": []any{map[string]any{"license": map[string]string{"id": "Apache-2.0"}}},
			"hashes":   []any{map[string]string{"alg": "SHA-256", "content": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
		}
	}
	b, err := json.Marshal(map[string]any{
		"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
		"metadata":   map[string]any{"component": map[string]any{"type": "firmware", "name": "pump-fw", "version": "1.0"}},
		"components": comps,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkParse measures SBOM ingest: bytes per second (from SetBytes)
// and components per second, for the real testdata files and a generated
// 500-component CycloneDX JSON SBOM.
func BenchmarkParse(b *testing.B) {
	inputs := []struct {
		name string
		data []byte
	}{
		{"cyclonedx-json-500", generatedCycloneDX(b, 500)},
		{"medical-device.cdx.json", readTestdata(b, "medical-device.cdx.json")},
		{"webapp-1.2.cdx.xml", readTestdata(b, "webapp-1.2.cdx.xml")},
		{"zephyr-firmware.spdx", readTestdata(b, "zephyr-firmware.spdx")},
		{"security-refs-2.3.spdx.json", readTestdata(b, "security-refs-2.3.spdx.json")},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			components := 0
			for i := 0; i < b.N; i++ {
				doc, _, err := Parse(in.data)
				if err != nil {
					b.Fatal(err)
				}
				components += len(doc.Components) + len(doc.Files)
			}
			b.ReportMetric(float64(components)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
