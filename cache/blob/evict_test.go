package blob

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock advances one second on every call, so that access order is
// strict and independent of the machine's speed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 3, 30, 1, 0, 0, 0, time.UTC)} }

func TestEvictionOrderAndPins(t *testing.T) {
	const size = 10_000
	tests := []struct {
		name string
		// setup runs on blobs 0..3 after they were filled in order.
		setup func(t *testing.T, s *Store, shas []string) (cleanup func())
		// want is which of blobs 0..3 remain after a fifth fill.
		want []int
	}{
		{"least recently filled goes", func(*testing.T, *Store, []string) func() { return func() {} }, []int{1, 2, 3}},
		{"read blob stays", func(t *testing.T, s *Store, shas []string) func() {
			readBlob(t, s, shas[0])
			return func() {}
		}, []int{0, 2, 3}},
		{"pinned blob stays", func(t *testing.T, s *Store, shas []string) func() {
			if err := s.Pin(shas[0], "rollout-1"); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}, []int{0, 2, 3}},
		{"open blob stays", func(t *testing.T, s *Store, shas []string) func() {
			f, _, err := s.Open(shas[0])
			if err != nil {
				t.Fatal(err)
			}
			return func() { f.Close() }
		}, []int{0, 2, 3}},
		{"unpinned blob goes again", func(t *testing.T, s *Store, shas []string) func() {
			if err := s.Pin(shas[0], "rollout-1"); err != nil {
				t.Fatal(err)
			}
			if err := s.Unpin(shas[0], "rollout-1"); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}, []int{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			clock := newClock()
			env := newEnv(t, Options{MaxBytes: 4 * size, Now: clock.Now, Registerer: reg})
			s := env.store
			var shas []string
			for i := range 4 {
				shas = append(shas, fillWith(t, s, content(uint64(100+i), size)).Hex())
			}
			cleanup := tc.setup(t, s, shas)
			defer cleanup()
			fillWith(t, s, content(200, size))
			var kept []int
			for i, sha := range shas {
				if s.Has(sha) {
					kept = append(kept, i)
				}
			}
			if !slices.Equal(kept, tc.want) {
				t.Fatalf("blobs kept: got %v, want %v", kept, tc.want)
			}
			if got := metricValue(t, reg, "wardgate_blob_evictions_total"); got != 1 {
				t.Fatalf("evictions: got %v, want 1", got)
			}
			if got := metricValue(t, reg, "wardgate_blob_stored_bytes"); got != 4*size {
				t.Fatalf("stored bytes: got %v, want %v", got, 4*size)
			}
		})
	}
}

func TestFillReaderHoldsBlob(t *testing.T) {
	const size = 10_000
	env := newEnv(t, Options{MaxBytes: 2 * size, Now: newClock().Now})
	s := env.store
	b := content(300, size)
	f, err := s.Begin(digestOf(b, false))
	if err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	// The follower has not finished: its blob is the oldest but open.
	other := fillWith(t, s, content(301, size))
	fillWith(t, s, content(302, size))
	if !s.Has(digestOf(b, false).Hex()) {
		t.Fatalf("blob followed by an open reader was evicted")
	}
	if s.Has(other.Hex()) {
		t.Fatalf("unopened older blob was kept, want it evicted")
	}
}

