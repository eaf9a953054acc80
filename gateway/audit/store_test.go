package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/store"
)

func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening badger in %s: %v", dir, err)
	}
	return db
}

// newChain writes n records an hour apart starting at base into a fresh
// store and closes it, returning its folder.
func newChain(t *testing.T, n int, base time.Time) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	db := openDB(t, dir)
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		err := s.Record(context.Background(), Record{
			Time: base.Add(time.Duration(i) * time.Hour), Actor: "device:Acme/SN-" + fmt.Sprint(i%3),
			Action: []string{"device.checkin", "release.offer", "approval.grant"}[i%3], Subject: "Acme/SN-" + fmt.Sprint(i%3),
			Details: map[string]string{"version": fmt.Sprintf("3.%d.0", i), "note": `quote " and ] and \`},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyDir copies a closed badger folder so each case tampers with its own.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "db")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatalf("copying store: %v", err)
	}
	return dst
}

func readEntry(t *testing.T, txn *badger.Txn, seq uint64) Entry {
	t.Helper()
	item, err := txn.Get(seqKey(seq))
	if err != nil {
		t.Fatalf("reading entry %d: %v", seq, err)
	}
	var e Entry
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
		t.Fatal(err)
	}
	return e
}

func putEntry(t *testing.T, txn *badger.Txn, key uint64, e Entry) {
	t.Helper()
	data, _ := json.Marshal(e)
	if err := txn.Set(seqKey(key), data); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesFirstBrokenRecord(t *testing.T) {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	const n = 12
	pristine := newChain(t, n, base)
	cases := []struct {
		name    string
		tamper  func(t *testing.T, txn *badger.Txn)
		wantSeq uint64
		wantMsg string
	}{
		{"untouched", func(*testing.T, *badger.Txn) {}, 0, ""},
		{"detail altered", func(t *testing.T, txn *badger.Txn) {
			e := readEntry(t, txn, 5)
			e.Record.Details["version"] = "9.9.9"
			putEntry(t, txn, 5, e)
		}, 5, "does not match its hash"},
		{"actor altered and rehashed", func(t *testing.T, txn *badger.Txn) {
			e := readEntry(t, txn, 4)
			e.Record.Actor = "token:intruder"
			e.Hash = entryHash(e)
			putEntry(t, txn, 4, e)
		}, 5, "does not link"},
		{"time altered", func(t *testing.T, txn *badger.Txn) {
			e := readEntry(t, txn, 9)
			e.Record.Time = e.Record.Time.Add(-time.Minute)
			putEntry(t, txn, 9, e)
		}, 9, "does not match its hash"},
		{"two records swapped", func(t *testing.T, txn *badger.Txn) {
			a, b := readEntry(t, txn, 3), readEntry(t, txn, 4)
			putEntry(t, txn, 3, b)
			putEntry(t, txn, 4, a)
		}, 3, "reordered"},
		{"swapped and renumbered", func(t *testing.T, txn *badger.Txn) {
			a, b := readEntry(t, txn, 6), readEntry(t, txn, 7)
			a.Seq, b.Seq = 7, 6
			putEntry(t, txn, 6, b)
			putEntry(t, txn, 7, a)
		}, 6, "does not link"},
		{"middle record deleted", func(t *testing.T, txn *badger.Txn) {
			if err := txn.Delete(seqKey(7)); err != nil {
				t.Fatal(err)
			}
		}, 8, "entries 7 before it are missing"},
		{"first records deleted", func(t *testing.T, txn *badger.Txn) {
			for _, s := range []uint64{1, 2} {
				if err := txn.Delete(seqKey(s)); err != nil {
					t.Fatal(err)
				}
			}
		}, 3, "entries 1 to 2 before it are missing"},
		{"last records deleted", func(t *testing.T, txn *badger.Txn) {
			for _, s := range []uint64{11, 12} {
				if err := txn.Delete(seqKey(s)); err != nil {
					t.Fatal(err)
				}
			}
		}, 11, "entries 11 to 12 were deleted"},
		{"record made unreadable", func(t *testing.T, txn *badger.Txn) {
			if err := txn.Set(seqKey(2), []byte("{not json")); err != nil {
				t.Fatal(err)
			}
		}, 2, "unreadable"},
		{"record replaced and rehashed", func(t *testing.T, txn *badger.Txn) {
			e := readEntry(t, txn, 10)
			e.Record.Action = "approval.revoke"
			e.Hash = entryHash(e)
			putEntry(t, txn, 10, e)
		}, 11, "does not link"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, pristine)
			db := openDB(t, dir)
			t.Cleanup(func() { _ = db.Close() })
			if err := db.Update(func(txn *badger.Txn) error { tc.tamper(t, txn); return nil }); err != nil {
				t.Fatal(err)
			}
			s, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Verify(context.Background())
			if tc.wantSeq == 0 {
				if err != nil || got != n {
					t.Fatalf("Verify = %d, %v; want %d, nil", got, err, n)
				}
				return
			}
			var be *BrokenError
			if !errors.As(err, &be) || !errors.Is(err, ErrBroken) {
				t.Fatalf("Verify error = %v; want a BrokenError wrapping ErrBroken", err)
			}
			if be.Seq != tc.wantSeq {
				t.Errorf("Verify named entry %d; want %d (%v)", be.Seq, tc.wantSeq, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), fmt.Sprintf("entry %d", tc.wantSeq)) {
				t.Errorf("Verify error %q; want it to name entry %d and say %q", err, tc.wantSeq, tc.wantMsg)
			}
		})
	}
}

func TestPruneKeepsChainVerifiable(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := newChain(t, 20, base)
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name        string
		cutoff      time.Time
		limit       uint64
		wantRemoved int
		wantHeld    int
	}{
		{"nothing old enough", base, NoLimit, 0, 0},
		{"held back by forwarder", base.Add(10 * time.Hour), 3, 3, 7},
		{"rest of the old ones", base.Add(10 * time.Hour), NoLimit, 7, 0},
	}
	for _, tc := range cases {
		res, err := s.Prune(ctx, tc.cutoff, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Removed != tc.wantRemoved || res.HeldBack != tc.wantHeld {
			t.Errorf("%s: removed %d, held back %d; want %d and %d", tc.name, res.Removed, res.HeldBack, tc.wantRemoved, tc.wantHeld)
		}
		if _, err := s.Verify(ctx); err != nil {
			t.Errorf("%s: chain no longer verifies: %v", tc.name, err)
		}
	}
	a, ok, err := s.Anchor()
	if err != nil || !ok || a.Seq != 10 {
		t.Errorf("anchor = %+v, %t, %v; want entry 10", a, ok, err)
	}
	var prunes int
	_ = s.Scan(ctx, func(e Entry) bool {
		if e.Record.Action == "audit.prune" {
			prunes++
		}
		return true
	})
	if prunes != 2 {
		t.Errorf("found %d audit.prune records; want 2, one per prune that removed entries", prunes)
	}
	// Deleting the first entry after the anchor is still detected.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(seqKey(11)) }); err != nil {
		t.Fatal(err)
	}
	var be *BrokenError
	if _, err := s.Verify(ctx); !errors.As(err, &be) || be.Seq != 12 {
		t.Errorf("after deleting entry 11: Verify = %v; want entry 12 named", err)
	}
}

func TestExportRangeFormats(t *testing.T) {
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	dir := newChain(t, 10, base)
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := Filter{From: base.Add(2 * time.Hour), To: base.Add(7 * time.Hour)}

	var jl bytes.Buffer
	res, err := s.Export(ctx, &jl, FormatJSONL, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 5 || res.FirstSeq != 3 || res.LastSeq != 7 {
		t.Errorf("JSON lines export = %+v; want entries 3 to 7", res)
	}
	n, gaps, err := VerifyExport(bytes.NewReader(jl.Bytes()))
	if err != nil || n != 5 || gaps != 0 {
		t.Errorf("VerifyExport = %d, %d gaps, %v; want 5, 0, nil", n, gaps, err)
	}
	tampered := bytes.Replace(jl.Bytes(), []byte(`"3.4.0"`), []byte(`"3.4.1"`), 1)
	var be *BrokenError
	if _, _, err := VerifyExport(bytes.NewReader(tampered)); !errors.As(err, &be) || be.Seq != 5 {
		t.Errorf("VerifyExport of a changed export = %v; want entry 5 named", err)
	}

	var cb bytes.Buffer
	if _, err := s.Export(ctx, &cb, FormatCSV, f, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatalf("CSV export does not parse: %v", err)
	}
	if len(rows) != 6 || rows[0][0] != "seq" || rows[1][0] != "3" {
		t.Fatalf("CSV export has %d rows starting %v; want a header and 5 rows from seq 3", len(rows), rows[0])
	}
	var details map[string]string
	if err := json.Unmarshal([]byte(rows[1][5]), &details); err != nil || details["note"] != `quote " and ] and \` {
		t.Errorf("CSV details column %q does not round-trip: %v", rows[1][5], err)
	}

	page, err := s.Query(ctx, Filter{Action: "approval"}, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 || page.Entries[0].Seq != 9 || page.Entries[1].Seq != 6 || page.Next != 3 {
		t.Errorf("Query approval page: %d entries, next %d; want seq 9 and 6, next 3", len(page.Entries), page.Next)
	}
}

func FuzzVerifyExport(f *testing.F) {
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	dir := newChainF(f, base)
	db := openDBF(f, dir)
	s, _ := Open(db)
	var buf bytes.Buffer
	_, _ = s.Export(context.Background(), &buf, FormatJSONL, Filter{}, nil)
	_ = db.Close()
	f.Add(buf.Bytes())
	f.Add([]byte(`{"seq":1,"record":{},"prev":"","hash":"x"}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, _, err := VerifyExport(bytes.NewReader(data))
		if err == nil && n > 0 {
			// Whatever verifies must re-encode to entries whose hashes hold.
			dec := json.NewDecoder(bytes.NewReader(data))
			for {
				var e Entry
				if dec.Decode(&e) != nil {
					break
				}
				if entryHash(e) != e.Hash {
					t.Fatalf("entry %d passed with a wrong hash", e.Seq)
				}
			}
		}
	})
}

func newChainF(f *testing.F, base time.Time) string {
	dir := filepath.Join(f.TempDir(), "db")
	db := openDBF(f, dir)
	s, _ := Open(db)
	for i := range 4 {
		_ = s.Record(context.Background(), Record{Time: base.Add(time.Duration(i) * time.Minute), Actor: "gateway", Action: "device.checkin", Subject: "Acme/1"})
	}
	_ = db.Close()
	return dir
}

func openDBF(f *testing.F, dir string) *badger.DB {
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	return db
}

func TestPruneInterruptedStillVerifies(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := newChain(t, 10, base)
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A prune of entries 1 to 6 that stopped after its first batch: the
	// anchor is set and entries 4 to 6 are still there.
	var e6 Entry
	_ = db.View(func(txn *badger.Txn) error { e6 = readEntry(t, txn, 6); return nil })
	anchor, _ := json.Marshal(Link{Seq: 6, Hash: e6.Hash})
	err = db.Update(func(txn *badger.Txn) error {
		for _, k := range []uint64{1, 2, 3} {
			if err := txn.Delete(seqKey(k)); err != nil {
				return err
			}
		}
		return txn.Set([]byte(anchorKey), anchor)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Verify(ctx); err != nil || n != 4 {
		t.Fatalf("Verify after an interrupted prune = %d, %v; want 4 entries and no error", n, err)
	}
	res, err := s.Prune(ctx, base, NoLimit)
	if err != nil || res.Removed != 0 {
		t.Fatalf("Prune = %+v, %v; want nothing counted as removed", res, err)
	}
	left := 0
	_ = s.Scan(ctx, func(e Entry) bool {
		if e.Seq <= 6 {
			left++
		}
		return true
	})
	if left != 0 {
		t.Errorf("%d entries up to the anchor are left after the next prune, want 0", left)
	}
	if n, err := s.Verify(ctx); err != nil || n != 4 {
		t.Errorf("Verify after cleanup = %d, %v; want 4 and no error", n, err)
	}
}

func TestConcurrentRecordsShareCommits(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				if err := s.Record(context.Background(), Record{Actor: fmt.Sprint("writer-", w), Action: "device.checkin", Subject: fmt.Sprint(i)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Verify(context.Background()); err != nil || n != writers*each {
		t.Errorf("Verify = %d, %v; want %d and no error", n, err, writers*each)
	}
	if h := s.Head(); h.Seq != writers*each {
		t.Errorf("head is entry %d, want %d", h.Seq, writers*each)
	}
	// The chain reopens at the same head.
	again, err := Open(db)
	if err != nil || again.Head() != s.Head() {
		t.Errorf("reopened head %+v, %v; want %+v", again.Head(), err, s.Head())
	}
}

func TestFailedCommitKeepsHead(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Record(ctx, Record{Actor: "gateway", Action: "config.change", Subject: "x"}); err != nil {
		t.Fatal(err)
	}
	before := s.Head()
	_ = db.Close()
	if err := s.Record(ctx, Record{Actor: "gateway", Action: "config.change", Subject: "y"}); err == nil {
		t.Fatal("Record on a closed database succeeded")
	}
	if got := s.Head(); got != before {
		t.Errorf("head after a failed commit = %+v, want %+v", got, before)
	}
	s.mu.Lock()
	next, head := s.next, s.head
	s.mu.Unlock()
	if next != before.Seq+1 || head != before.Hash {
		t.Errorf("chain continues at entry %d after %q, want entry %d after the last durable one", next, head, before.Seq+1)
	}
}
