package advisory

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(true).
		WithMemTableSize(8 << 20).WithBlockCacheSize(8 << 20).WithIndexCacheSize(4 << 20))
	if err != nil {
		t.Fatalf("opening badger: %v", err)
	}
	return db
}

func newStore(t *testing.T, db *badger.DB) *Store {
	t.Helper()
	s, _ := newStoreWithRegistry(t, db)
	return s
}

func newStoreWithRegistry(t *testing.T, db *badger.DB) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := NewStore(db, nil, reg)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s, reg
}

// gaugeValue reads a gauge from a registry.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestStorePersistsAndJoinsAliases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	s, reg := newStoreWithRegistry(t, db)

	res, err := s.Add(ctx, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"), Source{Origin: "import", Name: "GHSA-jfh8-c2jp-5v3q.json"})
	if err != nil {
		t.Fatalf("Add OSV: %v", err)
	}
	if len(res.Added) != 1 || res.Added[0] != "GHSA-jfh8-c2jp-5v3q" || res.Kind != KindOSV {
		t.Errorf("got result %+v", res)
	}
	vexRes, err := s.Add(ctx, readTestdata(t, "log4shell-not-affected.cdx.vex.json"), Source{Origin: "tuf", Name: "advisories/abc.vex.json", Release: "releases/abc-4.2.bin"})
	if err != nil {
		t.Fatalf("Add VEX: %v", err)
	}
	if vexRes.Statements != 1 || len(vexRes.Added) != 1 {
		t.Errorf("got VEX result %+v", vexRes)
	}
	if got := gaugeValue(t, reg, "wardgate_advisory_osv_records"); got != 1 {
		t.Errorf("records gauge = %v, want 1", got)
	}
	if got := gaugeValue(t, reg, "wardgate_advisory_vex_statements"); got != 1 {
		t.Errorf("statements gauge = %v, want 1", got)
	}

	check := func(s *Store) {
		t.Helper()
		for _, id := range []string{"CVE-2021-44228", "ghsa-jfh8-c2jp-5v3q", " GHSA-JFH8-C2JP-5V3Q "} {
			g, ok := s.Lookup(id)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", id)
			}
			if g.ID != "CVE-2021-44228" || len(g.IDs) != 2 {
				t.Errorf("Lookup(%q) = group %s %v, want CVE-2021-44228 with its GHSA alias", id, g.ID, g.IDs)
			}
			if len(g.Records) != 1 || len(g.Statements) != 1 {
				t.Fatalf("Lookup(%q) has %d records and %d statements, want 1 and 1", id, len(g.Records), len(g.Statements))
			}
			if g.Statements[0].Release != "releases/abc-4.2.bin" {
				t.Errorf("statement release %q, want the scope given at import", g.Statements[0].Release)
			}
		}
		if label, _ := mustGroup(t, s, "CVE-2021-44228").Rating(); label != SeverityCritical {
			t.Errorf("group rating %s, want CRITICAL", label)
		}
	}
	check(s)

	// Reopen the database: Load must restore both documents.
	if err := db.Close(); err != nil {
		t.Fatalf("closing badger: %v", err)
	}
	db2 := openDB(t, dir)
	t.Cleanup(func() { db2.Close() })
	s2 := newStore(t, db2)
	if err := s2.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	check(s2)
	if got := len(s2.Entries()); got != 2 {
		t.Errorf("got %d entries after reload, want 2", got)
	}

	// The same record again changes nothing; an older one is not taken.
	again, err := s2.Add(ctx, readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json"), Source{Origin: "import"})
	if err != nil || len(again.Unchanged) != 1 {
		t.Errorf("re-adding: %+v, %v", again, err)
	}
	older := strings.Replace(string(readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json")), "2022-03-25T20:56:18Z", "2021-12-31T00:00:00Z", 1)
	if res, _ := s2.Add(ctx, []byte(older), Source{Origin: "import"}); len(res.Unchanged) != 1 {
		t.Errorf("older record: got %+v, want unchanged", res)
	}
	newer := strings.Replace(string(readTestdata(t, "GHSA-jfh8-c2jp-5v3q.json")), "2022-03-25T20:56:18Z", "2023-01-01T00:00:00Z", 1)
	gen := s2.Generation()
	if res, _ := s2.Add(ctx, []byte(newer), Source{Origin: "import"}); len(res.Replaced) != 1 {
		t.Errorf("newer record: got %+v, want replaced", res)
	}
	if s2.Generation() == gen {
		t.Error("generation did not change after a replacement")
	}

	if err := s2.Remove(ctx, "GHSA-jfh8-c2jp-5v3q"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := s2.Remove(ctx, "GHSA-jfh8-c2jp-5v3q"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: got %v, want ErrNotFound", err)
	}
	g, _ := s2.Lookup("CVE-2021-44228")
	if len(g.Records) != 0 || len(g.Statements) != 1 {
		t.Errorf("after removal got %d records and %d statements, want 0 and 1", len(g.Records), len(g.Statements))
	}
}

func mustGroup(t *testing.T, s *Store, id string) Group {
	t.Helper()
	g, ok := s.Lookup(id)
	if !ok {
		t.Fatalf("no group for %s", id)
	}
	return g
}

func TestStoreRejectsBadInput(t *testing.T) {
	s := newStore(t, nil)
	_, err := s.Add(context.Background(), []byte(`{"id":`), Source{Origin: "import", Name: "bad.json"})
	if err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("got %v, want an error naming the file", err)
	}
	if len(s.Entries()) != 0 {
		t.Error("a failed import left an entry")
	}
	if _, ok := s.Lookup("CVE-0000-0000"); ok {
		t.Error("Lookup of an unknown id reported a group")
	}
}

func TestStatementLaterWins(t *testing.T) {
	s := newStore(t, nil)
	ctx := context.Background()
	first := `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"doc-a","timestamp":"2024-01-01T00:00:00Z","statements":[
	  {"vulnerability":{"name":"CVE-2024-0001"},"products":[{"@id":"pkg:npm/x@1.0.0"}],"status":"affected","action_statement":"upgrade"}]}`
	second := `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"doc-b","timestamp":"2024-02-01T00:00:00Z","statements":[
	  {"vulnerability":{"name":"CVE-2024-0001"},"products":[{"@id":"pkg:npm/x@1.0.0"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`
	// The later statement is imported first; sorting must still put it last.
	for _, doc := range []string{second, first} {
		if _, err := s.Add(ctx, []byte(doc), Source{Origin: "import"}); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	g := mustGroup(t, s, "CVE-2024-0001")
	if len(g.Statements) != 2 {
		t.Fatalf("got %d statements", len(g.Statements))
	}
	if last := g.Statements[1]; last.Document != "doc-b" || last.Status != StatusNotAffected {
		t.Errorf("latest statement is %s %s, want doc-b not_affected", last.Document, last.Status)
	}
}
