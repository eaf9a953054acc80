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
// `wardgate explain --at`. The clock's Trusted still applies.
func (e *Evaluator) DecideAt(d Device, r Release, now time.Time) Decision {
	key := d.Key()
	dec := Decision{Device: key, Target: r.Target, At: now}
	st := e.state.Load()
	var rs reasons
	// Fixed buffers keep group matching free of allocations.
	var groupBuf [8]string
	var matchedBuf [8]*compiledGroup
	groups, matched := groupBuf[:0], matchedBuf[:0]
	for _, g := range e.groups {
		if g.matches(&d, key) {
			groups = append(groups, g.Name)
			matched = append(matched, g)
		}
	}

	pr := e.prepare(&r)
	e.checkCompatibility(&rs, &d, &r, pr)
	if len(e.cfg.AllowedChannels) > 0 && !slices.Contains(e.cfg.AllowedChannels, r.Channel) {
		rs.block(CodeChannelNotAllowed, "channel "+nonEmpty(r.Channel, "(none)")+" is not allowed on this gateway (allowed: "+strings.Join(e.cfg.AllowedChannels, ", ")+")")
	}
	e.checkEntitlement(&rs, st, &d, &r, pr, now)
	e.checkApproval(&rs, st, &r, pr, groups)
	e.checkRollout(&rs, st, key, &r, groups)
	staging := !rs.blocked()

	if d.InClinicalUse {
		rs.block(CodeInClinicalUse, "the device reports it is in clinical use; the install is offered once it reports it is not")
	}
	trusted := e.clock.Trusted()
	if !trusted {
		rs.block(CodeClockUntrusted, "the gateway clock is not trusted, so maintenance windows count as closed")
	} else {
		e.checkWindow(&rs, &dec, &d, &r, matched, now)
	}

	dec.Reasons = rs.ordered()
	dec.Offer = !rs.blocked()
	dec.Download = dec.Offer || (staging && trusted && !e.cfg.DownloadOnlyInWindow)
	return dec
}

// checkEntitlement appends the entitlement reason. Entitlement is checked
// whenever a document is loaded. Without one, it is not checked unless
// Config.EnforceEntitlements is set.
func (e *Evaluator) checkEntitlement(rs *reasons, st *runtimeState, d *Device, r *Release, pr *preparedRelease, now time.Time) {
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
	if pr.versionErr {
		return // reported as release-invalid already
	}
	res := ents.check(d, r, pr.version, now)
	if res.entitled {
		rs.pass(res.code, res.message)
	} else {
		rs.block(res.code, res.message)
	}
}

// checkRollout appends the reason from the rollout of r that applies to
// d: one where d is a member, else the first whose group d is in.
func (e *Evaluator) checkRollout(rs *reasons, st *runtimeState, key string, r *Release, groups []string) {
	list := st.rollouts[r.Target]
	if len(list) == 0 {
		return
	}
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

// reasons collects the reasons of one decision in a fixed buffer, which
// stays on the stack, so a decision allocates its reasons once, in
// ordered.
type reasons struct {
	buf      [12]Reason
	n        int
	overflow []Reason // beyond len(buf), rarely used
	nblocks  int
}

func (rs *reasons) block(code, msg string) {
	rs.add(Reason{Code: code, Message: msg, Blocking: true})
}

func (rs *reasons) pass(code, msg string) {
	rs.add(Reason{Code: code, Message: msg})
}

func (rs *reasons) add(r Reason) {
	if rs.n < len(rs.buf) {
		rs.buf[rs.n] = r
		rs.n++
	} else {
		rs.overflow = append(rs.overflow, r)
	}
	if r.Blocking {
		rs.nblocks++
	}
}

func (rs *reasons) blocked() bool { return rs.nblocks > 0 }

// ordered returns the reasons with the blocking ones first, each group in
// the order added.
func (rs *reasons) ordered() []Reason {
	out := make([]Reason, 0, rs.n+len(rs.overflow))
	for _, blocking := range [2]bool{true, false} {
		for _, r := range rs.buf[:rs.n] {
			if r.Blocking == blocking {
				out = append(out, r)
			}
		}
		for _, r := range rs.overflow {
			if r.Blocking == blocking {
				out = append(out, r)
			}
		}
	}
	return out
}
