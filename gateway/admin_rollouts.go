package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/policy"
)

// Approvals and rollouts are policy state that the gateway persists in
// badger under "pol/":
//
//	pol/approval/TARGET\x00GROUP   a policy.Approval
//	pol/rollout/ID                 a rolloutRecord
//	pol/seq                        the last rollout number
const (
	polApprovalPrefix = "pol/approval/"
	polRolloutPrefix  = "pol/rollout/"
	polSeqKey         = "pol/seq"
)

// rolloutRecord is a rollout as persisted. policy.Rollout has no paused
// state, so a pause is kept here: while Paused, the evaluator is given
// the rollout as halted, and device events still apply underneath.
type rolloutRecord struct {
	Rollout  policy.Rollout `json:"rollout"`
	Paused   bool           `json:"paused,omitempty"`
	PausedBy string         `json:"paused_by,omitempty"`
	PausedAt time.Time      `json:"paused_at,omitzero"`
}

func (r rolloutRecord) effective() policy.Rollout {
	ro := r.Rollout
	if r.Paused && ro.State == policy.RolloutRunning {
		ro.State, ro.HaltedAt, ro.Reason = policy.RolloutHalted, r.PausedAt, "paused by "+r.PausedBy
	}
	return ro
}

func (r rolloutRecord) active() bool {
	s := r.Rollout.State
	return s == policy.RolloutPending || s == policy.RolloutRunning || s == policy.RolloutHalted
}

// rolloutManager owns approvals and rollouts: it persists them, keeps the
// evaluator in step, feeds device events to the rollouts and audits every
// transition.
type rolloutManager struct {
	g    *Gateway
	plan policy.Plan

	prefetch chan string // approved releases to pull into the cache

	// tickInterval is how often run ticks the rollouts and retries failed
	// prefetches, and prefetchRetryMin and prefetchRetryMax bound the
	// retry backoff. newRolloutManager sets them from the constants of
	// the same names, and tests shorten them before the gateway runs.
	tickInterval                       time.Duration
	prefetchRetryMin, prefetchRetryMax time.Duration

	mu        sync.Mutex
	approvals map[string]policy.Approval // by target\x00group
	rollouts  map[string]*rolloutRecord
	seq       uint64
}

// policyConfig turns the [policy] settings into policy.Config.
func policyConfig(p config.Policy) (policy.Config, error) {
	waves, err := p.Rollout.ParseWaves()
	if err != nil {
		return policy.Config{}, err
	}
	plan := policy.Plan{FailureThreshold: p.Rollout.FailureThreshold, DeviceTimeout: time.Duration(p.Rollout.DeviceTimeout)}
	for _, w := range waves {
		plan.Waves = append(plan.Waves, policy.WaveSize{Count: w.Count, Percent: w.Percent})
	}
	pc := policy.Config{
		AllowedChannels:                p.AllowedChannels,
		DownloadOnlyInWindow:           p.DownloadOnlyInWindow,
		MaintenanceModeBypassesWindows: p.MaintenanceModeBypassesWindows,
		RequireApproval:                p.RequireApproval,
		Rollout:                        plan,
	}
	if p.AutoApproveSecurityFixes {
		pc.ApprovalRules = append(pc.ApprovalRules, policy.ApprovalRule{Name: "security fixes", SecurityFixesOnly: true})
	}
	for _, g := range p.Groups {
		pc.Groups = append(pc.Groups, policy.Group{Name: g.Name, VLANs: g.VLANs, Departments: g.Departments, Models: g.Models,
			DeviceClasses: g.DeviceClasses, Devices: g.Devices, Windows: g.Windows, Blackouts: g.Blackouts})
	}
	return pc, nil
}

