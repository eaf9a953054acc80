package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// guard bounds a wait that only a broken implementation would make
// endless; it is a deadlock check, not a timing assertion.
const guard = 30 * time.Second

func tmpFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestFailedFillsNeverVisible(t *testing.T) {
	b := content(3, 20_000)
	good := digestOf(b, true)
	flipped := bytes.Clone(b)
	flipped[12345] ^= 1
	wrong512 := digestOf(b, true)
	wrong512.SHA512 = bytes.Clone(wrong512.SHA512)
	wrong512.SHA512[0] ^= 1
	tests := []struct {
		name    string
		digest  Digest
		write   []byte
		abort   error
		wantErr error
	}{
		{"sha256 mismatch", good, flipped, nil, ErrHashMismatch},
		{"sha512 mismatch", wrong512, b, nil, ErrHashMismatch},
		{"short write", good, b[:len(b)-1], nil, ErrLength},
		{"empty write", good, nil, nil, ErrLength},
		{"long write", good, append(bytes.Clone(b), 0), nil, ErrLength},
		{"aborted", good, b[:100], os.ErrDeadlineExceeded, os.ErrDeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Options{})
			s := env.store
			f, err := s.Begin(tc.digest)
			if err != nil {
				t.Fatal(err)
			}
			r := f.NewReader()
			defer r.Close()
			readErr := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(r)
				readErr <- err
			}()
			_, werr := f.Write(tc.write)
			var err2 error
			if tc.abort != nil {
				f.Abort(tc.abort)
			} else if werr == nil {
				err2 = f.Commit()
			} else {
				err2 = werr
			}
			if tc.abort == nil && !errors.Is(err2, tc.wantErr) {
				t.Fatalf("Write/Commit: got %v, want %v", err2, tc.wantErr)
			}
			if err := <-readErr; !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrAborted) {
				t.Fatalf("follower: got %v, want %v and %v", err, tc.wantErr, ErrAborted)
			}
			if err := f.Commit(); err == nil {
				t.Fatalf("Commit after failure: got nil, want error")
			}
			if s.Has(good.Hex()) {
				t.Fatalf("Has after failed fill: got true, want false")
			}
			if _, _, err := s.Open(good.Hex()); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open after failed fill: got %v, want %v", err, ErrNotFound)
			}
			if _, err := os.Stat(s.blobPath(good.Hex())); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("blob file after failed fill: got %v, want not exist", err)
			}
			if names := tmpFiles(t, s); len(names) != 0 {
				t.Fatalf("temp files after failed fill: got %v, want none", names)
			}
			if late := f.NewReader(); late != nil {
				if _, err := late.Read(make([]byte, 1)); !errors.Is(err, ErrAborted) {
					t.Fatalf("reader created after failure: got %v, want %v", err, ErrAborted)
				}
				late.Close()
			}
			// A correct fill of the same blob still works afterwards.
			mustEqual(t, "refill", readBlob(t, s, fillWith(t, s, b).Hex()), b)
		})
	}
}

func TestBeginCoalescesAndConflicts(t *testing.T) {
	env := newEnv(t, Options{})
	s := env.store
	b := content(4, 1000)
	d := digestOf(b, true)
	f1, p1, err := s.BeginOrJoin(d)
	if err != nil || !p1 {
		t.Fatalf("first BeginOrJoin: got producer %v err %v, want true nil", p1, err)
	}
	noSHA512 := d
	noSHA512.SHA512 = nil
	f2, p2, err := s.BeginOrJoin(noSHA512)
	if err != nil || p2 || f2 != f1 {
		t.Fatalf("second BeginOrJoin: got fill %p producer %v err %v, want %p false nil", f2, p2, err, f1)
	}
	if got := s.Running(d.Hex()); got != f1 {
		t.Fatalf("Running: got %p, want %p", got, f1)
	}
	longer := d
	longer.Length++
	if _, err := s.Begin(longer); !errors.Is(err, ErrDigestConflict) {
		t.Fatalf("Begin with another length: got %v, want %v", err, ErrDigestConflict)
	}
	if _, err := f1.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f1.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f1.Done():
	default:
		t.Fatalf("Done after Commit: not closed")
	}
	if err := f1.Err(); err != nil {
		t.Fatalf("Err after Commit: got %v, want nil", err)
	}
	if _, err := s.Begin(d); !errors.Is(err, ErrExists) {
		t.Fatalf("Begin of a stored blob: got %v, want %v", err, ErrExists)
	}
	if _, err := s.Begin(longer); !errors.Is(err, ErrDigestConflict) {
		t.Fatalf("Begin of a stored blob with another length: got %v, want %v", err, ErrDigestConflict)
	}
	if s.Running(d.Hex()) != nil {
		t.Fatalf("Running after Commit: got a fill, want nil")
	}
	f1.Abort(errors.New("late abort"))
	mustEqual(t, "blob after late Abort", readBlob(t, s, d.Hex()), b)
}

