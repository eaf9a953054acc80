package gateway

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/console"
	"github.com/wardgate/wardgate/policy"
)

// The views below feed both the console and the JSON admin API.

func (g *Gateway) overview(ctx context.Context) (console.Overview, error) {
	now := time.Now()
	ms := g.mirror.Status()
	o := console.Overview{
		Site: g.siteID, Now: now,
		LastRefresh: ms.LastRefresh, LastRefreshError: ms.LastError,
		MetadataVersion: ms.TimestampVersion, MetadataExpires: ms.TimestampExpires, Targets: ms.Targets,
		AuditHead: g.audit.Head().Seq,
	}
	switch {
	case g.tunnel == nil:
		o.TunnelState = "offline"
		o.Alerts = append(o.Alerts, console.Alert{Level: "info", Message: "No upstream hub is configured: the gateway serves its cache only."})
	case g.tunnel.Connected():
		o.TunnelState = "connected"
	default:
		o.TunnelState = "reconnecting"
	}
	if g.tunnel != nil {
		ts := g.tunnel.Status()
		o.TunnelDials = ts.Connections
		o.TunnelError = ts.LastError
		if ts.State != "" {
			o.TunnelState = ts.State
		}
		o.TunnelTransport = ts.Transport
		if ts.Via != "" {
			o.TunnelTransport += " via proxy " + ts.Via
		}
		switch {
		case ts.Refusal != "":
			o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "The hub rejects this gateway: " + ts.Refusal})
		case !g.tunnel.Connected():
			o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: "The tunnel to the hub is down; devices are served from the cache. " + o.TunnelError})
		}
		if ts.TLSInspection != "" {
			o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "TLS inspection breaks the tunnel: " + ts.TLSInspection})
		}
		if !ts.QUICBlockedSince.IsZero() {
			o.Alerts = append(o.Alerts, console.Alert{Level: "info", Message: "Outbound QUIC gets no response since " + ts.QUICBlockedSince.Format(time.RFC3339) + "; the tunnel runs over TCP."})
		}
	}
	switch {
	case ms.TimestampVersion == 0:
		o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: "No verified update metadata yet: the gateway has nothing to offer devices."})
	case !ms.TimestampExpires.IsZero() && now.After(ms.TimestampExpires):
		o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "Update metadata expired " + ms.TimestampExpires.Format(time.RFC3339) + ": no new offers until the hub refreshes it."})
	case !ms.TimestampExpires.IsZero() && ms.TimestampExpires.Sub(now) < 6*time.Hour:
		o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: "Update metadata expires in " + ms.TimestampExpires.Sub(now).Round(time.Minute).String() + "."})
	}
	if ms.LastError != "" {
		o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: "Last metadata refresh failed: " + ms.LastError})
	}
	u := g.blobs.Usage()
	o.Cache = console.CacheUse{StoredBytes: u.StoredBytes, MaxBytes: u.MaxBytes, FreeBytes: u.FilesystemFree, Blobs: u.Blobs, Fills: u.Fills}
	if u.MaxBytes > 0 && u.StoredBytes > u.MaxBytes*9/10 {
		o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: "The blob cache is over 90% of its bound."})
	}
	if g.telemetry != nil {
		qs := g.telemetry.queue.Stats()
		o.Telemetry = console.TelemetryQueue{Batches: qs.Batches, Bytes: qs.Bytes, MaxBytes: qs.MaxBytes}
		if qs.Rejecting != nil {
			o.Telemetry.Refusing = qs.Rejecting.Error()
			o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "The telemetry queue rejects device batches: " + qs.Rejecting.Error()})
		}
		if g.telemetry.relay != nil {
			o.Telemetry.PendingUploads, _ = g.telemetry.relay.Pending()
		}
		if oq, ok := any(g.telemetry.queue).(interface{ Oldest() time.Time }); ok {
			if t := oq.Oldest(); !t.IsZero() {
				o.Telemetry.OldestAge = now.Sub(t)
			}
		}
	}
	devs, err := g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return o, fmt.Errorf("listing devices: %w", err)
	}
	o.Devices = len(devs)
	byState := map[string]int{}
	for _, d := range devs {
		byState[string(d.State)]++
	}
	for _, k := range slices.Sorted(maps.Keys(byState)) {
		o.DevicesByState = append(o.DevicesByState, console.Count{Label: k, N: byState[k]})
	}
	_, rs := g.admin.rollouts.snapshot()
	for _, r := range rs {
		if r.active() {
			o.ActiveRollouts++
		}
		if r.Rollout.State == policy.RolloutHalted {
			o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "Rollout " + r.Rollout.ID + " of " + r.Rollout.Target + " is halted: " + r.Rollout.Reason})
		}
	}
	g.admin.mu.Lock()
	if g.admin.chainOK == 0 {
		o.Alerts = append(o.Alerts, console.Alert{Level: "critical", Message: "The audit trail does not verify: " + g.admin.lastVerify})
	}
	g.admin.mu.Unlock()
	if f := g.admin.syslog; f != nil {
		lag := o.AuditHead - min(f.Delivered(), o.AuditHead)
		state := "connected"
		if !f.Connected() {
			state = "disconnected"
			if err := f.LastError(); err != nil {
				state += ": " + err.Error()
			}
			if lag > 0 {
				o.Alerts = append(o.Alerts, console.Alert{Level: "warning", Message: fmt.Sprintf("The syslog collector is unreachable; %d audit records wait for it.", lag)})
			}
		}
		o.AuditForwarding = fmt.Sprintf("%s to %s, %d records behind", state, g.cfg.Audit.Syslog.Address, lag)
	}
	return o, nil
}

