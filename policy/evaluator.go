package policy

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Evaluator decides, for a device and a release, whether the release may
// be offered now. Its configuration is fixed at creation, but entitlements,
// approvals and rollouts can be replaced while it runs. It is safe for
// concurrent use.
type Evaluator struct {
	cfg    Config
	clock  Clock
	groups []*compiledGroup
	// ruleMessages are the reasons for Config.ApprovalRules, by index.
	ruleMessages []string

	mu    sync.Mutex // serialises writers of state
	state atomic.Pointer[runtimeState]

	constraints     sync.Map     // constraint text -> constraintEntry
	constraintCount atomic.Int64 // entries in constraints
	// Schedules per combination of matched groups: byMask when there
	// are at most 64 groups, schedules (by a string key) otherwise.
	byMask    atomic.Pointer[map[uint64]*deviceSchedule]
	schedules sync.Map
	prepared  atomic.Pointer[map[string]*preparedRelease] // by target
}

// runtimeState is the replaceable part of the evaluator's input. It is
// never modified after it is stored.
type runtimeState struct {
	entitlements  *Entitlements
	approvals     map[string][]Approval // by target
	approvalCount int
	rollouts      map[string][]*Rollout // by target
}

const maxCachedConstraints = 4096

type constraintEntry struct {
	c   Constraint
	err error
}

// NewEvaluator validates cfg and returns an evaluator that reads time
// from clock. It returns an error naming the first invalid setting. A nil
// clock reads the system time but is never trusted, so every window
// counts as closed.
func NewEvaluator(cfg Config, clock Clock) (*Evaluator, error) {
	groups, err := compileConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("checking policy config: %w", err)
	}
	if clock == nil {
		clock = untrustedClock{}
	}
	e := &Evaluator{cfg: cfg, clock: clock, groups: groups}
	for _, rule := range cfg.ApprovalRules {
		e.ruleMessages = append(e.ruleMessages, "approved automatically by rule "+quote(rule.Name))
	}
	st := &runtimeState{}
	if cfg.Entitlements != nil {
		// An expired document is loaded all the same, so a gateway whose
		// stored document lapsed still starts and reports why it withholds.
		if err := cfg.Entitlements.Verify(cfg.EntitlementKeys, cfg.RequireSignedEntitlements); err != nil {
			return nil, fmt.Errorf("checking policy config: %w", err)
		}
		st.entitlements = cfg.Entitlements
	}
	st.approvals, st.approvalCount = indexApprovals(cfg.Approvals)
	e.state.Store(st)
	return e, nil
}

// Config returns the configuration the evaluator was created with.
func (e *Evaluator) Config() Config { return e.cfg }

// SetEntitlements replaces the entitlements document after verifying its
// signatures against Config.EntitlementKeys and its expiry against the
// clock. It rejects a document older than the one loaded, so a replayed
// document cannot restore revoked rights. A nil document unloads the
// current one.
func (e *Evaluator) SetEntitlements(ents *Entitlements) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.state.Load()
	if ents != nil {
		if err := e.verifyEntitlements(ents, old.entitlements); err != nil {
			return err
		}
	}
	st := *old
	st.entitlements = ents
	e.state.Store(&st)
	return nil
}

func (e *Evaluator) verifyEntitlements(ents, current *Entitlements) error {
	if err := ents.Verify(e.cfg.EntitlementKeys, e.cfg.RequireSignedEntitlements); err != nil {
		return err
	}
	if now := e.clock.Now(); e.clock.Trusted() && !now.Before(ents.Expires()) {
		return fmt.Errorf("loading entitlements version %d: it expired %s: fetch a fresh document", ents.Version(), dateText(ents.Expires()))
	}
	if current != nil && ents.Version() < current.Version() {
		return fmt.Errorf("loading entitlements version %d: version %d is loaded already, and documents may not go back", ents.Version(), current.Version())
	}
	return nil
}

// Entitlements returns the loaded entitlements document, or nil.
func (e *Evaluator) Entitlements() *Entitlements { return e.state.Load().entitlements }

// SetApprovals replaces the explicit approvals.
func (e *Evaluator) SetApprovals(approvals []Approval) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := *e.state.Load()
	st.approvals, st.approvalCount = indexApprovals(approvals)
	e.state.Store(&st)
}

func indexApprovals(approvals []Approval) (map[string][]Approval, int) {
	m := make(map[string][]Approval)
	for _, a := range approvals {
		m[a.Target] = append(m[a.Target], a)
	}
	return m, len(approvals)
}

// PutRollout adds a rollout or replaces the one with the same ID. Call it
// after each Apply so decisions follow the rollout's state.
func (e *Evaluator) PutRollout(r Rollout) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := *e.state.Load()
	st.rollouts = cloneRollouts(st.rollouts)
	for target, list := range st.rollouts {
		st.rollouts[target] = slices.DeleteFunc(list, func(x *Rollout) bool { return x.ID == r.ID })
	}
	rc := r
	st.rollouts[r.Target] = append(st.rollouts[r.Target], &rc)
	e.state.Store(&st)
}

// RemoveRollout removes the rollout with the given ID.
func (e *Evaluator) RemoveRollout(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := *e.state.Load()
	st.rollouts = cloneRollouts(st.rollouts)
	for target, list := range st.rollouts {
		st.rollouts[target] = slices.DeleteFunc(list, func(x *Rollout) bool { return x.ID == id })
	}
	e.state.Store(&st)
}

func cloneRollouts(m map[string][]*Rollout) map[string][]*Rollout {
	out := make(map[string][]*Rollout, len(m)+1)
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// GroupsOf returns the names of the groups d belongs to, in Config order.
func (e *Evaluator) GroupsOf(d Device) []string {
	var names []string
	for _, g := range e.groups {
		if g.matches(&d, d.Key()) {
			names = append(names, g.Name)
		}
	}
	return names
}

// constraint parses expr once and caches the result, because a release's
// requirements are evaluated for every device.
func (e *Evaluator) constraint(expr string) (Constraint, error) {
	if v, ok := e.constraints.Load(expr); ok {
		ce := v.(constraintEntry)
		return ce.c, ce.err
	}
	c, err := ParseConstraint(expr)
	// Release metadata is signed and finite, but bound the cache anyway.
	if e.constraintCount.Load() < maxCachedConstraints {
		if _, loaded := e.constraints.LoadOrStore(expr, constraintEntry{c, err}); !loaded {
			e.constraintCount.Add(1)
		}
	}
	return c, err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// ScheduleOf returns the schedule that governs d's installs, for the
// console and `wardgate explain`, and the name of the group whose windows
// apply ("" when none of d's groups has windows).
func (e *Evaluator) ScheduleOf(d Device) (*Schedule, string) {
	key := d.Key()
	var matched []*compiledGroup
	for _, g := range e.groups {
		if g.matches(&d, key) {
			matched = append(matched, g)
		}
	}
	ds := e.scheduleFor(matched)
	if ds.group == nil {
		return ds.s, ""
	}
	return ds.s, ds.group.Name
}