func TestBeginRejectsBadDigest(t *testing.T) {
	env := newEnv(t, Options{})
	tests := []struct {
		name string
		d    Digest
	}{
		{"no sha256", Digest{Length: 1}},
		{"short sha256", Digest{Length: 1, SHA256: make([]byte, 31)}},
		{"short sha512", Digest{Length: 1, SHA256: make([]byte, 32), SHA512: make([]byte, 63)}},
		{"negative length", Digest{Length: -1, SHA256: make([]byte, 32)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := env.store.Begin(tc.d); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Begin: got %v, want %v", err, ErrInvalid)
			}
		})
	}
}

// TestConcurrentFollowers starts followers before, during and after the
// fill and checks that all of them get the exact bytes.
func TestConcurrentFollowers(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(5, 3<<20+17)
	f, err := env.store.Begin(digestOf(b, true))
	if err != nil {
		t.Fatal(err)
	}
	const followers = 24
	chunk := 64 << 10
	chunks := (len(b) + chunk - 1) / chunk
	results := make([][]byte, followers)
	var wg sync.WaitGroup
	start := func(i int) {
		r := f.NewReader()
		wg.Go(func() {
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Errorf("follower %d: %v", i, err)
			}
			results[i] = got
		})
	}
	// Follower i joins before chunk i*chunks/followers is written: the
	// first ones before any byte, the last ones near the end.
	next := 0
	for c := range chunks {
		for next < followers && next*chunks/followers <= c {
			start(next)
			next++
		}
		off := c * chunk
		if _, err := f.Write(b[off:min(off+chunk, len(b))]); err != nil {
			t.Fatal(err)
		}
	}
	for ; next < followers; next++ {
		start(next)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, got := range results {
		mustEqual(t, fmt.Sprintf("follower %d", i), got, b)
	}
	// A reader made from the fill after it committed reads the blob too.
	r := f.NewReader()
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "reader after commit", got, b)
}

// TestLateJoinerGetsBytesBeforeEnd joins after half the blob is written
// and must receive that half while the fill is still open.
func TestLateJoinerGetsBytesBeforeEnd(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(6, 200_000)
	f, err := env.store.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	half := len(b) / 2
	if _, err := f.Write(b[:half]); err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	gotHalf := make(chan []byte)
	rest := make(chan []byte)
	go func() {
		first := make([]byte, half)
		if _, err := io.ReadFull(r, first); err != nil {
			t.Errorf("reading first half: %v", err)
		}
		gotHalf <- first
		more, err := io.ReadAll(r)
		if err != nil {
			t.Errorf("reading rest: %v", err)
		}
		rest <- more
	}()
	select {
	case first := <-gotHalf:
		mustEqual(t, "first half", first, b[:half])
	case <-time.After(guard):
		t.Fatalf("late joiner got no bytes while the fill was open")
	}
	select {
	case <-f.Done():
		t.Fatalf("fill ended before the rest was written")
	default:
	}
	if _, err := f.Write(b[half:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "rest", <-rest, b[half:])
}

// TestFollowerWaitsForVerification: a follower that has every byte still
// gets no end of file until the hashes are checked.
func TestFollowerWaitsForVerification(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(7, 5000)
	f, err := env.store.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	all := make([]byte, len(b))
	if _, err := io.ReadFull(r, all); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error)
	go func() {
		_, err := r.Read(make([]byte, 1))
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("Read at the end before Commit: got %v, want it to wait", err)
	default:
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; err != io.EOF {
		t.Fatalf("Read at the end after Commit: got %v, want EOF", err)
	}
}

func TestReaderCloseAndContextUnblock(t *testing.T) {
	env := newEnv(t, Options{})
	f, err := env.store.Begin(digestOf(content(8, 10), false))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort(errors.New("test done"))
	ctx, cancel := context.WithCancel(context.Background())
	byCtx := f.NewReaderContext(ctx)
	byClose := f.NewReader()
	errs := make(chan error, 2)
	go func() { _, err := byCtx.Read(make([]byte, 1)); errs <- err }()
	go func() { _, err := byClose.Read(make([]byte, 1)); errs <- err }()
	cancel()
	byClose.Close()
	byCtx.Close()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Read: got %v, want %v or %v", err, context.Canceled, ErrClosed)
		}
	}
}

