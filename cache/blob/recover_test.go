package blob

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// events collects Options.OnEvent calls.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) record(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) kinds(sha string) []EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []EventKind
	for _, ev := range e.got {
		if ev.SHA256 == sha {
			k = append(k, ev.Kind)
		}
	}
	return k
}

// runUntilReady runs the store's background work until every blob is
// verified; Run stops at cleanup.
func runUntilReady(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-s.Ready()
}

func TestOpenRemovesTornTempFiles(t *testing.T) {
	env := newEnv(t, Options{})
	s := env.store
	b := content(20, 30_000)
	f, err := s.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b[:10_000]); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(s.tmpDir, "leftover.tmp")
	if err := os.WriteFile(stray, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = env.reopen(t, false, Options{})
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files after reopen: got %v, want none", names)
	}
	if s.Has(digestOf(b, false).Hex()) {
		t.Fatalf("Has of an interrupted fill after reopen: got true, want false")
	}
	mustEqual(t, "fill after reopen", readBlob(t, s, fillWith(t, s, b).Hex()), b)
}

func TestUncleanShutdownReverifies(t *testing.T) {
	env := newEnv(t, Options{})
	good := content(21, 40_000)
	bad := content(22, 40_000)
	goodD := fillWith(t, env.store, good)
	badD := fillWith(t, env.store, bad)
	if err := env.store.Pin(badD.Hex(), "rollout-7"); err != nil {
		t.Fatal(err)
	}
	// Corrupt one blob in place, keeping its length, as a disk might.
	path := env.store.blobPath(badD.Hex())
	corrupt := append([]byte(nil), bad...)
	corrupt[100] ^= 1
	if err := os.WriteFile(path, corrupt, 0o640); err != nil {
		t.Fatal(err)
	}

	var ev events
	reg := prometheus.NewRegistry()
	s := env.reopen(t, false, Options{OnEvent: ev.record, Registerer: reg})
	select {
	case <-s.Ready():
		t.Fatalf("Ready before Run after an unclean shutdown: closed, want open")
	default:
	}
	for _, d := range []Digest{goodD, badD} {
		if _, _, err := s.Open(d.Hex()); !errors.Is(err, ErrNotReady) {
			t.Fatalf("Open(%s) before verification: got %v, want %v", d.Hex(), err, ErrNotReady)
		}
		if !s.Has(d.Hex()) {
			t.Fatalf("Has(%s) before verification: got false, want true", d.Hex())
		}
	}
	if got := metricValue(t, reg, "wardgate_blob_unverified_blobs"); got != 2 {
		t.Fatalf("unverified gauge: got %v, want 2", got)
	}
	// Pending verification does not hold up blobs filled meanwhile.
	fresh := content(29, 3000)
	mustEqual(t, "blob filled before verification ran", readBlob(t, s, fillWith(t, s, fresh).Hex()), fresh)
	runUntilReady(t, s)
	mustEqual(t, "good blob after verification", readBlob(t, s, goodD.Hex()), good)
	if _, _, err := s.Open(badD.Hex()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of the corrupted blob: got %v, want %v", err, ErrNotFound)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupted file: got %v, want removed", err)
	}
	if got := metricValue(t, reg, "wardgate_blob_verification_failures_total"); got != 1 {
		t.Fatalf("verification failures: got %v, want 1", got)
	}
	if got, want := ev.kinds(badD.Hex()), []EventKind{EventVerifyFailed}; !slices.Equal(got, want) {
		t.Fatalf("events for the corrupted blob: got %v, want %v", got, want)
	}
	// The pin outlives the blob, so a refetch is protected again.
	if got := s.Pins(badD.Hex()); !slices.Equal(got, []string{"rollout-7"}) {
		t.Fatalf("pins after removal: got %v, want [rollout-7]", got)
	}
	// After a clean close, the next Open needs no verification.
	s = env.reopen(t, true, Options{})
	select {
	case <-s.Ready():
	default:
		t.Fatalf("Ready after a clean shutdown: open, want closed")
	}
	mustEqual(t, "good blob after clean reopen", readBlob(t, s, goodD.Hex()), good)
}

