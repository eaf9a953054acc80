package exposure

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/cache/sbom"
)

const (
	benchDevices    = 10_000
	benchComponents = 500
)

// benchPool returns pre-parsed components: 4,000 packages in five
// ecosystems with eight versions each, so that releases share components
// the way firmware builds of one product line do.
func benchPool(tb testing.TB) [][]sbom.Component {
	tb.Helper()
	types := []struct{ typ, ns string }{{"maven", "org.example"}, {"npm", ""}, {"pypi", ""}, {"golang", "example.com"}, {"deb", "debian"}}
	var pool [][]sbom.Component
	for p := 0; p < 4000; p++ {
		t := types[p%len(types)]
		var versions []sbom.Component
		for v := 0; v < 8; v++ {
			purl := fmt.Sprintf("pkg:%s/%s/pkg%d@1.%d.0", t.typ, t.ns, p, v)
			if t.ns == "" {
				purl = fmt.Sprintf("pkg:%s/pkg%d@1.%d.0", t.typ, p, v)
			}
			id, err := sbom.ParsePURL(purl)
			if err != nil {
				tb.Fatalf("ParsePURL(%s): %v", purl, err)
			}
			versions = append(versions, sbom.Component{
				Name: id.Name, Version: id.Version, PURL: purl, Identity: id, Package: id.Key(), Type: "library",
				Licenses: []sbom.License{{Written: "MIT", Expression: "MIT"}},
			})
		}
		pool = append(pool, versions)
	}
	return pool
}

// benchLog4j are the log4j-core versions spread over the releases.
var benchLog4j = []string{"2.0-beta9", "2.3", "2.3.1", "2.4", "2.12.1", "2.12.2", "2.13.0", "2.14.1", "2.15.0", "2.16.0", "2.17.1"}

// buildBenchFixture indexes release SBOMs of 500 components and assigns
// 10,000 devices to them round-robin. With releases = 10,000 every device
// runs a release of its own, the most the index must hold (5 million
// component entries).
func buildBenchFixture(tb testing.TB, releases int) *fixture {
	tb.Helper()
	f := newFixture(tb)
	pool := benchPool(tb)
	rng := rand.New(rand.NewPCG(1, 2))
	log4j := make([]sbom.Component, len(benchLog4j))
	for i, v := range benchLog4j {
		purl := "pkg:maven/org.apache.logging.log4j/log4j-core@" + v
		id, _ := sbom.ParsePURL(purl)
		log4j[i] = sbom.Component{Name: "log4j-core", Version: v, PURL: purl, Identity: id, Package: id.Key()}
	}
	for r := 0; r < releases; r++ {
		comps := make([]sbom.Component, 0, benchComponents)
		if r%3 == 0 {
			comps = append(comps, log4j[r%len(log4j)])
		}
		start := rng.IntN(len(pool))
		for len(comps) < benchComponents {
			p := pool[(start+len(comps)*7)%len(pool)]
			comps = append(comps, p[rng.IntN(len(p))])
		}
		// 100 product lines, each with releases 1.0, 1.1, ...
		subject := &sbom.Component{Name: fmt.Sprintf("product-%d", r%100), Version: fmt.Sprintf("1.%d", r/100)}
		doc := &sbom.Document{Format: sbom.CycloneDXJSON, SpecVersion: "1.6", Subject: subject, Components: comps}
		if err := f.index.AddRelease(fmt.Sprintf("releases/pump-fw-%d.bin", r), doc); err != nil {
			tb.Fatal(err)
		}
	}
	snapshot := make(map[string]string, benchDevices)
	for d := 0; d < benchDevices; d++ {
		snapshot[fmt.Sprintf("ACME/SN%05d", d)] = fmt.Sprintf("releases/pump-fw-%d.bin", d%releases)
	}
	if err := f.index.SetDevices(snapshot); err != nil {
		tb.Fatal(err)
	}
	f.advisory(tb, readTestdata(tb, "GHSA-jfh8-c2jp-5v3q.json"), advisory.Source{Origin: "import"})
	return f
}

var (
	benchOnce     sync.Map // releases count to *fixture
	benchOnceLock sync.Mutex
)

func benchFixture(b *testing.B, releases int) *fixture {
	benchOnceLock.Lock()
	defer benchOnceLock.Unlock()
	if f, ok := benchOnce.Load(releases); ok {
		return f.(*fixture)
	}
	f := buildBenchFixture(b, releases)
	benchOnce.Store(releases, f)
	return f
}

// BenchmarkExposure measures one exposure query for Log4Shell over 10,000
// devices whose release SBOMs hold 500 components each, once indexed.
func BenchmarkExposure(b *testing.B) {
	for _, releases := range []int{100, benchDevices} {
		b.Run(fmt.Sprintf("releases=%d", releases), func(b *testing.B) {
			f := benchFixture(b, releases)
			b.ReportAllocs()
			b.ResetTimer()
			var affected int
			for i := 0; i < b.N; i++ {
				rep := f.eval.Exposure("CVE-2021-44228", ExposureOptions{})
				affected = rep.Counts[advisory.StatusAffected]
			}
			b.StopTimer()
			if affected == 0 {
				b.Fatal("no device affected; the fixture is wrong")
			}
			b.ReportMetric(float64(affected), "affected_devices")
		})
	}
}

// BenchmarkStatus measures one device's status for one vulnerability.
func BenchmarkStatus(b *testing.B) {
	f := benchFixture(b, benchDevices)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.eval.Status("ACME/SN00021", "CVE-2021-44228"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRisk measures the risk ranking of the 10,000 devices.
func BenchmarkRisk(b *testing.B) {
	f := benchFixture(b, benchDevices)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.eval.Risk(RiskOptions{Limit: 50})
	}
}

// BenchmarkIndexAddRelease measures indexing one parsed 500-component SBOM.
func BenchmarkIndexAddRelease(b *testing.B) {
	pool := benchPool(b)
	comps := make([]sbom.Component, benchComponents)
	for i := range comps {
		comps[i] = pool[i*7%len(pool)][i%8]
	}
	doc := &sbom.Document{Subject: &sbom.Component{Name: "pump-fw", Version: "1.0"}, Components: comps}
	f := newFixture(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.index.AddRelease(fmt.Sprintf("r%d", i%1000), doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchComponents)/b.Elapsed().Seconds(), "components/s")
}
