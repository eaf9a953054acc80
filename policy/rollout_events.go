package policy

import (
	"fmt"
	"time"
)

// deviceEvent applies a join, leave, check-in, install report or retry.
func (a *applier) deviceEvent(ev Event) {
	r := a.r
	d, member := r.Devices[ev.Device]
	if ev.Kind == EventJoin {
		a.join(ev, d, member)
		return
	}
	if !member || d.State == DeviceRemoved {
		return // a device outside the rollout, which the gateway joins first
	}
	if ev.Kind == EventRetry {
		if d.State == DeviceFailed && !ev.At.Before(d.Since) {
			to := DeviceWaiting
			if (r.State == RolloutRunning || r.State == RolloutCompleted) && d.Wave <= r.Wave {
				to = DeviceOffered
			}
			d.Detail = ""
			a.device(ev.Device, d, to, ev.At, nonEmpty(ev.Detail, "retry requested by hospital IT"))
		}
		return
	}
	if ev.At.Before(d.LastEventAt) {
		return // stale: a newer report for this device was applied already
	}
	d.LastEventAt = ev.At
	switch ev.Kind {
	case EventLeave:
		r.Devices[ev.Device] = d
		if d.State == DeviceWaiting || d.State == DeviceOffered || d.State == DeviceInstalled {
			a.device(ev.Device, d, DeviceRemoved, ev.At, "left group "+r.Group)
		}
	case EventCheckIn:
		d.Version = ev.Version
		r.Devices[ev.Device] = d
		running := ev.Version != "" && CompareVersions(ev.Version, r.Version) == 0
		switch {
		case running && d.State != DeviceUpdated:
			d.Detail = ""
			a.device(ev.Device, d, DeviceUpdated, ev.At, "checked in running "+ev.Version)
		case !running && d.State == DeviceUpdated:
			d.Detail = "came back running " + ev.Version
			a.device(ev.Device, d, DeviceFailed, ev.At, "checked in running "+ev.Version+" after updating to "+r.Version)
		}
	case EventInstall:
		r.Devices[ev.Device] = d
		switch {
		case ev.OK && (d.State == DeviceWaiting || d.State == DeviceOffered || d.State == DeviceFailed):
			if d.State == DeviceFailed {
				d.OfferedAt = ev.At // a fresh timeout for the check-in that must follow
			}
			d.Detail = ""
			a.device(ev.Device, d, DeviceInstalled, ev.At, "reported a successful install")
		case !ev.OK && (d.State == DeviceWaiting || d.State == DeviceOffered || d.State == DeviceInstalled):
			d.Detail = nonEmpty(ev.Detail, "install failed")
			a.device(ev.Device, d, DeviceFailed, ev.At, "reported a failed install: "+d.Detail)
		}
	}
}

// join adds a device that joined the group. Before the start it waits
// for wave assignment. Afterwards it joins the final wave, so it is
// offered the release once that wave is open.
func (a *applier) join(ev Event, d RolloutDevice, member bool) {
	r := a.r
	if member && (d.State != DeviceRemoved || ev.At.Before(d.LastEventAt)) {
		return
	}
	from := ""
	if member {
		from = string(DeviceRemoved)
	}
	nd := RolloutDevice{State: DeviceWaiting, Since: ev.At, LastEventAt: ev.At}
	if r.State != RolloutPending {
		nd.Wave = max(r.Waves-1, 0)
	}
	r.Devices[ev.Device] = nd
	a.out = append(a.out, Transition{Device: ev.Device, Wave: nd.Wave, From: from, To: string(DeviceWaiting), At: ev.At, Reason: "joined group " + r.Group})
	if r.State == RolloutCompleted && nd.Wave <= r.Wave {
		a.device(ev.Device, nd, DeviceOffered, ev.At, "joined after the rollout completed")
	}
}

// evaluate checks the failure threshold and then advances waves. It runs
// once per Apply, so failures in several waves halt the rollout once.
func (a *applier) evaluate(at time.Time) {
	r := a.r
	if r.State != RolloutRunning {
		return
	}
	failed := r.Failures() - r.FailureBaseline
	offered := 0
	for _, d := range r.Devices {
		if d.Wave <= r.Wave && d.State != DeviceWaiting && d.State != DeviceRemoved {
			offered++
		}
	}
	threshold := r.Plan.threshold()
	switch {
	case failed >= threshold:
		a.rollout(RolloutHalted, at, fmt.Sprintf("halted: %d devices failed, threshold %d", failed, threshold))
		return
	case r.Plan.FailurePercent > 0 && offered > 0 && failed > 0 && failed*100 >= r.Plan.FailurePercent*offered:
		a.rollout(RolloutHalted, at, fmt.Sprintf("halted: %d of %d offered devices failed, threshold %d%%", failed, offered, r.Plan.FailurePercent))
		return
	}
	for {
		// Devices waiting in an open wave (late joiners, retries while
		// halted) are offered now.
		for _, k := range sortedKeys(r.Devices) {
			if d := r.Devices[k]; d.State == DeviceWaiting && d.Wave <= r.Wave {
				a.device(k, d, DeviceOffered, at, fmt.Sprintf("wave %d of %d is open", d.Wave+1, r.Waves))
			}
		}
		if !a.openWavesFinished() {
			return
		}
		if r.Wave >= r.Waves-1 {
			a.rollout(RolloutCompleted, at, fmt.Sprintf("completed: %d updated, %d failed", r.Count(DeviceUpdated), r.Failures()))
			return
		}
		a.openWave(r.Wave+1, at)
	}
}

func (a *applier) openWavesFinished() bool {
	for _, d := range a.r.Devices {
		if d.Wave > a.r.Wave {
			continue
		}
		switch d.State {
		case DeviceUpdated, DeviceFailed, DeviceRemoved:
		default:
			return false
		}
	}
	return true
}
