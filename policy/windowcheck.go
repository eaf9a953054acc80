package policy

import (
	"time"
)

// scheduleFor returns the schedule that governs a device in the matched
// groups: the windows of the first group that has any, minus the
// blackouts of all of them. Schedules are cached per combination, so each
// keeps its cache of periods across decisions. The returned group is the
// one whose windows apply, or nil.
func (e *Evaluator) scheduleFor(matched []*compiledGroup) (*Schedule, *compiledGroup) {
	var windowGroup *compiledGroup
	var key []byte
	var buf [32]byte
	key = buf[:0]
	for i, g := range matched {
		if windowGroup == nil && len(g.windows) > 0 {
			windowGroup = g
			key = append(key, 'w', byte(i>>8), byte(i))
		}
		if len(g.blackouts) > 0 {
			key = append(key, 'b', byte(i>>8), byte(i))
		}
	}
	// The key holds positions in matched, and matched follows Config
	// order, so add the group identities too.
	for _, g := range matched {
		if len(g.windows) > 0 || len(g.blackouts) > 0 {
			key = append(key, g.Name...)
			key = append(key, 0)
		}
	}
	if v, ok := e.schedules.Load(string(key)); ok {
		return v.(*Schedule), windowGroup
	}
	var windows []Window
	if windowGroup != nil {
		windows = windowGroup.windows
	}
	var blackouts []Blackout
	for _, g := range matched {
		blackouts = append(blackouts, g.blackouts...)
	}
	s := NewSchedule(windows, blackouts)
	v, _ := e.schedules.LoadOrStore(string(key), s)
	return v.(*Schedule), windowGroup
}

// checkWindow appends the maintenance-window reason and fills the
// decision's NextOpening and ClosesAt.
func (e *Evaluator) checkWindow(rs *reasons, dec *Decision, d Device, r Release, matched []*compiledGroup, now time.Time) {
	s, wg := e.scheduleFor(matched)
	st := s.Status(now)
	groupText := ""
	if wg != nil {
		groupText = " (group " + wg.Name + ")"
	}
	if st.Blackout != nil {
		msg := "blackout " + st.Blackout.String() + " is in effect until " + localText(st.Blackout.End(), st.Blackout.loc)
		if p, ok := s.NextFit(now, r.InstallDuration); ok {
			dec.NextOpening = p.Start
			msg += "; installs may next start " + localText(p.Start, p.Start.Location())
		}
		rs.block(CodeBlackout, msg)
		return
	}
	if e.cfg.MaintenanceModeBypassesWindows && d.InMaintenance {
		rs.pass(CodeMaintenanceMode, "the device reports it is in maintenance mode, so its maintenance windows do not apply")
		return
	}
	if wg == nil {
		if st.Open {
			dec.ClosesAt = st.Current.End
			if !st.Current.Capped && now.Add(r.InstallDuration).After(st.Current.End) {
				e.blockTooShort(rs, dec, s, st, r, now, "the next blackout starts")
				return
			}
		}
		rs.pass(CodeAnyTime, "no maintenance window is configured for this device, so installs may start at any time")
		return
	}
	if st.Open {
		dec.ClosesAt = st.Current.End
		if st.Current.Capped || !now.Add(r.InstallDuration).After(st.Current.End) {
			rs.pass(CodeWindowOpen, "window "+st.Current.Window.String()+groupText+" is open until "+localText(st.Current.End, st.Current.Window.loc))
			return
		}
		e.blockTooShort(rs, dec, s, st, r, now, "the window closes")
		return
	}
	if st.Expired {
		end, _ := st.Last.Ends()
		rs.block(CodeWindowExpired, "one-time window "+st.Last.String()+groupText+" expired "+localText(end, st.Last.loc)+" and no other window opens: add a window for the group")
		return
	}
	p, ok := s.NextFit(now, r.InstallDuration)
	if !ok {
		rs.block(CodeNoWindow, "the maintenance windows"+groupText+" never open long enough for the install ("+durationText(r.InstallDuration)+"): check the window specs")
		return
	}
	dec.NextOpening = p.Start
	rs.block(CodeWindowClosed, "window opens "+localText(p.Start, p.Window.loc)+" (in "+durationText(p.Start.Sub(now))+"): "+p.Window.String()+groupText)
}

func (e *Evaluator) blockTooShort(rs *reasons, dec *Decision, s *Schedule, st WindowStatus, r Release, now time.Time, what string) {
	loc := time.UTC
	if st.Current.Window != nil {
		loc = st.Current.Window.loc
	}
	msg := what + " at " + localText(st.Current.End, loc) + ", in " + durationText(st.Current.End.Sub(now)) +
		", before the install (" + durationText(r.InstallDuration) + ") could finish"
	if p, ok := s.NextFit(now, r.InstallDuration); ok {
		dec.NextOpening = p.Start
		msg += "; the next window long enough opens " + localText(p.Start, p.Start.Location())
	}
	rs.block(CodeWindowTooShort, msg)
}

// localText formats t in loc for hospital IT: "Tue 2026-03-17 02:00
// Europe/Berlin".
func localText(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("Mon 2006-01-02 15:04") + " " + loc.String()
}