func deviceRow(g *Gateway, d discovery.Device) console.DeviceRow {
	return console.DeviceRow{
		Manufacturer: d.Manufacturer, Serial: d.Serial, Model: d.Model, HardwareRevision: d.HardwareRevision,
		Version: d.Version, Class: d.DeviceClass, State: string(d.State), Verified: d.Verified,
		InClinicalUse: d.InClinicalUse, InMaintenance: d.InMaintenance, LastSeen: d.LastSeen, LastCheckIn: d.LastCheckIn,
		Interfaces: d.Interfaces, Groups: g.policy.GroupsOf(policyDevice(d, g.siteID)),
	}
}

func (g *Gateway) deviceList(ctx context.Context, f console.DeviceFilter) (console.DeviceList, error) {
	all, err := g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return console.DeviceList{}, fmt.Errorf("listing devices: %w", err)
	}
	var out console.DeviceList
	out.Total = len(all)
	sets := [5]map[string]bool{{}, {}, {}, {}, {}}
	q := strings.ToLower(strings.TrimSpace(f.Query))
	for _, d := range all {
		for i, v := range []string{d.Manufacturer, d.Model, d.Version, d.DeviceClass, string(d.State)} {
			if v != "" {
				sets[i][v] = true
			}
		}
		if (f.Manufacturer != "" && d.Manufacturer != f.Manufacturer) || (f.Model != "" && d.Model != f.Model) ||
			(f.Version != "" && d.Version != f.Version) || (f.Class != "" && d.DeviceClass != f.Class) || (f.State != "" && string(d.State) != f.State) {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(strings.Join([]string{d.Manufacturer, d.Serial, d.Model, d.Version, d.DeviceClass}, " ")), q) {
			continue
		}
		out.Devices = append(out.Devices, deviceRow(g, d))
	}
	slices.SortFunc(out.Devices, func(a, b console.DeviceRow) int {
		return cmp.Or(cmp.Compare(a.Manufacturer, b.Manufacturer), cmp.Compare(a.Serial, b.Serial))
	})
	out.Manufacturers, out.Models, out.Versions = slices.Sorted(maps.Keys(sets[0])), slices.Sorted(maps.Keys(sets[1])), slices.Sorted(maps.Keys(sets[2]))
	out.Classes, out.States = slices.Sorted(maps.Keys(sets[3])), slices.Sorted(maps.Keys(sets[4]))
	slices.SortFunc(out.Versions, policy.CompareVersions)
	return out, nil
}