func TestCloseWithoutVerificationStaysUnclean(t *testing.T) {
	env := newEnv(t, Options{})
	d := fillWith(t, env.store, content(23, 1000))
	env.reopen(t, false, Options{})
	// Closed cleanly, but without Run: the blob was never re-verified,
	// so the next Open must still treat the shutdown as unclean.
	s := env.reopen(t, true, Options{})
	if _, _, err := s.Open(d.Hex()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Open: got %v, want %v", err, ErrNotReady)
	}
}

func TestReconcileIndexAndFiles(t *testing.T) {
	env := newEnv(t, Options{})
	orphan := content(24, 5000)
	orphanD := fillWith(t, env.store, orphan)
	lost := content(25, 5000)
	lostD := fillWith(t, env.store, lost)
	resized := content(26, 5000)
	resizedD := fillWith(t, env.store, resized)
	s := env.store
	// A crash after rename but before the record: delete the record.
	if err := env.db.Update(func(txn *badger.Txn) error { return txn.Delete(recordKey(orphanD.Hex())) }); err != nil {
		t.Fatal(err)
	}
	// A file lost with its record kept, and a file of the wrong size.
	if err := os.Remove(s.blobPath(lostD.Hex())); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.blobPath(resizedD.Hex()), resized[:4999], 0o640); err != nil {
		t.Fatal(err)
	}
	// Junk in the blob folder and a malformed record.
	if err := os.WriteFile(filepath.Join(s.blobDir, "junk"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	junkSHA := hexOf(make([]byte, 32))
	if err := env.db.Update(func(txn *badger.Txn) error { return txn.Set(recordKey(junkSHA), []byte{9, 9}) }); err != nil {
		t.Fatal(err)
	}

	var ev events
	s = env.reopen(t, true, Options{OnEvent: ev.record})
	runUntilReady(t, s)
	mustEqual(t, "adopted blob", readBlob(t, s, orphanD.Hex()), orphan)
	if got, want := ev.kinds(orphanD.Hex()), []EventKind{EventAdopted}; !slices.Equal(got, want) {
		t.Fatalf("events for the orphan: got %v, want %v", got, want)
	}
	for name, d := range map[string]Digest{"lost": lostD, "resized": resizedD} {
		if s.Has(d.Hex()) {
			t.Fatalf("Has(%s blob): got true, want false", name)
		}
		if got, want := ev.kinds(d.Hex()), []EventKind{EventRemoved}; !slices.Equal(got, want) {
			t.Fatalf("events for the %s blob: got %v, want %v", name, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(s.blobDir, "junk")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("junk file: got %v, want removed", err)
	}
	// The index agrees with the files: a further reopen changes nothing.
	recs, _, tot, err := s.loadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || tot != (totals{Bytes: 5000, Blobs: 1}) {
		t.Fatalf("index after reconcile: got %d records and totals %+v, want 1 and {5000 1}", len(recs), tot)
	}
}

func TestOpenRefusesSecondStore(t *testing.T) {
	env := newEnv(t, Options{})
	if _, err := Open(filepath.Join(env.dir, "blobs"), env.db, Options{}); err == nil {
		t.Fatalf("second Open of one folder: got nil, want a lock error")
	}
}

func TestCloseAbortsFillsAndIsIdempotent(t *testing.T) {
	env := newEnv(t, Options{})
	s := env.store
	f, err := s.Begin(digestOf(content(27, 100), false))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := f.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("fill after Close: got %v, want %v", err, ErrClosed)
	}
	if _, err := s.Begin(digestOf(content(28, 100), false)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close: got %v, want %v", err, ErrClosed)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: got %v, want %v", err, ErrClosed)
	}
}
