package blob

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/store"
)

// openDB opens a real badger DB with the gateway's settings: synced
// writes and bounded memory.
func openDB(tb testing.TB, dir string) *badger.DB {
	tb.Helper()
	db, err := openBadgerDB(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

type badgerDB = badger.DB

func openBadgerDB(dir string) (*badger.DB, error) {
	// The gateway's store does the same before every open.
	if err := store.RemoveEmptyMemtables(dir, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	db, err := badger.Open(badgerOptions(dir))
	if err != nil {
		return nil, fmt.Errorf("opening badger in %s: %w", dir, err)
	}
	return db, nil
}

func badgerOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithMemTableSize(8 << 20).
		WithValueThreshold(64 << 10).
		WithNumMemtables(2).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20)
}

// testEnv is one data directory with its badger DB and store.
type testEnv struct {
	dir   string
	db    *badger.DB
	store *Store
}

// newEnv opens a store in a fresh temp dir; it is closed at cleanup.
func newEnv(tb testing.TB, opts Options) *testEnv {
	tb.Helper()
	dir := tb.TempDir()
	env := &testEnv{dir: dir, db: openDB(tb, filepath.Join(dir, "badger"))}
	tb.Cleanup(func() { env.db.Close() })
	env.open(tb, opts)
	return env
}

func (env *testEnv) open(tb testing.TB, opts Options) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(env.dir, "blobs"), env.db, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	env.store = s
	tb.Cleanup(func() { s.Close() })
	return s
}

// reopen closes the store (cleanly when clean is true) and opens it again.
func (env *testEnv) reopen(tb testing.TB, clean bool, opts Options) *Store {
	tb.Helper()
	if clean {
		if err := env.store.Close(); err != nil {
			tb.Fatalf("Close: %v", err)
		}
	} else {
		env.store.abandon()
	}
	return env.open(tb, opts)
}

// abandon stops the store without the clean-shutdown marker, as a crash
// would leave it, but releases the lock so it can be reopened in-process.
func (s *Store) abandon() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.m.unregister()
		s.lock.Close()
	})
}

// content returns n deterministic pseudo-random bytes for seed.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// digestOf returns the digest of b, with SHA-512 when withSHA512 is set.
func digestOf(b []byte, withSHA512 bool) Digest {
	s := sha256.Sum256(b)
	d := Digest{Length: int64(len(b)), SHA256: s[:]}
	if withSHA512 {
		h := sha512.Sum512(b)
		d.SHA512 = h[:]
	}
	return d
}

// fillWith runs a whole fill of b in chunks and commits it.
func fillWith(tb testing.TB, s *Store, b []byte) Digest {
	tb.Helper()
	d := digestOf(b, true)
	f, producer, err := s.BeginOrJoin(d)
	if err != nil {
		tb.Fatalf("Begin: %v", err)
	}
	if !producer {
		tb.Fatalf("Begin of a new blob: got producer false, want true")
	}
	for off := 0; off < len(b); off += 4096 {
		if _, err := f.Write(b[off:min(off+4096, len(b))]); err != nil {
			tb.Fatalf("Write: %v", err)
		}
	}
	if err := f.Commit(); err != nil {
		tb.Fatalf("Commit: %v", err)
	}
	return d
}

// readBlob opens a committed blob and returns its bytes.
func readBlob(tb testing.TB, s *Store, sha string) []byte {
	tb.Helper()
	f, size, err := s.Open(sha)
	if err != nil {
		tb.Fatalf("Open(%s): %v", sha, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatalf("reading %s: %v", sha, err)
	}
	if int64(len(b)) != size {
		tb.Fatalf("Open(%s): read %d bytes, size says %d", sha, len(b), size)
	}
	return b
}

func mustEqual(tb testing.TB, what string, got, want []byte) {
	tb.Helper()
	if !bytes.Equal(got, want) {
		tb.Fatalf("%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)", what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// metricValue returns the value of an unlabelled gauge or counter.
func metricValue(tb testing.TB, g prometheus.Gatherer, name string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	tb.Fatalf("metric %s not registered", name)
	return 0
}
