package policy

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// deviceSchedule is the schedule for one combination of matched groups,
// with a small cache of recent window results, because every device in
// the same groups gets the same result for the same time and install
// duration.
type deviceSchedule struct {
	s       *Schedule
	group   *compiledGroup // whose windows apply, or nil when none has windows
	mu      sync.Mutex     // serialises writers of results
	results atomic.Pointer[map[time.Duration]*atomic.Pointer[windowResult]]
}

// maxCachedDurations bounds the window results kept per schedule; past
// it, results for further install durations are computed per decision.
const maxCachedDurations = 1024

// slot returns the cache slot for an install duration, or nil when the
// cache is full.
func (ds *deviceSchedule) slot(d time.Duration) *atomic.Pointer[windowResult] {
	if m := ds.results.Load(); m != nil {
		if p, ok := (*m)[d]; ok {
			return p
		}
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	old := ds.results.Load()
	next := map[time.Duration]*atomic.Pointer[windowResult]{}
	if old != nil {
		if p, ok := (*old)[d]; ok {
			return p
		}
		if len(*old) >= maxCachedDurations {
			return nil
		}
		next = maps.Clone(*old)
	}
	p := new(atomic.Pointer[windowResult])
	next[d] = p
	ds.results.Store(&next)
	return p
}

// windowResult is the window reason for one install duration. The state
// it describes holds for every time in [from, until), and only the relative
// part of the message ("in 6d11h"), counted to relTo, changes within it.
type windowResult struct {
	duration    time.Duration
	from, until int64 // Unix seconds
	reason      Reason
	nextOpening time.Time
	closesAt    time.Time
	// The message is prefix + durationText(relTo - now) + suffix when
	// relTo is set, and relText is the relative part in reason.Message.
	prefix, suffix string
	relTo          time.Time
	relText        string
}

// scheduleFor returns the schedule that governs a device in the matched
// groups: the windows of the first group that has any, minus the
// blackouts of all of them. Schedules are cached per combination, keyed
// by a bit mask of Config positions when there are at most 64 groups.
func (e *Evaluator) scheduleFor(matched []*compiledGroup) *deviceSchedule {
	if len(e.groups) <= 64 {
		var mask uint64
		for _, g := range matched {
			if len(g.windows) > 0 || len(g.blackouts) > 0 {
				mask |= 1 << uint(g.index)
			}
		}
		if m := e.byMask.Load(); m != nil {
			if ds, ok := (*m)[mask]; ok {
				return ds
			}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		old := e.byMask.Load()
		if old != nil {
			if ds, ok := (*old)[mask]; ok {
				return ds
			}
		}
		next := make(map[uint64]*deviceSchedule, 1)
		if old != nil {
			for k, v := range *old {
				next[k] = v
			}
		}
		ds := newDeviceSchedule(matched)
		next[mask] = ds
		e.byMask.Store(&next)
		return ds
	}
	key := make([]byte, 0, 32)
	for _, g := range matched {
		if len(g.windows) > 0 || len(g.blackouts) > 0 {
			key = append(key, byte(g.index>>24), byte(g.index>>16), byte(g.index>>8), byte(g.index))
		}
	}
	if v, ok := e.schedules.Load(string(key)); ok {
		return v.(*deviceSchedule)
	}
	v, _ := e.schedules.LoadOrStore(string(key), newDeviceSchedule(matched))
	return v.(*deviceSchedule)
}

func newDeviceSchedule(matched []*compiledGroup) *deviceSchedule {
	ds := &deviceSchedule{}
	var windows []Window
	var blackouts []Blackout
	for _, g := range matched {
		if ds.group == nil && len(g.windows) > 0 {
			ds.group, windows = g, g.windows
		}
		blackouts = append(blackouts, g.blackouts...)
	}
	ds.s = NewSchedule(windows, blackouts)
	return ds
}

// checkWindow appends the maintenance-window reason and fills the
// decision's NextOpening and ClosesAt.
func (e *Evaluator) checkWindow(rs *reasons, dec *Decision, d *Device, r *Release, matched []*compiledGroup, now time.Time) {
	ds := e.scheduleFor(matched)
	if e.cfg.MaintenanceModeBypassesWindows && d.InMaintenance {
		if st := ds.s.Status(now); st.Blackout == nil {
			rs.pass(CodeMaintenanceMode, "the device reports it is in maintenance mode, so its maintenance windows do not apply")
			return
		}
	}
	// Windows, blackouts and periods start and end on whole seconds, so
	// windows are evaluated at whole-second resolution: the time is
	// truncated and the install duration rounded up to a second.
	now = now.Truncate(time.Second)
	duration := max(r.InstallDuration, 0)
	if rem := duration % time.Second; rem != 0 {
		duration += time.Second - rem
	}
	slot := ds.slot(duration)
	if slot == nil {
		res := ds.evaluate(duration, now)
		rs.add(res.reason)
		dec.NextOpening, dec.ClosesAt = res.nextOpening, res.closesAt
		return
	}
	at := now.Unix()
	res := slot.Load()
	switch {
	case res == nil || at < res.from || at >= res.until:
		res = ds.evaluate(duration, now)
		slot.Store(res)
	case !res.relTo.IsZero():
		if rel := durationText(res.relTo.Sub(now)); rel != res.relText {
			fresh := *res
			fresh.relText = rel
			fresh.reason.Message = res.prefix + rel + res.suffix
			res = &fresh
			slot.Store(res)
		}
	}
	rs.add(res.reason)
	dec.NextOpening, dec.ClosesAt = res.nextOpening, res.closesAt
}

// evaluate computes the window reason for an install of duration at now,
// and how long it holds.
func (ds *deviceSchedule) evaluate(duration time.Duration, now time.Time) *windowResult {
	s, wg := ds.s, ds.group
	sec := now.Unix()
	res := &windowResult{duration: duration, from: sec, until: sec + searchHorizon}
	block := func(code, msg string) { res.reason = Reason{Code: code, Message: msg, Blocking: true} }
	pass := func(code, msg string) { res.reason = Reason{Code: code, Message: msg} }
	relative := func(code, prefix string, to time.Time, suffix string) {
		res.prefix, res.relTo, res.suffix = prefix, to, suffix
		res.relText = durationText(to.Sub(now))
		block(code, prefix+res.relText+suffix)
	}
	// nextFit fills the next opening and ends the result's validity there.
	nextFit := func() (Period, bool) {
		p, ok := s.NextFit(now, duration)
		if ok {
			res.nextOpening = p.Start
			res.until = min(res.until, p.Start.Unix())
		}
		return p, ok
	}
	st := s.Status(now)
	if st.Open {
		res.until = min(res.until, st.Current.End.Unix())
	} else if st.HasNext {
		res.until = min(res.until, st.Next.Start.Unix())
	}
	// A blackout that starts later changes the reason even while the
	// window stays closed.
	for i := range s.blackouts {
		if b := &s.blackouts[i]; b.start > sec {
			res.until = min(res.until, b.start)
		}
	}
	groupText := ""
	if wg != nil {
		groupText = " (group " + wg.Name + ")"
	}
	switch {
	case st.Blackout != nil:
		res.until = min(res.until, st.Blackout.end)
		msg := "blackout " + st.Blackout.String() + " is in effect until " + localText(st.Blackout.End(), st.Blackout.loc)
		if p, ok := nextFit(); ok {
			msg += "; installs may next start " + localText(p.Start, p.Start.Location())
		}
		block(CodeBlackout, msg)
	case st.Open && (st.Current.Capped || !now.Add(duration).After(st.Current.End)):
		res.closesAt = st.Current.End
		if !st.Current.Capped {
			// The install stops fitting once less than duration is left.
			res.until = min(res.until, st.Current.End.Add(-duration).Unix()+1)
		}
		if wg == nil {
			pass(CodeAnyTime, "no maintenance window is configured for this device, so installs may start at any time")
		} else {
			pass(CodeWindowOpen, "window "+st.Current.Window.String()+groupText+" is open until "+localText(st.Current.End, st.Current.Window.loc))
		}
	case st.Open:
		res.closesAt = st.Current.End
		loc, what := time.UTC, "the next blackout starts"
		if st.Current.Window != nil {
			loc, what = st.Current.Window.loc, "the window closes"
		}
		suffix := ", before the install (" + durationText(duration) + ") could finish"
		if p, ok := nextFit(); ok {
			suffix += "; the next window long enough opens " + localText(p.Start, p.Start.Location())
		}
		relative(CodeWindowTooShort, what+" at "+localText(st.Current.End, loc)+", in ", st.Current.End, suffix)
	case st.Expired:
		end, _ := st.Last.Ends()
		block(CodeWindowExpired, "one-time window "+st.Last.String()+groupText+" expired "+localText(end, st.Last.loc)+" and no other window opens: add a window for the group")
	default:
		p, ok := nextFit()
		if !ok {
			block(CodeNoWindow, "the maintenance windows"+groupText+" never open long enough for the install ("+durationText(duration)+"): check the window specs")
			break
		}
		relative(CodeWindowClosed, "window opens "+localText(p.Start, p.Window.loc)+" (in ", p.Start, "): "+p.Window.String()+groupText)
	}
	return res
}

// localText formats t in loc for hospital IT: "Tue 2026-03-17 02:00
// Europe/Berlin".
func localText(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("Mon 2006-01-02 15:04") + " " + loc.String()
}
