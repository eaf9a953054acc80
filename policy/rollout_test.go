package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var rolloutT0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func at(h int) time.Time { return rolloutT0.Add(time.Duration(h) * time.Hour) }

// rolloutFixture builds a rollout of four devices in a one-device canary
// wave and a final wave of three, and returns it with the canary's key.
func rolloutFixture(t *testing.T, state RolloutState) (Rollout, string) {
	t.Helper()
	devices := []string{"Acme/SN1", "Acme/SN2", "Acme/SN3", "Acme/SN4"}
	r, err := NewRollout("r1", "pump/3.2.0/image.bin", "3.2.0", "icu", devices, Plan{Waves: []WaveSize{{Count: 1}}}, rolloutT0)
	if err != nil {
		t.Fatal(err)
	}
	if state == RolloutPending {
		waves, _ := assignWaves(r.ID, devices, r.Plan)
		for k, w := range waves {
			if w == 0 {
				return r, k
			}
		}
	}
	r, _ = r.Apply(Event{Kind: EventStart, At: at(0)})
	canary := ""
	for k, d := range r.Devices {
		if d.Wave == 0 {
			canary = k
		}
	}
	switch state {
	case RolloutHalted:
		r, _ = r.Apply(Event{Kind: EventInstall, At: at(1), Device: canary, OK: false, Detail: "flash verify error"})
	case RolloutCompleted:
		r, _ = r.Apply(Event{Kind: EventCheckIn, At: at(1), Device: canary, Version: "3.2.0"})
		var evs []Event
		for _, k := range devices {
			evs = append(evs, Event{Kind: EventCheckIn, At: at(2), Device: k, Version: "3.2.0"})
		}
		r, _ = r.Apply(evs...)
	case RolloutCancelled:
		r, _ = r.Apply(Event{Kind: EventCancel, At: at(1)})
	}
	if r.State != state {
		t.Fatalf("fixture: got state %s, want %s", r.State, state)
	}
	return r, canary
}

// summary renders transitions as "rollout:from>to" and "KEY:from>to",
// with the canary shown as "canary" and the joining device as "new".
func summary(ts []Transition, canary string) []string {
	var out []string
	for _, tr := range ts {
		who := "rollout"
		switch tr.Device {
		case "":
		case canary:
			who = "canary"
		case "Acme/NEW":
			who = "new"
		default:
			who = "other"
		}
		out = append(out, who+":"+tr.From+">"+tr.To)
	}
	return out
}