func newRolloutManager(g *Gateway) (*rolloutManager, error) {
	m := &rolloutManager{g: g, plan: g.policy.Config().Rollout, prefetch: make(chan string, 64),
		tickInterval: rolloutTickInterval, prefetchRetryMin: prefetchRetryMin, prefetchRetryMax: prefetchRetryMax,
		approvals: map[string]policy.Approval{}, rollouts: map[string]*rolloutRecord{}}
	err := g.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("pol/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			err := it.Item().Value(func(v []byte) error {
				switch {
				case strings.HasPrefix(k, polApprovalPrefix):
					var a policy.Approval
					if err := json.Unmarshal(v, &a); err != nil {
						return err
					}
					m.approvals[a.Target+"\x00"+a.Group] = a
				case strings.HasPrefix(k, polRolloutPrefix):
					var r rolloutRecord
					if err := json.Unmarshal(v, &r); err != nil {
						return err
					}
					m.rollouts[r.Rollout.ID] = &r
				case k == polSeqKey:
					m.seq, _ = strconv.ParseUint(string(v), 10, 64)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("policy record %q is unreadable: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading approvals and rollouts: %w", err)
	}
	g.policy.SetApprovals(m.approvalList())
	for _, r := range m.rollouts {
		g.policy.PutRollout(r.effective())
	}
	return m, nil
}

func (m *rolloutManager) approvalList() []policy.Approval {
	out := make([]policy.Approval, 0, len(m.approvals))
	for _, a := range m.approvals {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b policy.Approval) int { return a.At.Compare(b.At) })
	return out
}

// snapshot returns copies of the approvals and rollout records.
func (m *rolloutManager) snapshot() ([]policy.Approval, []rolloutRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := make([]rolloutRecord, 0, len(m.rollouts))
	for _, r := range m.rollouts {
		rs = append(rs, *r)
	}
	slices.SortFunc(rs, func(a, b rolloutRecord) int { return b.Rollout.CreatedAt.Compare(a.Rollout.CreatedAt) })
	return m.approvalList(), rs
}

// groupExists reports whether a group of that name is configured.
func (m *rolloutManager) groupExists(name string) bool {
	for _, g := range m.g.policy.Config().Groups {
		if g.Name == name {
			return true
		}
	}
	return false
}

// ineligible are the codes that keep a device out of a rollout: the
// release can never be installed on it as things stand.
var ineligible = map[string]bool{
	policy.CodeInventoryIncomplete: true, policy.CodeReleaseInvalid: true, policy.CodeModelUnsupported: true,
	policy.CodeHardwareUnsupported: true, policy.CodeUpToDate: true, policy.CodeDowngrade: true,
	policy.CodePrerequisiteMissing: true, policy.CodePrerequisiteUnmet: true, policy.CodeChannelNotAllowed: true,
	policy.CodeNotEntitled: true, policy.CodeEntitlementsInvalid: true,
}

// Approve approves a release for a group ("" for every device) and starts
// its staged rollout to the devices of the group that can take it. actor
// names the caller in audit records and by in the approval's reasons.
func (m *rolloutManager) Approve(ctx context.Context, actor, by, target, group string) (policy.Rollout, error) {
	t, ok := m.g.mirror.Target(target)
	if !ok || !t.HasMeta || t.Meta.Kind != cache.KindRelease {
		return policy.Rollout{}, fmt.Errorf("release %q is not in the cache: pick one from the releases list", target)
	}
	if group != "" && !m.groupExists(group) {
		return policy.Rollout{}, fmt.Errorf("group %q is not configured: use a name from [[policy.groups]] or leave it empty for every device", group)
	}
	now := time.Now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rollouts {
		if r.Rollout.Target == target && r.Rollout.Group == group && r.active() {
			return policy.Rollout{}, fmt.Errorf("release %s already has rollout %s (%s) for this group: cancel it first", target, r.Rollout.ID, r.Rollout.State)
		}
	}
	a := policy.Approval{Target: target, Group: group, By: by, At: now}
	akey := target + "\x00" + group
	m.approvals[akey] = a
	if err := m.put(polApprovalPrefix+akey, a); err != nil {
		delete(m.approvals, akey)
		return policy.Rollout{}, err
	}
	m.g.policy.SetApprovals(m.approvalList())
	m.syncApproved()
	select {
	case m.prefetch <- target:
	default:
	}
	m.g.recordAudit(ctx, audit.Record{Actor: actor, Action: "approval.grant", Subject: target, Details: map[string]string{"group": groupName(group), "version": t.Meta.Version}})

	rel := policyRelease(t)
	devs, err := m.g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return policy.Rollout{}, fmt.Errorf("listing devices for the rollout: %w", err)
	}
	var members []string
	for _, d := range devs {
		pd := policyDevice(d, m.g.siteID)
		if group != "" && !slices.Contains(m.g.policy.GroupsOf(pd), group) {
			continue
		}
		if b := m.g.policy.Decide(pd, rel).Blocking(); len(b) > 0 && ineligible[b[0].Code] {
			continue
		}
		members = append(members, pd.Key())
	}
	m.seq++
	id := "R" + strconv.FormatUint(m.seq, 10)
	if err := m.putRaw(polSeqKey, []byte(strconv.FormatUint(m.seq, 10))); err != nil {
		return policy.Rollout{}, err
	}
	ro, err := policy.NewRollout(id, target, t.Meta.Version, group, members, m.plan, now)
	if err != nil {
		return policy.Rollout{}, fmt.Errorf("creating rollout of %s: %w", target, err)
	}
	ro, trs := ro.Apply(policy.Event{Kind: policy.EventStart, At: now, Detail: "approved by " + actor})
	rec := &rolloutRecord{Rollout: ro}
	if err := m.store(rec); err != nil {
		return policy.Rollout{}, err
	}
	m.rollouts[id] = rec
	m.g.policy.PutRollout(rec.effective())
	m.g.recordAudit(ctx, audit.Record{Actor: actor, Action: "rollout.start", Subject: target, Details: map[string]string{
		"rollout": id, "group": groupName(group), "devices": strconv.Itoa(len(members)), "waves": strconv.Itoa(ro.Waves)}})
	m.auditTransitions(ctx, actor, ro, trs)
	return ro, nil
}

