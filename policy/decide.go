package policy

import (
	"slices"
	"strings"
	"time"
)

// Decide evaluates d against r at the clock's current time. Every check
// runs, so the decision lists every reason that applies, in this order:
// inventory and release metadata, compatibility (model, hardware
// revision, version, prerequisites), channel, entitlement, approval,
// rollout, clinical use, clock, and maintenance window.
func (e *Evaluator) Decide(d Device, r Release) Decision {
	return e.DecideAt(d, r, e.clock.Now())
}

// DecideAt is Decide at the given time instead of the clock's, for
// `wardgate explain --at`; the clock's Trusted still applies.
func (e *Evaluator) DecideAt(d Device, r Release, now time.Time) Decision {
	dec := Decision{Device: d.Key(), Target: r.Target, At: now}
	st := e.state.Load()
	rs := reasons{blocks: make([]Reason, 0, 4), passes: make([]Reason, 0, 8)}

	var groups []string
	var matched []*compiledGroup
	for _, g := range e.groups {
		if g.matches(d) {
			groups = append(groups, g.Name)
			matched = append(matched, g)
		}
	}

	e.checkCompatibility(&rs, d, r)
	if len(e.cfg.AllowedChannels) > 0 && !slices.Contains(e.cfg.AllowedChannels, r.Channel) {
		rs.block(CodeChannelNotAllowed, "channel "+nonEmpty(r.Channel, "(none)")+" is not allowed on this gateway (allowed: "+strings.Join(e.cfg.AllowedChannels, ", ")+")")
	}
	e.checkEntitlement(&rs, st, d, r, now)
	e.checkApproval(&rs, st, r, groups)
	e.checkRollout(&rs, st, d, r, groups)
	staging := !rs.blocked()

	if d.InClinicalUse {
		rs.block(CodeInClinicalUse, "the device reports it is in clinical use; the install is offered once it reports it is not")
	}
	trusted := e.clock.Trusted()
	if !trusted {
		rs.block(CodeClockUntrusted, "the gateway clock is not trusted, so maintenance windows count as closed")
	} else {
		e.checkWindow(&rs, &dec, d, r, matched, now)
	}

	dec.Reasons = rs.ordered()
	dec.Offer = !rs.blocked()
	dec.Download = dec.Offer || (staging && trusted && !e.cfg.DownloadOnlyInWindow)
	return dec
}

// checkEntitlement appends the entitlement reason. Entitlement is checked
// whenever a document is loaded; without one, it is not checked unless
// Config.EnforceEntitlements is set.
func (e *Evaluator) checkEntitlement(rs *reasons, st *runtimeState, d Device, r Release, now time.Time) {
	ents := st.entitlements
	if ents == nil && !e.cfg.EnforceEntitlements {
		rs.pass(CodeEntitlementsOff, "entitlement not checked: no entitlements document is loaded and enforcement is off")
		return
	}
	if r.SecurityFix {
		rs.pass(CodeSecurityFix, "security fix: the manufacturer offers it regardless of entitlement")
		return
	}
	if ents == nil {
		rs.block(CodeNotEntitled, "not entitled: no entitlements document is loaded and entitlement enforcement is on")
		return
	}
	if d.Site == "" {
		rs.block(CodeInventoryIncomplete, "the gateway has no site id, so entitlements cannot be checked: complete enrolment")
		return
	}
	rv, err := ParseVersion(r.Version)
	if err != nil {
		return // reported as release-invalid already
	}
	res := ents.check(d, r, rv, now)
	if res.entitled {
		rs.pass(res.code, res.message)
	} else {
		rs.block(res.code, res.message)
	}
}

// checkRollout appends the reason from the rollout of r that applies to
// d: one where d is a member, else the first whose group d is in.
func (e *Evaluator) checkRollout(rs *reasons, st *runtimeState, d Device, r Release, groups []string) {
	list := st.rollouts[r.Target]
	if len(list) == 0 {
		return
	}
	key := d.Key()
	var ro *Rollout
	var dev RolloutDevice
	member := false
	for _, x := range list {
		if rd, ok := x.Devices[key]; ok && rd.State != DeviceRemoved {
			ro, dev, member = x, rd, true
			break
		}
	}
	if ro == nil {
		for _, x := range list {
			if x.Group == "" || slices.Contains(groups, x.Group) {
				ro = x
				break
			}
		}
	}
	if ro == nil {
		return
	}
	name := "rollout " + ro.ID
	switch ro.State {
	case RolloutCancelled:
		rs.block(CodeRolloutCancelled, name+" was cancelled: "+ro.Reason)
		return
	case RolloutPending:
		rs.block(CodeRolloutPending, name+" has not started")
		return
	case RolloutHalted:
		if !member || dev.State != DeviceUpdated {
			rs.block(CodeRolloutHalted, name+" is halted ("+ro.Reason+"); hospital IT can resume it")
			return
		}
	}
	if !member {
		if ro.State == RolloutCompleted || ro.Wave >= ro.Waves-1 {
			rs.pass(CodeRolloutActive, name+" reaches devices that joined group "+ro.Group+" later")
			return
		}
		rs.block(CodeRolloutWaiting, "the device joined group "+ro.Group+" after "+name+" started; it is in the final wave, wave "+itoa(int64(ro.Waves))+" of "+itoa(int64(ro.Waves))+" (wave "+itoa(int64(ro.Wave+1))+" is in progress)")
		return
	}
	wave := "wave " + itoa(int64(dev.Wave+1)) + " of " + itoa(int64(max(ro.Waves, 1)))
	switch dev.State {
	case DeviceWaiting:
		rs.block(CodeRolloutWaiting, "waiting for "+wave+" of "+name+" (wave "+itoa(int64(ro.Wave+1))+" is in progress)")
	case DeviceFailed:
		rs.block(CodeRolloutFailed, "the install failed on this device in "+name+" ("+nonEmpty(dev.Detail, "no detail")+"); hospital IT can retry it")
	default:
		rs.pass(CodeRolloutActive, name+" offers it in "+wave)
	}
}

// reasons collects blocking and passing reasons separately so that
// blocking ones come first in the decision.
type reasons struct {
	blocks []Reason
	passes []Reason
}

func (rs *reasons) block(code, msg string) {
	rs.blocks = append(rs.blocks, Reason{Code: code, Message: msg, Blocking: true})
}

func (rs *reasons) pass(code, msg string) {
	rs.passes = append(rs.passes, Reason{Code: code, Message: msg})
}

func (rs *reasons) blocked() bool { return len(rs.blocks) > 0 }

func (rs *reasons) ordered() []Reason {
	out := make([]Reason, 0, len(rs.blocks)+len(rs.passes))
	out = append(out, rs.blocks...)
	return append(out, rs.passes...)
}