func TestRolloutStateEventTable(t *testing.T) {
	events := map[string]func(canary string) Event{
		"start":          func(string) Event { return Event{Kind: EventStart, At: at(5)} },
		"cancel":         func(string) Event { return Event{Kind: EventCancel, At: at(5)} },
		"resume":         func(string) Event { return Event{Kind: EventResume, At: at(5)} },
		"tick":           func(string) Event { return Event{Kind: EventTick, At: at(5)} },
		"join":           func(string) Event { return Event{Kind: EventJoin, At: at(5), Device: "Acme/NEW"} },
		"leave":          func(c string) Event { return Event{Kind: EventLeave, At: at(5), Device: c} },
		"checkin-target": func(c string) Event { return Event{Kind: EventCheckIn, At: at(5), Device: c, Version: "3.2.0"} },
		"checkin-other":  func(c string) Event { return Event{Kind: EventCheckIn, At: at(5), Device: c, Version: "3.1.0"} },
		"install-ok":     func(c string) Event { return Event{Kind: EventInstall, At: at(5), Device: c, OK: true} },
		"install-failed": func(c string) Event { return Event{Kind: EventInstall, At: at(5), Device: c, Detail: "crc"} },
		"retry":          func(c string) Event { return Event{Kind: EventRetry, At: at(5), Device: c} },
	}
	three := func(s string) []string { return []string{s, s, s} }
	tests := []struct {
		state RolloutState
		event string
		want  RolloutState
		trans []string
	}{
		{RolloutPending, "start", RolloutRunning, []string{"rollout:pending>running", "canary:waiting>offered"}},
		{RolloutPending, "cancel", RolloutCancelled, []string{"rollout:pending>cancelled"}},
		{RolloutPending, "resume", RolloutPending, nil},
		{RolloutPending, "tick", RolloutPending, nil},
		{RolloutPending, "join", RolloutPending, []string{"new:>waiting"}},
		{RolloutPending, "leave", RolloutPending, []string{"canary:waiting>removed"}},
		{RolloutPending, "checkin-target", RolloutPending, []string{"canary:waiting>updated"}},
		{RolloutPending, "checkin-other", RolloutPending, nil},
		{RolloutPending, "install-ok", RolloutPending, []string{"canary:waiting>installed"}},
		{RolloutPending, "install-failed", RolloutPending, []string{"canary:waiting>failed"}},
		{RolloutPending, "retry", RolloutPending, nil},

		{RolloutRunning, "start", RolloutRunning, nil},
		{RolloutRunning, "cancel", RolloutCancelled, []string{"rollout:running>cancelled"}},
		{RolloutRunning, "resume", RolloutRunning, nil},
		{RolloutRunning, "tick", RolloutRunning, nil},
		{RolloutRunning, "join", RolloutRunning, []string{"new:>waiting"}},
		{RolloutRunning, "leave", RolloutRunning, append([]string{"canary:offered>removed"}, three("other:waiting>offered")...)},
		{RolloutRunning, "checkin-target", RolloutRunning, append([]string{"canary:offered>updated"}, three("other:waiting>offered")...)},
		{RolloutRunning, "checkin-other", RolloutRunning, nil},
		{RolloutRunning, "install-ok", RolloutRunning, []string{"canary:offered>installed"}},
		{RolloutRunning, "install-failed", RolloutHalted, []string{"canary:offered>failed", "rollout:running>halted"}},
		{RolloutRunning, "retry", RolloutRunning, nil},

		{RolloutHalted, "start", RolloutHalted, nil},
		{RolloutHalted, "cancel", RolloutCancelled, []string{"rollout:halted>cancelled"}},
		{RolloutHalted, "resume", RolloutRunning, append([]string{"rollout:halted>running"}, three("other:waiting>offered")...)},
		{RolloutHalted, "tick", RolloutHalted, nil},
		{RolloutHalted, "join", RolloutHalted, []string{"new:>waiting"}},
		{RolloutHalted, "leave", RolloutHalted, nil},
		{RolloutHalted, "checkin-target", RolloutHalted, []string{"canary:failed>updated"}},
		{RolloutHalted, "checkin-other", RolloutHalted, nil},
		{RolloutHalted, "install-ok", RolloutHalted, []string{"canary:failed>installed"}},
		{RolloutHalted, "install-failed", RolloutHalted, nil},
		{RolloutHalted, "retry", RolloutHalted, []string{"canary:failed>waiting"}},

		{RolloutCompleted, "start", RolloutCompleted, nil},
		{RolloutCompleted, "cancel", RolloutCancelled, []string{"rollout:completed>cancelled"}},
		{RolloutCompleted, "resume", RolloutCompleted, nil},
		{RolloutCompleted, "tick", RolloutCompleted, nil},
		{RolloutCompleted, "join", RolloutCompleted, []string{"new:>waiting", "new:waiting>offered"}},
		{RolloutCompleted, "leave", RolloutCompleted, nil},
		{RolloutCompleted, "checkin-target", RolloutCompleted, nil},
		{RolloutCompleted, "checkin-other", RolloutCompleted, []string{"canary:updated>failed"}},
		{RolloutCompleted, "install-ok", RolloutCompleted, nil},
		{RolloutCompleted, "install-failed", RolloutCompleted, nil},
		{RolloutCompleted, "retry", RolloutCompleted, nil},
	}
	for name := range events {
		tests = append(tests, struct {
			state RolloutState
			event string
			want  RolloutState
			trans []string
		}{RolloutCancelled, name, RolloutCancelled, nil})
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[string(tc.state)+"/"+tc.event] = true
		t.Run(string(tc.state)+"/"+tc.event, func(t *testing.T) {
			r, canary := rolloutFixture(t, tc.state)
			before, _ := json.Marshal(r)
			ev := events[tc.event](canary)
			got, trans := r.Apply(ev)
			if after, _ := json.Marshal(r); string(before) != string(after) {
				t.Fatal("Apply modified its receiver")
			}
			if got.State != tc.want {
				t.Errorf("got state %s, want %s", got.State, tc.want)
			}
			if diff := cmp.Diff(tc.trans, summary(trans, canary)); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
			again, dup := got.Apply(ev)
			if len(dup) != 0 {
				t.Errorf("applying the event twice: got transitions %v the second time, want none", summary(dup, canary))
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("applying the event twice changed the rollout (-first +second):\n%s", diff)
			}
		})
	}
	for _, s := range []RolloutState{RolloutPending, RolloutRunning, RolloutHalted, RolloutCompleted, RolloutCancelled} {
		for name := range events {
			if !covered[string(s)+"/"+name] {
				t.Errorf("no case for state %s and event %s", s, name)
			}
		}
	}
}

