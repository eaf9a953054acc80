package policy

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// icuConfig has a weekly window for the ICU, a blackout for all, and a
// one-time window for one explicitly listed device.
func icuConfig() Config {
	return Config{Groups: []Group{
		{Name: "or-override", Devices: []string{"Acme/OR1"}, Windows: []string{"2026-03-14 02:00-06:00 Europe/Berlin"}},
		{Name: "icu", Departments: []string{"ICU"}, Windows: []string{"Tue 02:00-04:00 Europe/Berlin"}},
		{Name: "pumps", DeviceClasses: []string{"infusion-pump"}, Windows: []string{"daily 12:00-13:00 Europe/Berlin"}},
		{Name: "site", Blackouts: []string{"2026-12-22..2026-12-26 Europe/Berlin"}},
	}}
}

func TestDecideWindows(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(*Config)
		clock    FixedClock
		device   func(*Device)
		release  func(*Release)
		wantCode string // main blocking code, or "" for an offer
		wantMsg  string // part of that reason's message, or of the window pass reason
		download bool
	}{
		{name: "open window", clock: FixedClock{T: mustTimeNoT("2026-03-10T01:30:00Z")}, wantMsg: "window Tue 02:00-04:00 Europe/Berlin (group icu) is open until Tue 2026-03-10 04:00 Europe/Berlin"},
		{name: "closed window names the opening", clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")}, wantCode: CodeWindowClosed,
			wantMsg: "window opens Tue 2026-03-17 02:00 Europe/Berlin (in 6d11h)", download: true},
		{name: "install does not fit before the close", clock: FixedClock{T: mustTimeNoT("2026-03-10T02:45:00Z")}, wantCode: CodeWindowTooShort,
			wantMsg: "the window closes at Tue 2026-03-10 04:00 Europe/Berlin, in 15m, before the install (20m) could finish; the next window long enough opens Tue 2026-03-17 02:00", download: true},
		{name: "install fits exactly", clock: FixedClock{T: mustTimeNoT("2026-03-10T02:40:00Z")}},
		{name: "downloads only in windows", cfg: func(c *Config) { c.DownloadOnlyInWindow = true }, clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")}, wantCode: CodeWindowClosed},
		{name: "clinical use", clock: FixedClock{T: mustTimeNoT("2026-03-10T01:30:00Z")}, device: func(d *Device) { d.InClinicalUse = true }, wantCode: CodeInClinicalUse, download: true},
		{name: "untrusted clock closes windows", clock: FixedClock{T: mustTimeNoT("2026-03-10T01:30:00Z"), Untrusted: true}, wantCode: CodeClockUntrusted},
		{name: "blackout", clock: FixedClock{T: mustTimeNoT("2026-12-22T01:30:00Z")}, wantCode: CodeBlackout,
			wantMsg: "blackout 2026-12-22..2026-12-26 Europe/Berlin is in effect until Sun 2026-12-27 00:00 Europe/Berlin; installs may next start Tue 2026-12-29 02:00", download: true},
		{name: "first group with windows wins", clock: FixedClock{T: mustTimeNoT("2026-03-10T11:30:00Z")}, device: func(d *Device) { d.Department = "OR" }, wantMsg: "(group pumps)"},
		{name: "expired one-time window", clock: FixedClock{T: mustTimeNoT("2026-04-01T00:00:00Z")}, device: func(d *Device) { d.Serial = "OR1" }, wantCode: CodeWindowExpired,
			wantMsg: "one-time window 2026-03-14 02:00-06:00 Europe/Berlin (group or-override) expired Sat 2026-03-14 06:00 Europe/Berlin", download: true},
		{name: "no group windows means any time", clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")}, device: func(d *Device) { d.Department, d.DeviceClass = "OR", "monitor" }, wantMsg: "installs may start at any time"},
		{name: "maintenance mode bypass", cfg: func(c *Config) { c.MaintenanceModeBypassesWindows = true }, clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")},
			device: func(d *Device) { d.InMaintenance = true }, wantMsg: "maintenance mode"},
		{name: "maintenance mode without the switch", clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")}, device: func(d *Device) { d.InMaintenance = true }, wantCode: CodeWindowClosed, download: true},
		{name: "compatibility outranks windows", clock: FixedClock{T: mustTimeNoT("2026-03-10T14:00:00Z")}, device: func(d *Device) { d.HardwareRevision = "A" }, wantCode: CodeHardwareUnsupported,
			wantMsg: "hardware revision A is not supported"},
		{name: "channel not allowed", cfg: func(c *Config) { c.AllowedChannels = []string{"stable"} }, clock: FixedClock{T: mustTimeNoT("2026-03-10T01:30:00Z")},
			release: func(r *Release) { r.Channel = "beta" }, wantCode: CodeChannelNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := icuConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			e, err := NewEvaluator(cfg, tc.clock)
			if err != nil {
				t.Fatal(err)
			}
			d, r := baseDevice(), baseRelease()
			if tc.device != nil {
				tc.device(&d)
			}
			if tc.release != nil {
				tc.release(&r)
			}
			dec := e.Decide(d, r)
			if tc.wantCode == "" {
				if !dec.Offer || !dec.Download {
					t.Fatalf("got offer %v download %v (%v), want both", dec.Offer, dec.Download, dec.Reasons)
				}
			} else {
				if dec.Offer {
					t.Fatalf("got offer, want %s", tc.wantCode)
				}
				if dec.Reasons[0].Code != tc.wantCode {
					t.Fatalf("got main reason %s (%s), want %s", dec.Reasons[0].Code, dec.Reasons[0].Message, tc.wantCode)
				}
				if dec.Download != tc.download {
					t.Fatalf("got download %v, want %v", dec.Download, tc.download)
				}
			}
			if tc.wantMsg != "" && !anyReasonContains(dec, tc.wantMsg) {
				t.Fatalf("got reasons %v, want one containing %q", dec.Reasons, tc.wantMsg)
			}
		})
	}
}

func mustTimeNoT(s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return v
}

func anyReasonContains(d Decision, s string) bool {
	for _, r := range d.Reasons {
		if strings.Contains(r.Message, s) {
			return true
		}
	}
	return false
}

func TestDecideApprovals(t *testing.T) {
	now := mustTimeNoT("2026-03-10T14:00:00Z")
	groups := []Group{{Name: "icu", Departments: []string{"ICU"}}, {Name: "or", Departments: []string{"OR"}}}
	tests := []struct {
		name      string
		cfg       Config
		approvals []Approval
		release   func(*Release)
		offer     bool
		wantMsg   string
	}{
		{name: "automatic by default", cfg: Config{Groups: groups}, offer: true, wantMsg: "approved automatically: no approval rules"},
		{name: "switch requires approval", cfg: Config{Groups: groups, RequireApproval: true}, wantMsg: "awaits approval for group icu"},
		{name: "explicit approval for the group", cfg: Config{Groups: groups, RequireApproval: true},
			approvals: []Approval{{Target: "infusion-pump/3.2.0/image.bin", Group: "icu", By: "token:it-7", At: now}}, offer: true, wantMsg: "approved by token:it-7 for group icu on 2026-03-10"},
		{name: "approval for another group", cfg: Config{Groups: groups},
			approvals: []Approval{{Target: "infusion-pump/3.2.0/image.bin", Group: "or"}}, wantMsg: "awaits approval"},
		{name: "approval for every device", cfg: Config{Groups: groups},
			approvals: []Approval{{Target: "infusion-pump/3.2.0/image.bin"}}, offer: true, wantMsg: "for every device"},
		{name: "security-fix rule approves a fix", cfg: Config{Groups: groups, ApprovalRules: []ApprovalRule{{Name: "security fixes", SecurityFixesOnly: true}}},
			release: func(r *Release) { r.SecurityFix = true }, offer: true, wantMsg: `rule "security fixes"`},
		{name: "security-fix rule leaves others", cfg: Config{Groups: groups, ApprovalRules: []ApprovalRule{{Name: "security fixes", SecurityFixesOnly: true}}}, wantMsg: "awaits approval"},
		{name: "rule limited to another group", cfg: Config{Groups: groups, ApprovalRules: []ApprovalRule{{Name: "or stable", Groups: []string{"or"}, Channels: []string{"stable"}}}}, wantMsg: "awaits approval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEvaluator(t, tc.cfg, now)
			e.SetApprovals(tc.approvals)
			r := baseRelease()
			if tc.release != nil {
				tc.release(&r)
			}
			dec := e.Decide(baseDevice(), r)
			if dec.Offer != tc.offer {
				t.Fatalf("got offer %v, want %v: %v", dec.Offer, tc.offer, dec.Reasons)
			}
			if !tc.offer && (dec.Reasons[0].Code != CodeNotApproved || dec.Download) {
				t.Fatalf("got main reason %s and download %v, want not-approved without download", dec.Reasons[0].Code, dec.Download)
			}
			if !anyReasonContains(dec, tc.wantMsg) {
				t.Fatalf("got reasons %v, want one containing %q", dec.Reasons, tc.wantMsg)
			}
		})
	}
}