func TestResumeAndRestart(t *testing.T) {
	b := content(9, 100_000)
	corrupt := bytes.Clone(b)
	corrupt[60_000] ^= 0xff
	tests := []struct {
		name string
		// first is what the producer wrote before restarting from zero
		// with the correct bytes.
		first []byte
		// wantAhead is the error of a follower that had read 80 000 bytes
		// before the restart.
		wantAhead error
	}{
		{"same bytes", b, nil},
		{"different bytes", corrupt, ErrRestarted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Options{})
			f, err := env.store.Begin(digestOf(b, true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.first[:50_000]); err != nil {
				t.Fatal(err)
			}
			// Resume as after a Range request from Written.
			if got := f.Written(); got != 50_000 {
				t.Fatalf("Written: got %d, want 50000", got)
			}
			if _, err := f.Write(tc.first[50_000:80_000]); err != nil {
				t.Fatal(err)
			}
			ahead := f.NewReader()
			defer ahead.Close()
			if _, err := io.ReadFull(ahead, make([]byte, 80_000)); err != nil {
				t.Fatal(err)
			}
			behind := f.NewReader()
			defer behind.Close()
			if _, err := io.ReadFull(behind, make([]byte, 10_000)); err != nil {
				t.Fatal(err)
			}
			if err := f.Restart(); err != nil {
				t.Fatal(err)
			}
			if got := f.Written(); got != 0 {
				t.Fatalf("Written after Restart: got %d, want 0", got)
			}
			aheadDone := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(ahead)
				aheadDone <- err
			}()
			if _, err := f.Write(b); err != nil {
				t.Fatal(err)
			}
			if err := f.Commit(); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if err := <-aheadDone; !errors.Is(err, tc.wantAhead) || (err == nil) != (tc.wantAhead == nil) {
				t.Fatalf("follower past the difference: got %v, want %v", err, tc.wantAhead)
			}
			rest, err := io.ReadAll(behind)
			if err != nil {
				t.Fatalf("follower before the difference: %v", err)
			}
			mustEqual(t, "follower before the difference", rest, b[10_000:])
			mustEqual(t, "committed", readBlob(t, env.store, digestOf(b, false).Hex()), b)
		})
	}
}

// TestServeContentFromFill serves a Range of a running fill through
// http.ServeContent, as the gateway does for a device that joins late.
func TestServeContentFromFill(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(10, 300_000)
	f, err := env.store.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b[:100_000]); err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.Header.Set("Range", "bytes=150000-249999")
		rec := httptest.NewRecorder()
		http.ServeContent(rec, req, "", time.Time{}, r)
		done <- rec
	}()
	if _, err := f.Write(b[100_000:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	rec := <-done
	if rec.Code != http.StatusPartialContent {
		t.Fatalf("status: got %d, want 206", rec.Code)
	}
	if got, want := rec.Header().Get("Content-Range"), "bytes 150000-249999/300000"; got != want {
		t.Fatalf("Content-Range: got %q, want %q", got, want)
	}
	mustEqual(t, "range body", rec.Body.Bytes(), b[150_000:250_000])
}

func TestOpenFileSupportsSendfile(t *testing.T) {
	env := newEnv(t, Options{})
	b := content(11, 70_000)
	d := fillWith(t, env.store, b)
	f, size, err := env.store.Open(d.Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if size != int64(len(b)) {
		t.Fatalf("size: got %d, want %d", size, len(b))
	}
	if _, err := f.SyscallConn(); err != nil {
		t.Fatalf("SyscallConn on the opened blob: %v", err)
	}
	if got, want := f.Name(), filepath.Join(env.store.blobDir, d.Hex()[:2], d.Hex()); got != want {
		t.Fatalf("path: got %s, want %s", got, want)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Fatalf("second Close: got nil, want an error")
	}
}