func TestRolloutHaltsOnceAcrossTwoWaves(t *testing.T) {
	devices := []string{"Acme/SN1", "Acme/SN2", "Acme/SN3", "Acme/SN4", "Acme/SN5"}
	plan := Plan{Waves: []WaveSize{{Count: 1}, {Count: 1}}, FailureThreshold: 2}
	r, err := NewRollout("r2", "pump/3.2.0/image.bin", "3.2.0", "icu", devices, plan, rolloutT0)
	if err != nil {
		t.Fatal(err)
	}
	r, _ = r.Apply(Event{Kind: EventStart, At: at(0)})
	byWave := map[int][]string{}
	for k, d := range r.Devices {
		byWave[d.Wave] = append(byWave[d.Wave], k)
	}
	w0, w1 := byWave[0][0], byWave[1][0]
	r, _ = r.Apply(Event{Kind: EventCheckIn, At: at(1), Device: w0, Version: "3.2.0"})
	if r.Wave != 1 || r.Devices[w1].State != DeviceOffered {
		t.Fatalf("got wave %d and second-wave device %s, want wave 1 open", r.Wave, r.Devices[w1].State)
	}
	// One evaluation: the canary comes back on the old version and the
	// second wave's device fails. Two failures reach the threshold of 2.
	r, trans := r.Apply(
		Event{Kind: EventCheckIn, At: at(2), Device: w0, Version: "3.1.0"},
		Event{Kind: EventInstall, At: at(2), Device: w1, Detail: "crc"},
	)
	halts := 0
	for _, tr := range trans {
		if tr.Device == "" && tr.To == string(RolloutHalted) {
			halts++
		}
	}
	if halts != 1 || r.State != RolloutHalted {
		t.Fatalf("got %d halt transitions and state %s, want 1 and halted", halts, r.State)
	}
	if r.Wave != 1 {
		t.Fatalf("got wave %d open after the halt, want 1: the final wave must not open", r.Wave)
	}
	r2, trans := r.Apply(Event{Kind: EventTick, At: at(3)}, Event{Kind: EventInstall, At: at(3), Device: w1, Detail: "crc"})
	if len(trans) != 0 || r2.State != RolloutHalted {
		t.Fatalf("got %v and state %s after more events, want no transitions and still halted", summary(trans, ""), r2.State)
	}
}

