package policy

import (
	"strconv"
	"strings"
	"time"
)

// Explain renders a decision for `wardgate explain DEVICE RELEASE`:
// what was decided, then the blocking reasons in priority order, then
// the checks that passed. Times on the header lines are UTC, and reasons
// give local times in the window's zone. For example:
//
//	device:   Acme/SN1
//	release:  infusion-pump/3.2.0/image.bin
//	at:       2026-03-10T14:00:00Z
//	decision: withheld (download allowed)
//	next:     installs may start 2026-03-17T01:00:00Z
//	blocking:
//	  1. window-closed: window opens Tue 2026-03-17 02:00 Europe/Berlin (in 6d11h): Tue 02:00-04:00 Europe/Berlin (group icu)
//	passed:
//	  - upgrade: upgrade from 3.1.0 to 3.2.0
//	  - compatible: model IP-300 hardware revision B is supported
//	  - entitlement-not-checked: entitlement not checked: no entitlements document is loaded and enforcement is off
//	  - approved: approved automatically: no approval rules or approvals are configured
func Explain(d Decision) string {
	var b strings.Builder
	line := func(label, value string) {
		b.WriteString(label)
		b.WriteString(strings.Repeat(" ", max(1, 10-len(label))))
		b.WriteString(value)
		b.WriteByte('\n')
	}
	line("device:", nonEmpty(d.Device, "(unknown)"))
	line("release:", nonEmpty(d.Target, "(unknown)"))
	if !d.At.IsZero() {
		line("at:", d.At.UTC().Format(time.RFC3339))
	}
	verdict := "offered"
	if !d.Offer {
		verdict = "withheld"
		if d.Download {
			verdict += " (download allowed)"
		} else {
			verdict += " (download not allowed)"
		}
	}
	line("decision:", verdict)
	if !d.NextOpening.IsZero() {
		line("next:", "installs may start "+d.NextOpening.UTC().Format(time.RFC3339))
	}
	if !d.ClosesAt.IsZero() && d.Offer {
		line("closes:", d.ClosesAt.UTC().Format(time.RFC3339))
	}
	var blocking, passed []Reason
	for _, r := range d.Reasons {
		if r.Blocking {
			blocking = append(blocking, r)
		} else {
			passed = append(passed, r)
		}
	}
	if len(blocking) > 0 {
		b.WriteString("blocking:\n")
		for i, r := range blocking {
			b.WriteString("  " + strconv.Itoa(i+1) + ". " + r.Code + ": " + r.Message + "\n")
		}
	}
	if len(passed) > 0 {
		b.WriteString("passed:\n")
		for _, r := range passed {
			b.WriteString("  - " + r.Code + ": " + r.Message + "\n")
		}
	}
	return b.String()
}