func groupName(g string) string {
	if g == "" {
		return "every device"
	}
	return g
}

// Action pauses, resumes or cancels a rollout.
func (m *rolloutManager) Action(ctx context.Context, actor, id, action, note string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.rollouts[id]
	if !ok {
		return fmt.Errorf("no rollout has id %q", id)
	}
	now := time.Now().UTC()
	next := *rec
	var trs []policy.Transition
	switch action {
	case "pause":
		if next.Paused || next.Rollout.State != policy.RolloutRunning {
			return fmt.Errorf("rollout %s is %s: only a running rollout can be paused", id, stateWord(next))
		}
		next.Paused, next.PausedBy, next.PausedAt = true, actor, now
	case "resume":
		switch {
		case next.Paused:
			next.Paused, next.PausedBy, next.PausedAt = false, "", time.Time{}
		case next.Rollout.State == policy.RolloutHalted:
			next.Rollout, trs = next.Rollout.Apply(policy.Event{Kind: policy.EventResume, At: now, Detail: note})
		default:
			return fmt.Errorf("rollout %s is %s: only a paused or halted rollout can be resumed", id, stateWord(next))
		}
	case "cancel":
		if !next.active() {
			return fmt.Errorf("rollout %s is %s: it cannot be cancelled", id, stateWord(next))
		}
		next.Paused = false
		next.Rollout, trs = next.Rollout.Apply(policy.Event{Kind: policy.EventCancel, At: now, Detail: nonEmptyNote(note, "cancelled by "+actor)})
	default:
		return fmt.Errorf("rollout action %q is unknown: use pause, resume or cancel", action)
	}
	if err := m.store(&next); err != nil {
		return err
	}
	*rec = next
	m.g.policy.PutRollout(rec.effective())
	m.g.recordAudit(ctx, audit.Record{Actor: actor, Action: "rollout." + action, Subject: rec.Rollout.Target, Details: map[string]string{"rollout": id, "state": stateWord(next), "note": note}})
	m.auditTransitions(ctx, actor, rec.Rollout, trs)
	return nil
}

func nonEmptyNote(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func stateWord(r rolloutRecord) string {
	if r.Paused && r.Rollout.State == policy.RolloutRunning {
		return "paused"
	}
	return string(r.Rollout.State)
}

// deviceEvent applies a device's event to every active rollout it is in
// (of target, when target is set).
func (m *rolloutManager) deviceEvent(ctx context.Context, target string, ev policy.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rec := range m.rollouts {
		if !rec.active() || (target != "" && rec.Rollout.Target != target) {
			continue
		}
		if _, ok := rec.Rollout.Devices[ev.Device]; !ok {
			continue
		}
		m.apply(ctx, rec, "device:"+ev.Device, ev)
	}
}

// tick checks device timeouts and wave progress of every active rollout.
func (m *rolloutManager) tick(ctx context.Context, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rec := range m.rollouts {
		if rec.active() {
			m.apply(ctx, rec, "gateway", policy.Event{Kind: policy.EventTick, At: now})
		}
	}
}

func (m *rolloutManager) apply(ctx context.Context, rec *rolloutRecord, actor string, ev policy.Event) {
	next, trs := rec.Rollout.Apply(ev)
	if ev.Kind == policy.EventTick && len(trs) == 0 {
		return
	}
	upd := *rec
	upd.Rollout = next
	if err := m.store(&upd); err != nil {
		m.g.log.Error("storing rollout state failed", "rollout", rec.Rollout.ID, "err", err)
		return
	}
	*rec = upd
	m.g.policy.PutRollout(rec.effective())
	m.auditTransitions(ctx, actor, next, trs)
}

func (m *rolloutManager) auditTransitions(ctx context.Context, actor string, ro policy.Rollout, trs []policy.Transition) {
	for _, tr := range trs {
		d := map[string]string{"rollout": ro.ID, "from": tr.From, "to": tr.To, "wave": strconv.Itoa(tr.Wave + 1), "reason": tr.Reason}
		subject := ro.Target
		if tr.Device != "" {
			d["device"] = tr.Device
		}
		m.g.recordAudit(ctx, audit.Record{Time: tr.At, Actor: actor, Action: "rollout.transition", Subject: subject, Details: d})
	}
}

func (m *rolloutManager) store(rec *rolloutRecord) error {
	return m.put(polRolloutPrefix+rec.Rollout.ID, rec)
}

func (m *rolloutManager) put(key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.putRaw(key, data)
}

func (m *rolloutManager) putRaw(key string, data []byte) error {
	if err := m.g.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), data) }); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return nil
}

