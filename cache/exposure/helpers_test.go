package exposure

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/advisory"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading testdata: %v", err)
	}
	return b
}

// component is one entry of a test SBOM.
type component struct {
	name, version, purl, license string
}

// cycloneDX builds a CycloneDX 1.6 JSON SBOM whose subject is
// subjectName@subjectVersion (purl pkg:generic/acme/NAME@VERSION).
func cycloneDX(t testing.TB, subjectName, subjectVersion string, comps ...component) []byte {
	t.Helper()
	type license struct {
		License map[string]string `json:"license,omitempty"`
	}
	type comp struct {
		Type     string    `json:"type"`
		Name     string    `json:"name"`
		Version  string    `json:"version,omitempty"`
		PURL     string    `json:"purl,omitempty"`
		Licenses []license `json:"licenses,omitempty"`
	}
	var list []comp
	for _, c := range comps {
		cc := comp{Type: "library", Name: c.name, Version: c.version, PURL: c.purl}
		if c.license != "" {
			cc.Licenses = []license{{License: map[string]string{"id": c.license}}}
		}
		list = append(list, cc)
	}
	doc := map[string]any{
		"bomFormat":    "CycloneDX",
		"specVersion":  "1.6",
		"serialNumber": fmt.Sprintf("urn:uuid:00000000-0000-0000-0000-%012x", crc32.ChecksumIEEE([]byte(subjectName+"@"+subjectVersion))),
		"version":      1,
		"metadata": map[string]any{
			"component": map[string]any{
				"type": "firmware", "name": subjectName, "version": subjectVersion, "bom-ref": "subject",
				"purl": "pkg:generic/acme/" + subjectName + "@" + subjectVersion,
			},
		},
		"components": list,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("encoding test SBOM: %v", err)
	}
	return b
}

func log4jCore(v string) component {
	return component{"log4j-core", v, "pkg:maven/org.apache.logging.log4j/log4j-core@" + v, "Apache-2.0"}
}

func log4jAPI(v string) component {
	return component{"log4j-api", v, "pkg:maven/org.apache.logging.log4j/log4j-api@" + v, "Apache-2.0"}
}

// fixture is an index, an advisory store in memory and an evaluator.
type fixture struct {
	index *Index
	store *advisory.Store
	eval  *Evaluator
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ix, err := NewIndex(nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("NewIndex: %v", err)
	}
	store, err := advisory.NewStore(nil, nil, nil)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return &fixture{index: ix, store: store, eval: NewEvaluator(ix, store)}
}

func (f *fixture) release(t testing.TB, target string, data []byte) {
	t.Helper()
	if _, err := f.index.AddReleaseSBOM(target, data); err != nil {
		t.Fatalf("AddReleaseSBOM(%s): %v", target, err)
	}
}

func (f *fixture) device(t testing.TB, id, target string) {
	t.Helper()
	if err := f.index.SetDeviceRelease(id, target); err != nil {
		t.Fatalf("SetDeviceRelease(%s): %v", id, err)
	}
}

func (f *fixture) advisory(t testing.TB, data []byte, src advisory.Source) advisory.ImportResult {
	t.Helper()
	res, err := f.store.Add(context.Background(), data, src)
	if err != nil {
		t.Fatalf("adding advisory: %v", err)
	}
	return res
}

func (f *fixture) status(t testing.TB, device, vuln string) DeviceStatus {
	t.Helper()
	s, err := f.eval.Status(device, vuln)
	if err != nil {
		t.Fatalf("Status(%s, %s): %v", device, vuln, err)
	}
	return s
}