func TestNoSpace(t *testing.T) {
	const size = 10_000
	env := newEnv(t, Options{MaxBytes: 2 * size})
	s := env.store
	a := fillWith(t, s, content(400, size))
	if err := s.Pin(a.Hex(), "rollout-1"); err != nil {
		t.Fatal(err)
	}
	running, err := s.Begin(digestOf(content(401, size), false))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Abort(errors.New("test done"))
	u := s.Usage()
	want := Usage{StoredBytes: size, Blobs: 1, FillingBytes: size, Fills: 1, PinnedBytes: size, MaxBytes: 2 * size, FilesystemFree: u.FilesystemFree, Available: 0}
	if u != want {
		t.Fatalf("Usage: got %+v, want %+v", u, want)
	}
	if u.FilesystemFree <= 0 {
		t.Fatalf("FilesystemFree: got %d, want > 0", u.FilesystemFree)
	}
	tests := []struct {
		name   string
		length int64
	}{
		{"no evictable blob", 1},
		{"larger than the bound", 2*size + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := digestOf(content(402, int(min(tc.length, 100))), false)
			d.Length = tc.length
			if _, err := s.Begin(d); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("Begin of %d bytes: got %v, want %v", tc.length, err, ErrNoSpace)
			}
		})
	}
	if !s.Has(a.Hex()) {
		t.Fatalf("pinned blob was evicted by a refused fill")
	}
	running.Abort(errors.New("make room"))
	if err := s.Unpin(a.Hex(), "rollout-1"); err != nil {
		t.Fatal(err)
	}
	if got := s.Usage().Available; got != 2*size {
		t.Fatalf("Available after abort and unpin: got %d, want %d", got, 2*size)
	}
}

func TestPinsPersistAndValidate(t *testing.T) {
	env := newEnv(t, Options{})
	sha := hexOf(make([]byte, 32))
	for _, r := range []string{"rollout-2", "rollout-1", "release/4.2 approved"} {
		if err := env.store.Pin(sha, r); err != nil {
			t.Fatalf("Pin(%q): %v", r, err)
		}
	}
	if err := env.store.Unpin(sha, "rollout-2"); err != nil {
		t.Fatal(err)
	}
	s := env.reopen(t, true, Options{})
	if got, want := s.Pins(sha), []string{"release/4.2 approved", "rollout-1"}; !slices.Equal(got, want) {
		t.Fatalf("Pins after reopen: got %q, want %q", got, want)
	}
	tests := []struct {
		name, sha, reason string
	}{
		{"empty reason", sha, ""},
		{"control character", sha, "a\nb"},
		{"bad sha", "xyz", "r"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Pin(tc.sha, tc.reason); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Pin(%q, %q): got %v, want %v", tc.sha, tc.reason, err, ErrInvalid)
			}
		})
	}
}

func TestAccessTimesSurviveReopen(t *testing.T) {
	const size = 1000
	clock := newClock()
	env := newEnv(t, Options{Now: clock.Now})
	var shas []string
	for i := range 3 {
		shas = append(shas, fillWith(t, env.store, content(uint64(500+i), size)).Hex())
	}
	readBlob(t, env.store, shas[0])
	// Close writes the access times; the bounded store then evicts by them.
	env.reopen(t, true, Options{Now: clock.Now, MaxBytes: 3 * size})
	s := env.store
	fillWith(t, s, content(600, size))
	if s.Has(shas[1]) || !s.Has(shas[0]) || !s.Has(shas[2]) {
		t.Fatalf("Has of blobs 0, 1, 2 after reopen and one eviction: got %v %v %v, want true false true", s.Has(shas[0]), s.Has(shas[1]), s.Has(shas[2]))
	}
}

func TestMetricsTrackFills(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := newEnv(t, Options{Registerer: reg})
	f, err := env.store.Begin(digestOf(content(700, 10), false))
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "wardgate_blob_fills_in_progress"); got != 1 {
		t.Fatalf("fills in progress: got %v, want 1", got)
	}
	f.Abort(errors.New("test"))
	if got := metricValue(t, reg, "wardgate_blob_fills_in_progress"); got != 0 {
		t.Fatalf("fills in progress after Abort: got %v, want 0", got)
	}
	fillWith(t, env.store, content(701, 10))
	if got := metricValue(t, reg, "wardgate_blob_blobs"); got != 1 {
		t.Fatalf("blobs: got %v, want 1", got)
	}
	// Reopening registers the same metrics again on the same registry.
	env.reopen(t, true, Options{Registerer: reg})
	if got := metricValue(t, reg, "wardgate_blob_stored_bytes"); got != 10 {
		t.Fatalf("stored bytes after reopen: got %v, want 10", got)
	}
}
