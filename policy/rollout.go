package policy

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"
)

// RolloutState is the state of a rollout. The states and the events that
// move between them:
//
//	pending   --start-->  running
//	running   --failures reach the threshold-->  halted
//	halted    --resume (dated after the halt)-->  running
//	running   --last wave finished-->  completed
//	pending, running, halted, completed  --cancel-->  cancelled
//
// Cancelled is final: every later event is ignored.
type RolloutState string

// Rollout states.
const (
	RolloutPending   RolloutState = "pending"
	RolloutRunning   RolloutState = "running"
	RolloutHalted    RolloutState = "halted"
	RolloutCompleted RolloutState = "completed"
	RolloutCancelled RolloutState = "cancelled"
)

// DeviceState is a device's state within a rollout:
//
//	waiting    its wave is not open yet
//	offered    its wave is open, so the release is offered to it
//	installed  it reported a successful install but has not yet checked
//	           in running the new version
//	updated    it checked in running the new version (the only success)
//	failed     it reported a failed install, did not check in on the new
//	           version within the device timeout, or came back on
//	           another version after updating
//	removed    it left the group before finishing
type DeviceState string

// Device states within a rollout.
const (
	DeviceWaiting   DeviceState = "waiting"
	DeviceOffered   DeviceState = "offered"
	DeviceInstalled DeviceState = "installed"
	DeviceUpdated   DeviceState = "updated"
	DeviceFailed    DeviceState = "failed"
	DeviceRemoved   DeviceState = "removed"
)

// EventKind names a rollout event.
type EventKind string

// Rollout events. Device events carry Event.Device.
const (
	EventStart   EventKind = "start"   // hospital IT starts the rollout
	EventCancel  EventKind = "cancel"  // hospital IT cancels it
	EventResume  EventKind = "resume"  // hospital IT resumes a halted rollout
	EventTick    EventKind = "tick"    // time passed: device timeouts are checked
	EventJoin    EventKind = "join"    // a device joined the group
	EventLeave   EventKind = "leave"   // a device left the group
	EventCheckIn EventKind = "checkin" // a device checked in running Event.Version
	EventInstall EventKind = "install" // a device reported an install outcome, Event.OK
	EventRetry   EventKind = "retry"   // hospital IT offers a failed device the release again
)

// Event is one input to a rollout. Events are idempotent: applying one
// twice changes nothing the second time. A device event dated before the
// last event applied for that device is stale and ignored, so events may
// arrive out of order.
type Event struct {
	Kind EventKind `json:"kind"`
	At   time.Time `json:"at"`
	// Device is "MANUFACTURER/SERIAL" for device events.
	Device string `json:"device,omitempty"`
	// Version is the running version a check-in reports.
	Version string `json:"version,omitempty"`
	// OK is the outcome an install report gives.
	OK bool `json:"ok,omitempty"`
	// Detail is the device's error text or the operator's note.
	Detail string `json:"detail,omitempty"`
}