func TestDecideRollouts(t *testing.T) {
	now := mustTimeNoT("2026-03-10T14:00:00Z")
	cfg := Config{Groups: []Group{{Name: "icu", Departments: []string{"ICU"}}}}
	r := baseRelease()
	devices := []string{"Acme/SN1", "Acme/SN2", "Acme/SN3", "Acme/SN4"}
	ro, err := NewRollout("r1", r.Target, r.Version, "icu", devices, Plan{Waves: []WaveSize{{Count: 1}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	deviceFor := func(key string) Device {
		d := baseDevice()
		d.Serial = strings.TrimPrefix(key, "Acme/")
		return d
	}
	e := newTestEvaluator(t, cfg, now)
	e.PutRollout(ro)
	if dec := e.Decide(deviceFor("Acme/SN1"), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutPending {
		t.Fatalf("pending rollout: got %v, want rollout-pending", dec.Reasons)
	}
	ro, _ = ro.Apply(Event{Kind: EventStart, At: now})
	e.PutRollout(ro)
	var canary, waiting string
	for k, d := range ro.Devices {
		if d.Wave == 0 {
			canary = k
		} else {
			waiting = k
		}
	}
	if dec := e.Decide(deviceFor(canary), r); !dec.Offer {
		t.Fatalf("canary: got %v, want offered", dec.Reasons)
	}
	if dec := e.Decide(deviceFor(waiting), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutWaiting || !strings.Contains(dec.Reasons[0].Message, "waiting for wave 2 of 2 of rollout r1") {
		t.Fatalf("second wave: got %v, want rollout-waiting", dec.Reasons)
	}
	if dec := e.Decide(deviceFor("Acme/LATE"), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutWaiting {
		t.Fatalf("late joiner while the canary runs: got %v, want rollout-waiting", dec.Reasons)
	}
	halted, _ := ro.Apply(Event{Kind: EventInstall, At: now.Add(time.Hour), Device: canary, Detail: "crc"})
	e.PutRollout(halted)
	if dec := e.Decide(deviceFor(waiting), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutHalted {
		t.Fatalf("halted: got %v, want rollout-halted", dec.Reasons)
	}
	if dec := e.Decide(deviceFor(canary), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutHalted {
		t.Fatalf("halted canary: got %v, want rollout-halted", dec.Reasons)
	}
	next, _ := ro.Apply(Event{Kind: EventCheckIn, At: now.Add(time.Hour), Device: canary, Version: r.Version})
	e.PutRollout(next)
	if dec := e.Decide(deviceFor(waiting), r); !dec.Offer {
		t.Fatalf("final wave open: got %v, want offered", dec.Reasons)
	}
	if dec := e.Decide(deviceFor("Acme/LATE"), r); !dec.Offer {
		t.Fatalf("late joiner with the final wave open: got %v, want offered", dec.Reasons)
	}
	cancelled, _ := next.Apply(Event{Kind: EventCancel, At: now.Add(2 * time.Hour), Detail: "vendor recall"})
	e.PutRollout(cancelled)
	if dec := e.Decide(deviceFor(waiting), r); dec.Offer || dec.Reasons[0].Code != CodeRolloutCancelled || !strings.Contains(dec.Reasons[0].Message, "vendor recall") {
		t.Fatalf("cancelled: got %v, want rollout-cancelled", dec.Reasons)
	}
	e.RemoveRollout("r1")
	if dec := e.Decide(deviceFor(waiting), r); !dec.Offer {
		t.Fatalf("rollout removed: got %v, want offered", dec.Reasons)
	}
}

func TestNewEvaluatorRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unnamed group", Config{Groups: []Group{{}}}, "group 1 has no name"},
		{"duplicate group", Config{Groups: []Group{{Name: "a"}, {Name: "a"}}}, `group "a" is defined twice`},
		{"bad window", Config{Groups: []Group{{Name: "a", Windows: []string{"Tue 02:00-04:00"}}}}, `group "a": parsing window`},
		{"bad blackout", Config{Groups: []Group{{Name: "a", Blackouts: []string{"xmas"}}}}, `group "a": parsing blackout`},
		{"bad device key", Config{Groups: []Group{{Name: "a", Devices: []string{"SN1"}}}}, "MANUFACTURER/SERIAL"},
		{"rule names unknown group", Config{ApprovalRules: []ApprovalRule{{Name: "r", Groups: []string{"nope"}}}}, `names group "nope"`},
		{"bad plan", Config{Rollout: Plan{FailurePercent: 101}}, "rollout plan"},
		{"short key", Config{EntitlementKeys: []ed25519.PublicKey{{1, 2}}}, "entitlement key 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewEvaluator(tc.cfg, FixedClock{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	e := newTestEvaluator(t, icuConfig(), mustTimeNoT("2026-03-10T14:00:00Z"))
	d := baseDevice()
	d.HardwareRevision = "A"
	out := Explain(e.Decide(d, baseRelease()))
	for _, want := range []string{
		"device:   Acme/SN1\n",
		"release:  infusion-pump/3.2.0/image.bin\n",
		"at:       2026-03-10T14:00:00Z\n",
		"decision: withheld (download not allowed)\n",
		"blocking:\n  1. hardware-unsupported: hardware revision A is not supported (supported: B, C)\n  2. window-closed: window opens Tue 2026-03-17 02:00 Europe/Berlin",
		"passed:\n  - upgrade: upgrade from 3.1.0 to 3.2.0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got:\n%s\nwant it to contain:\n%s", out, want)
		}
	}
}

func TestScheduleOfDevice(t *testing.T) {
	e := newTestEvaluator(t, icuConfig(), mustTimeNoT("2026-03-10T14:00:00Z"))
	s, group := e.ScheduleOf(baseDevice())
	if group != "icu" || len(s.Windows()) != 1 || len(s.Blackouts()) != 1 {
		t.Fatalf("got group %q with %d windows and %d blackouts, want icu with 1 and 1", group, len(s.Windows()), len(s.Blackouts()))
	}
	d := baseDevice()
	d.Department, d.DeviceClass = "OR", "monitor"
	if _, group := e.ScheduleOf(d); group != "" {
		t.Fatalf("got group %q for a device without windows, want none", group)
	}
}
