package policy

import (
	"sync"
	"testing"
	"time"
)

// TestDecisionCachesAgreeWithFreshEvaluators walks a clock across
// windows, a blackout and a daylight-saving change, and checks that one
// long-lived evaluator, with its schedule and window caches, decides
// exactly as a new evaluator does at every step.
func TestDecisionCachesAgreeWithFreshEvaluators(t *testing.T) {
	berlin := Config{Groups: []Group{
		{Name: "icu", Departments: []string{"ICU"}, Windows: []string{"Sun 01:30-03:30 Europe/Berlin", "cron 0 12 * * * 47m Europe/Berlin"},
			Blackouts: []string{"2026-10-26 Europe/Berlin"}},
	}}
	once := Config{Groups: []Group{
		{Name: "icu", Departments: []string{"ICU"}, Windows: []string{"2026-10-25 01:00-2026-10-25 04:00 Australia/Lord_Howe", "2026-10-26 10:00-11:00 UTC"}},
		{Name: "all", Blackouts: []string{"2026-10-27 12:00-2026-10-27 13:00 UTC"}},
	}}
	for name, cfg := range map[string]Config{"berlin": berlin, "one-time": once} {
		t.Run(name, func(t *testing.T) {
			clock := &steppingClock{t: mustTimeNoT("2026-10-24T00:00:00Z"), step: 7*time.Minute + 13*time.Second}
			cached, err := NewEvaluator(cfg, clock)
			if err != nil {
				t.Fatal(err)
			}
			d := baseDevice()
			releases := []Release{baseRelease(), baseRelease()}
			releases[1].Target, releases[1].InstallDuration = "infusion-pump/3.2.0/long.bin", 45*time.Minute
			for range 1200 { // about six days
				for _, r := range releases {
					got := cached.Decide(d, r)
					fresh, err := NewEvaluator(cfg, FixedClock{T: got.At})
					if err != nil {
						t.Fatal(err)
					}
					want := fresh.Decide(d, r)
					if got.Offer != want.Offer || got.Reasons[0] != want.Reasons[0] || !got.NextOpening.Equal(want.NextOpening) || !got.ClosesAt.Equal(want.ClosesAt) {
						t.Fatalf("at %s for %s: cached evaluator decided %v %v, fresh one %v %v", got.At, r.Target, got.Offer, got.Reasons[0], want.Offer, want.Reasons[0])
					}
				}
			}
		})
	}
}

// TestDecideConcurrentWithUpdates runs decisions while entitlements,
// approvals and rollouts are replaced; the race detector checks it.
func TestDecideConcurrentWithUpdates(t *testing.T) {
	now := mustTimeNoT("2026-03-10T01:30:00Z")
	e := newTestEvaluator(t, icuConfig(), now)
	_, priv := testKey(t)
	ents, err := ParseEntitlements(signedDocument(t, priv))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, r := baseDevice(), baseRelease()
			for i := range 300 {
				d.Serial = string(rune('A' + (i+w)%26))
				if dec := e.Decide(d, r); len(dec.Reasons) == 0 {
					t.Error("got a decision without reasons")
					return
				}
			}
		}()
	}
	for i := range 50 {
		e.SetApprovals([]Approval{{Target: "x", Group: "icu"}})
		_ = e.SetEntitlements(ents)
		ro, _ := NewRollout("r", baseRelease().Target, "3.2.0", "icu", []string{"Acme/SN1"}, Plan{}, now)
		if i%2 == 0 {
			ro, _ = ro.Apply(Event{Kind: EventStart, At: now})
		}
		e.PutRollout(ro)
	}
	wg.Wait()
}