func TestRolloutOutOfOrderAndTimeouts(t *testing.T) {
	t.Run("failure report older than the successful check-in is ignored", func(t *testing.T) {
		r, canary := rolloutFixture(t, RolloutRunning)
		r, _ = r.Apply(Event{Kind: EventCheckIn, At: at(3), Device: canary, Version: "v3.2"})
		r, trans := r.Apply(Event{Kind: EventInstall, At: at(2), Device: canary, Detail: "late report"})
		if len(trans) != 0 || r.Devices[canary].State != DeviceUpdated || r.State != RolloutRunning {
			t.Fatalf("got %v, device %s, rollout %s; want the stale report ignored", summary(trans, canary), r.Devices[canary].State, r.State)
		}
	})
	t.Run("device that never comes back fails after the timeout", func(t *testing.T) {
		r, canary := rolloutFixture(t, RolloutRunning)
		r, _ = r.Apply(Event{Kind: EventInstall, At: at(1), Device: canary, OK: true})
		early, trans := r.Apply(Event{Kind: EventTick, At: at(0).Add(DefaultDeviceTimeout - time.Second)})
		if len(trans) != 0 || early.Devices[canary].State != DeviceInstalled {
			t.Fatalf("one second before the timeout: got %v, want no change", summary(trans, canary))
		}
		r, trans = r.Apply(Event{Kind: EventTick, At: at(0).Add(DefaultDeviceTimeout)})
		if diff := cmp.Diff([]string{"canary:installed>failed", "rollout:running>halted"}, summary(trans, canary)); diff != "" {
			t.Fatalf("at the timeout (-want +got):\n%s", diff)
		}
	})
	t.Run("resume dated before the halt is ignored", func(t *testing.T) {
		r, canary := rolloutFixture(t, RolloutHalted)
		r2, trans := r.Apply(Event{Kind: EventResume, At: at(0)})
		if len(trans) != 0 || r2.State != RolloutHalted {
			t.Fatalf("got %v and %s, want the stale resume ignored", summary(trans, canary), r2.State)
		}
	})
	t.Run("late joiner receives the final wave", func(t *testing.T) {
		r, canary := rolloutFixture(t, RolloutRunning)
		r, _ = r.Apply(Event{Kind: EventCheckIn, At: at(1), Device: canary, Version: "3.2.0"})
		r, trans := r.Apply(Event{Kind: EventJoin, At: at(2), Device: "Acme/NEW"})
		if diff := cmp.Diff([]string{"new:>waiting", "new:waiting>offered"}, summary(trans, canary)); diff != "" {
			t.Fatalf("joining (-want +got):\n%s", diff)
		}
		if r.Devices["Acme/NEW"].Wave != 1 {
			t.Fatalf("got wave %d for the joiner, want the final wave 1", r.Devices["Acme/NEW"].Wave)
		}
	})
	t.Run("percentage threshold", func(t *testing.T) {
		var devices []string
		for i := range 20 {
			devices = append(devices, fmt.Sprintf("Acme/SN%02d", i))
		}
		r, _ := NewRollout("r3", "t", "2.0", "", devices, Plan{Waves: []WaveSize{{Percent: 50}}, FailureThreshold: 100, FailurePercent: 20}, rolloutT0)
		r, _ = r.Apply(Event{Kind: EventStart, At: at(0)})
		var offered []string
		for k, d := range r.Devices {
			if d.State == DeviceOffered {
				offered = append(offered, k)
			}
		}
		slices.Sort(offered)
		if len(offered) != 10 {
			t.Fatalf("got %d devices in the 50%% wave, want 10", len(offered))
		}
		r, _ = r.Apply(Event{Kind: EventInstall, At: at(1), Device: offered[0]})
		if r.State != RolloutRunning {
			t.Fatalf("1 of 10 failed: got %s, want running", r.State)
		}
		r, _ = r.Apply(Event{Kind: EventInstall, At: at(1), Device: offered[1]})
		if r.State != RolloutHalted || !strings.Contains(r.Reason, "20%") {
			t.Fatalf("2 of 10 failed: got %s (%s), want halted at 20%%", r.State, r.Reason)
		}
	})
	t.Run("empty group completes and still reaches joiners", func(t *testing.T) {
		r, _ := NewRollout("r4", "t", "2.0", "icu", nil, Plan{}, rolloutT0)
		r, _ = r.Apply(Event{Kind: EventStart, At: at(0)})
		if r.State != RolloutCompleted {
			t.Fatalf("got %s, want completed", r.State)
		}
		r, _ = r.Apply(Event{Kind: EventJoin, At: at(1), Device: "Acme/NEW"})
		if r.Devices["Acme/NEW"].State != DeviceOffered {
			t.Fatalf("got joiner %s, want offered", r.Devices["Acme/NEW"].State)
		}
	})
}

func TestRolloutWavesAndPersistence(t *testing.T) {
	var devices []string
	for i := range 25 {
		devices = append(devices, fmt.Sprintf("Acme/SN%02d", i))
	}
	waves, n := assignWaves("r", devices, Plan{})
	sizes := map[int]int{}
	for _, w := range waves {
		sizes[w]++
	}
	if n != 2 || sizes[0] != 3 || sizes[1] != 22 {
		t.Fatalf("default plan over 25 devices: got %d waves of %v, want a 10%% canary of 3 then 22", n, sizes)
	}
	reversed := slices.Clone(devices)
	slices.Reverse(reversed)
	if again, _ := assignWaves("r", reversed, Plan{}); !cmp.Equal(waves, again) {
		t.Fatal("got different waves for the same devices in another order, want the same")
	}
	r, _ := NewRollout("r", "t", "2.0", "icu", devices, Plan{}, rolloutT0)
	r, _ = r.Apply(Event{Kind: EventStart, At: at(0)})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Rollout
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Fatalf("JSON round trip changed the rollout (-before +after):\n%s", diff)
	}
	if _, err := NewRollout("x", "t", "2.0", "", nil, Plan{Waves: []WaveSize{{Count: 1, Percent: 5}}}, rolloutT0); err == nil {
		t.Fatal("got no error for a wave with both count and percentage, want one")
	}
}