// Rollout is the state of a staged rollout of one release to one group.
// It is a value: Apply returns a new Rollout and leaves its receiver
// unchanged, and the gateway persists it (the fields encode as JSON).
type Rollout struct {
	ID      string       `json:"id"`
	Target  string       `json:"target"`
	Version string       `json:"version"`
	Group   string       `json:"group"`
	Plan    Plan         `json:"plan"`
	State   RolloutState `json:"state"`
	// Wave is the index of the last open wave, -1 before the start.
	Wave int `json:"wave"`
	// Waves is the number of waves, fixed at the start.
	Waves   int                      `json:"waves"`
	Devices map[string]RolloutDevice `json:"devices"`
	// FailureBaseline is the failure count at the last resume, and the
	// threshold counts failures beyond it.
	FailureBaseline int       `json:"failure_baseline,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	HaltedAt        time.Time `json:"halted_at,omitzero"`
	EndedAt         time.Time `json:"ended_at,omitzero"`
	// Reason explains why the rollout was halted, completed or cancelled.
	Reason string `json:"reason,omitempty"`
}

// RolloutDevice is one device's progress in a rollout.
type RolloutDevice struct {
	Wave  int         `json:"wave"`
	State DeviceState `json:"state"`
	// Since is when the device entered State.
	Since time.Time `json:"since"`
	// OfferedAt starts the device timeout.
	OfferedAt time.Time `json:"offered_at,omitzero"`
	// LastEventAt is the time of the newest device event applied.
	LastEventAt time.Time `json:"last_event_at,omitzero"`
	// Version is the last version the device reported running.
	Version string `json:"version,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Transition records one state change made by Apply, for the audit
// trail.
type Transition struct {
	// Device is set for a device transition and empty for the rollout's.
	Device string    `json:"device,omitempty"`
	Wave   int       `json:"wave"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// NewRollout returns a pending rollout of the release target at version
// to the devices of group ("MANUFACTURER/SERIAL" keys).
func NewRollout(id, target, version, group string, devices []string, plan Plan, at time.Time) (Rollout, error) {
	switch {
	case strings.TrimSpace(id) == "":
		return Rollout{}, fmt.Errorf("creating rollout: empty id")
	case target == "" || version == "":
		return Rollout{}, fmt.Errorf("creating rollout %s: target %q and version %q are both required", id, target, version)
	}
	if err := plan.validate(); err != nil {
		return Rollout{}, fmt.Errorf("creating rollout %s: %w", id, err)
	}
	r := Rollout{ID: id, Target: target, Version: version, Group: group, Plan: plan,
		State: RolloutPending, Wave: -1, Devices: map[string]RolloutDevice{}, CreatedAt: at}
	for _, key := range devices {
		if key == "" {
			return Rollout{}, fmt.Errorf("creating rollout %s: empty device key", id)
		}
		r.Devices[key] = RolloutDevice{State: DeviceWaiting, Since: at}
	}
	return r, nil
}

// Failures returns the number of devices in the failed state.
func (r Rollout) Failures() int { return r.count(DeviceFailed) }

// Count returns the number of devices in state s.
func (r Rollout) Count(s DeviceState) int { return r.count(s) }

func (r Rollout) count(s DeviceState) int {
	n := 0
	for _, d := range r.Devices {
		if d.State == s {
			n++
		}
	}
	return n
}

// Apply applies events in order and then evaluates the rollout once:
// the failure threshold first, then wave progress. It returns the new
// rollout and the transitions made, in order. It never modifies r.
func (r Rollout) Apply(events ...Event) (Rollout, []Transition) {
	next := r
	next.Devices = maps.Clone(r.Devices)
	if next.Devices == nil {
		next.Devices = map[string]RolloutDevice{}
	}
	a := applier{r: &next}
	var last time.Time
	for _, ev := range events {
		if next.State == RolloutCancelled {
			break
		}
		a.apply(ev)
		if ev.At.After(last) {
			last = ev.At
		}
	}
	if len(events) > 0 {
		a.evaluate(last)
	}
	return next, a.out
}

type applier struct {
	r   *Rollout
	out []Transition
}

func (a *applier) rollout(to RolloutState, at time.Time, reason string) {
	a.out = append(a.out, Transition{Wave: a.r.Wave, From: string(a.r.State), To: string(to), At: at, Reason: reason})
	a.r.State = to
	switch to {
	case RolloutHalted:
		a.r.HaltedAt = at
	case RolloutCompleted, RolloutCancelled:
		a.r.EndedAt = at
	}
	a.r.Reason = reason
}

func (a *applier) device(key string, d RolloutDevice, to DeviceState, at time.Time, reason string) {
	a.out = append(a.out, Transition{Device: key, Wave: d.Wave, From: string(d.State), To: string(to), At: at, Reason: reason})
	d.State, d.Since = to, at
	if to == DeviceOffered {
		d.OfferedAt = at
	}
	a.r.Devices[key] = d
}

func (a *applier) apply(ev Event) {
	r := a.r
	switch ev.Kind {
	case EventStart:
		if r.State == RolloutPending {
			a.start(ev.At)
		}
	case EventCancel:
		if r.State != RolloutCancelled {
			a.rollout(RolloutCancelled, ev.At, nonEmpty(ev.Detail, "cancelled by hospital IT"))
		}
	case EventResume:
		if r.State == RolloutHalted && !ev.At.Before(r.HaltedAt) {
			r.FailureBaseline = r.Failures()
			a.rollout(RolloutRunning, ev.At, nonEmpty(ev.Detail, "resumed by hospital IT"))
		}
	case EventTick:
		a.timeouts(ev.At)
	case EventJoin, EventLeave, EventCheckIn, EventInstall, EventRetry:
		if ev.Device != "" {
			a.deviceEvent(ev)
		}
	}
}

func nonEmpty(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

func (a *applier) start(at time.Time) {
	r := a.r
	keys := make([]string, 0, len(r.Devices))
	for k, d := range r.Devices {
		if d.State != DeviceRemoved {
			keys = append(keys, k)
		}
	}
	waves, n := assignWaves(r.ID, keys, r.Plan)
	r.Waves, r.StartedAt = n, at
	for _, k := range keys {
		d := r.Devices[k]
		d.Wave = waves[k]
		r.Devices[k] = d
	}
	a.rollout(RolloutRunning, at, fmt.Sprintf("started with %d devices in %d waves", len(keys), n))
	a.openWave(0, at)
}

// openWave opens wave w and offers the release to its waiting devices.
func (a *applier) openWave(w int, at time.Time) {
	a.r.Wave = w
	for _, k := range sortedKeys(a.r.Devices) {
		if d := a.r.Devices[k]; d.Wave == w && d.State == DeviceWaiting {
			a.device(k, d, DeviceOffered, at, fmt.Sprintf("wave %d of %d opened", w+1, a.r.Waves))
		}
	}
}

func sortedKeys(m map[string]RolloutDevice) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (a *applier) timeouts(at time.Time) {
	limit := a.r.Plan.timeout()
	for _, k := range sortedKeys(a.r.Devices) {
		d := a.r.Devices[k]
		if (d.State == DeviceOffered || d.State == DeviceInstalled) && !at.Before(d.OfferedAt.Add(limit)) {
			a.device(k, d, DeviceFailed, at, "did not check in running "+a.r.Version+" within "+durationText(limit))
		}
	}
}