func (g *Gateway) deviceDetail(ctx context.Context, manufacturer, serial string) (console.DeviceDetail, error) {
	d, err := g.inventory.Get(ctx, manufacturer, serial)
	if err != nil {
		return console.DeviceDetail{}, fmt.Errorf("device %s/%s is not in the inventory: %w", manufacturer, serial, err)
	}
	out := console.DeviceDetail{DeviceRow: deviceRow(g, d), FirstSeen: d.FirstSeen}
	for _, k := range slices.Sorted(maps.Keys(d.Components)) {
		out.Components = append(out.Components, console.Count2{Name: k, Value: d.Components[k]})
	}
	for _, a := range d.Addresses {
		out.Addresses = append(out.Addresses, fmt.Sprintf("%v", a.Address))
	}
	out.Addresses = slices.Compact(out.Addresses)
	hist, err := g.inventory.History(ctx, manufacturer, serial)
	if err != nil {
		return out, fmt.Errorf("reading the history of %s/%s: %w", manufacturer, serial, err)
	}
	for i := len(hist) - 1; i >= 0 && len(out.History) < 200; i-- {
		ev := hist[i]
		he := console.HistoryEntry{Time: ev.Time, Kind: ev.Kind, Version: ev.Device.Version}
		for _, k := range slices.Sorted(maps.Keys(ev.Details)) {
			if ev.Details[k] == "" {
				continue
			}
			he.Details = append(he.Details, console.Count2{Name: k, Value: ev.Details[k]})
		}
		out.History = append(out.History, he)
	}
	pd := policyDevice(d, g.siteID)
	for _, t := range g.releaseTargets() {
		dec := g.policy.Decide(pd, policyRelease(t))
		dd := console.DeviceDecision{Target: t.Path, Version: t.Meta.Version, Offer: dec.Offer}
		for _, r := range dec.Reasons {
			dd.Reasons = append(dd.Reasons, console.Reason{Code: r.Code, Message: r.Message, Blocking: r.Blocking})
		}
		out.Decisions = append(out.Decisions, dd)
	}
	return out, nil
}

// releaseTargets returns the cached releases, by product then version.
func (g *Gateway) releaseTargets() []cache.Target {
	var out []cache.Target
	for _, t := range g.mirror.Targets() {
		if t.HasMeta && t.Meta.Kind == cache.KindRelease {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b cache.Target) int {
		return cmp.Or(cmp.Compare(a.Meta.Product, b.Meta.Product), -policy.CompareVersions(a.Meta.Version, b.Meta.Version))
	})
	return out
}