// syncApproved passes the releases that approvals cover to the mirror,
// which pins them against eviction. The caller holds m.mu.
func (m *rolloutManager) syncApproved() {
	set := map[string]bool{}
	for _, a := range m.approvals {
		if _, ok := m.g.mirror.Target(a.Target); ok {
			set[a.Target] = true
		}
	}
	paths := slices.Sorted(maps.Keys(set))
	if err := m.g.mirror.SetApproved(paths); err != nil {
		m.g.log.Warn("pinning approved releases in the cache failed", "err", err)
	}
}

// rolloutTickInterval is how often rollouts are checked for device
// timeouts and wave progress.
const rolloutTickInterval = 15 * time.Second

// Backoff between attempts to prefetch an approved release that failed,
// for example while the hub is unreachable.
const (
	prefetchRetryMin = time.Minute
	prefetchRetryMax = 30 * time.Minute
)

// prefetchResult is the outcome of one prefetch of an approved release.
type prefetchResult struct {
	path string
	err  error
}

// prefetchRetry is when a failed prefetch is tried again.
type prefetchRetry struct {
	at      time.Time
	backoff time.Duration
}

// run ticks the rollouts every m.tickInterval and pulls approved releases
// into the cache, until ctx ends. A prefetch that fails is tried again on
// a later tick while the release stays approved, with a backoff that
// doubles from m.prefetchRetryMin to m.prefetchRetryMax. A release
// approved while the hub was unreachable is so still cached before its
// window opens.
func (m *rolloutManager) run(ctx context.Context) {
	t := time.NewTicker(m.tickInterval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	m.mu.Lock()
	m.syncApproved()
	for _, a := range m.approvals {
		select {
		case m.prefetch <- a.Target:
		default:
		}
	}
	m.mu.Unlock()
	results := make(chan prefetchResult)
	running := map[string]bool{}
	retry := map[string]prefetchRetry{}
	start := func(path string) {
		if running[path] {
			return
		}
		running[path] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.g.mirror.Prefetch(ctx, path)
			select {
			case results <- prefetchResult{path, err}:
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.tick(ctx, now.UTC())
			for path, r := range retry {
				if now.Before(r.at) {
					continue
				}
				if !m.approved(path) {
					delete(retry, path)
					continue
				}
				start(path)
			}
		case path := <-m.prefetch:
			start(path)
		case res := <-results:
			delete(running, res.path)
			if res.err == nil || ctx.Err() != nil {
				delete(retry, res.path)
				continue
			}
			r := retry[res.path]
			r.backoff = min(max(2*r.backoff, m.prefetchRetryMin), m.prefetchRetryMax)
			r.at = time.Now().Add(r.backoff)
			retry[res.path] = r
			m.g.log.Warn("prefetching an approved release failed; trying again later, and devices pull it on demand meanwhile",
				"release", res.path, "retry_in", r.backoff, "err", res.err)
		}
	}
}

// approved reports whether some approval still names the release at path.
func (m *rolloutManager) approved(path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.approvals {
		if a.Target == path {
			return true
		}
	}
	return false
}

// errNoRollouts is returned by the API when rollouts are not set up.
var errNoRollouts = errors.New("rollouts are not available on this gateway")
