package discovery

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSweepStaleThenRetired(t *testing.T) {
	clock := newFakeClock()
	inv := openTestInventory(t, openTestDB(t), clock)
	ctx := context.Background()
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))

	steps := []struct {
		advance   time.Duration
		wantState State
		wantKinds []string
	}{
		{30 * time.Minute, StateActive, nil},
		{31 * time.Minute, StateStale, []string{EventStale}},
		{time.Hour, StateStale, nil},
		{23 * time.Hour, StateRetired, []string{EventRetired}},
		{48 * time.Hour, StateRetired, nil},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		events, err := inv.Sweep(ctx)
		if err != nil {
			t.Fatalf("step %d: Sweep: %v", i, err)
		}
		if got := kinds(events); !slices.Equal(got, st.wantKinds) {
			t.Errorf("step %d: events %v, want %v", i, got, st.wantKinds)
		}
		d, err := inv.Get(ctx, "Acme", "S1")
		if err != nil {
			t.Fatalf("step %d: Get: %v", i, err)
		}
		if d.State != st.wantState {
			t.Errorf("step %d: state %s, want %s", i, d.State, st.wantState)
		}
	}
	hist, err := inv.History(ctx, "Acme", "S1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if got, want := kinds(hist), []string{EventDiscovered, EventStale, EventRetired}; !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v (never deleted)", got, want)
	}
}

func TestTouchKeepsLastSeenInMemoryThenFlushes(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	db := openTestDBAt(t, dir)
	reg := prometheus.NewRegistry()
	inv, err := OpenInventory(db, InventoryOptions{TouchInterval: time.Minute, Clock: clock.Now, Registerer: reg})
	if err != nil {
		t.Fatalf("OpenInventory: %v", err)
	}
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	clock.Advance(10 * time.Second)
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	if got := counterValue(t, inv.metrics.touches); got != 1 {
		t.Errorf("touches = %v, want 1", got)
	}
	d, err := inv.Get(context.Background(), "Acme", "S1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !d.LastSeen.Equal(clock.Now()) {
		t.Errorf("LastSeen = %v, want in-memory %v", d.LastSeen, clock.Now())
	}
	if err := inv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	reopened, err := OpenInventory(db, InventoryOptions{Clock: clock.Now})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	d, err = reopened.Get(context.Background(), "Acme", "S1")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if !d.LastSeen.Equal(clock.Now()) {
		t.Errorf("LastSeen after Close and reopen = %v, want %v", d.LastSeen, clock.Now())
	}
	if got := counterValue(t, inv.metrics.events.WithLabelValues(EventDiscovered)); got != 1 {
		t.Errorf("discovered events metric = %v, want 1", got)
	}
}

func TestInventoryRunSweepsAndCloses(t *testing.T) {
	clock := newFakeClock()
	db := openTestDB(t)
	got := make(chan Event, 4)
	inv, err := OpenInventory(db, InventoryOptions{
		StaleAfter: time.Hour, RetireAfter: 2 * time.Hour, SweepInterval: 10 * time.Millisecond, Clock: clock.Now,
		OnEvent: func(e Event) { got <- e },
	})
	if err != nil {
		t.Fatalf("OpenInventory: %v", err)
	}
	mustObserve(t, inv, sighting("Acme", "S1", "vlan101", "Pump", "10.1.0.5", clock.Now()))
	done := make(chan error, 1)
	go func() { done <- inv.Run(context.Background()) }()
	clock.Advance(90 * time.Minute)
	select {
	case e := <-got:
		if e.Kind != EventStale {
			t.Errorf("OnEvent kind = %s, want %s", e.Kind, EventStale)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no sweep event within 10s")
	}
	if err := inv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := inv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}