func (g *Gateway) releaseViews(ctx context.Context) ([]console.Release, error) {
	devs, err := g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	approvals, rollouts := g.admin.rollouts.snapshot()
	var groups []string
	for _, gr := range g.policy.Config().Groups {
		groups = append(groups, gr.Name)
	}
	var out []console.Release
	for _, t := range g.releaseTargets() {
		rel := policyRelease(t)
		v := console.Release{Target: t.Path, Product: t.Meta.Product, Version: t.Meta.Version, Channel: t.Meta.Channel,
			Models: t.Meta.Models, SecurityFix: t.Meta.SecurityFix, Length: t.Length, Groups: groups}
		for _, a := range approvals {
			if a.Target == t.Path {
				v.Approvals = append(v.Approvals, console.Approval{Group: a.Group, By: a.By, At: a.At})
			}
		}
		withheld := map[string]int{}
		approvedNote, blockedNote := "", ""
		for _, d := range devs {
			dec := g.policy.Decide(policyDevice(d, g.siteID), rel)
			b := dec.Blocking()
			for _, r := range dec.Reasons {
				switch {
				case r.Code == policy.CodeApproved && approvedNote == "" && (len(b) == 0 || !ineligible[b[0].Code]):
					approvedNote = r.Message
				case r.Code == policy.CodeNotApproved && blockedNote == "" && len(b) > 0 && b[0].Code == policy.CodeNotApproved:
					blockedNote = r.Message
				}
			}
			if dec.Offer {
				v.Offered++
				continue
			}
			if len(b) > 0 {
				withheld[b[0].Code]++
			}
		}
		for code, n := range withheld {
			v.Withheld = append(v.Withheld, console.Count{Label: code, N: n})
		}
		slices.SortFunc(v.Withheld, func(a, b console.Count) int { return cmp.Or(b.N-a.N, cmp.Compare(a.Label, b.Label)) })
		v.Approved = approvedNote != "" || len(v.Approvals) > 0
		switch {
		case len(v.Approvals) > 0:
			last := v.Approvals[len(v.Approvals)-1]
			v.ApprovalNote = fmt.Sprintf("approved for %s by %s on %s", groupName(last.Group), last.By, last.At.Format("2006-01-02 15:04"))
		case approvedNote != "":
			v.ApprovalNote = approvedNote
		case blockedNote != "":
			v.ApprovalNote = blockedNote
		default:
			v.ApprovalNote = "no device can take this release"
		}
		for _, r := range rollouts {
			if r.Rollout.Target == t.Path {
				v.Rollouts = append(v.Rollouts, rolloutView(r))
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func rolloutView(r rolloutRecord) console.Rollout {
	ro := r.Rollout
	v := console.Rollout{ID: ro.ID, Target: ro.Target, Version: ro.Version, Group: ro.Group, State: string(ro.State), Reason: ro.Reason,
		Paused: r.Paused && ro.State == policy.RolloutRunning, Wave: ro.Wave, Waves: ro.Waves, CreatedAt: ro.CreatedAt, StartedAt: ro.StartedAt}
	if v.Paused {
		v.Reason = "paused by " + r.PausedBy
	}
	waves := make([]console.WaveProgress, max(ro.Waves, 1))
	for i := range waves {
		waves[i].Index, waves[i].Open = i, i <= ro.Wave
	}
	for _, d := range ro.Devices {
		if d.Wave < 0 || d.Wave >= len(waves) {
			continue
		}
		w := &waves[d.Wave]
		w.Devices++
		switch d.State {
		case policy.DeviceWaiting:
			w.Waiting++
		case policy.DeviceOffered:
			w.Offered++
		case policy.DeviceInstalled:
			w.Installed++
		case policy.DeviceUpdated:
			w.Updated++
		case policy.DeviceFailed:
			w.Failed++
		case policy.DeviceRemoved:
			w.Removed++
		}
	}
	v.WaveProgress = waves
	for _, w := range waves {
		v.Totals.Devices += w.Devices
		v.Totals.Updated += w.Updated
		v.Totals.Failed += w.Failed
	}
	return v
}

// windowsView lays out each group's install periods and blackouts from
// from for days days, in the zone of the group's first window.
func (g *Gateway) windowsView(ctx context.Context, from time.Time, days int) (console.Windows, error) {
	to := from.AddDate(0, 0, days)
	out := console.Windows{From: from, To: to, Location: from.Location(), ClockTrusted: systemClock{}.Trusted()}
	devs, err := g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return out, fmt.Errorf("listing devices: %w", err)
	}
	members := map[string]int{}
	unscheduled := 0
	cfg := g.policy.Config()
	for _, d := range devs {
		gs := g.policy.GroupsOf(policyDevice(d, g.siteID))
		for _, n := range gs {
			members[n]++
		}
		scheduled := false
		for _, gr := range cfg.Groups {
			if len(gr.Windows) > 0 && slices.Contains(gs, gr.Name) {
				scheduled = true
			}
		}
		if !scheduled {
			unscheduled++
		}
	}
	for _, gr := range cfg.Groups {
		gw := console.GroupWindows{Name: gr.Name, Specs: gr.Windows, Blackouts: gr.Blackouts, Devices: members[gr.Name], AnyTime: len(gr.Windows) == 0}
		var wins []policy.Window
		var bos []policy.Blackout
		for _, s := range gr.Windows {
			w, err := policy.ParseWindow(s)
			if err != nil {
				gw.Error = err.Error()
				continue
			}
			wins = append(wins, w)
		}
		for _, s := range gr.Blackouts {
			b, err := policy.ParseBlackout(s)
			if err != nil {
				gw.Error = err.Error()
				continue
			}
			bos = append(bos, b)
			if b.End().After(from) && b.Start().Before(to) {
				gw.Periods = append(gw.Periods, console.Period{Start: b.Start(), End: b.End(), Label: "blackout", Blackout: true})
			}
		}
		if len(wins) > 0 {
			sched := policy.NewSchedule(wins, bos)
			t := from
			for i := 0; i < 500 && t.Before(to); i++ {
				st := sched.Status(t)
				if st.Expired {
					gw.Expired = true
				}
				var p policy.Period
				switch {
				case st.Open:
					p = st.Current
				case st.HasNext:
					p = st.Next
				default:
					i = 500
					continue
				}
				if !p.Start.Before(to) || !p.End.After(t) {
					break
				}
				label := "window"
				if p.Window != nil {
					label = p.Window.String()
				}
				gw.Periods = append(gw.Periods, console.Period{Start: p.Start, End: p.End, Label: label})
				t = p.End
			}
		}
		out.Groups = append(out.Groups, gw)
	}
	if unscheduled > 0 && len(cfg.Groups) > 0 {
		out.Groups = append(out.Groups, console.GroupWindows{Name: "devices in no scheduled group", Devices: unscheduled, AnyTime: true})
	}
	return out, nil
}
