package policy

import (
	"testing"
	"time"
)

func baseDevice() Device {
	return Device{
		Manufacturer: "Acme", Serial: "SN1", Model: "IP-300", HardwareRevision: "B",
		Version: "3.1.0", Components: map[string]string{"bootloader": "2.2.0"},
		VLAN: "110", Department: "ICU", DeviceClass: "infusion-pump", Site: "site-1",
	}
}

func baseRelease() Release {
	return Release{
		Target: "infusion-pump/3.2.0/image.bin", Product: "infusion-pump", Version: "3.2.0", Channel: "stable",
		Models: []string{"IP-300", "IP-310"}, HardwareRevisions: []string{"B", "C"},
		Requires: map[string]string{"bootloader": ">=2.1.0, <3"}, InstallDuration: 20 * time.Minute,
	}
}

func TestDecideCompatibility(t *testing.T) {
	tests := []struct {
		name     string
		device   func(*Device)
		release  func(*Release)
		wantCode string // "" means offered
	}{
		{name: "compatible upgrade"},
		{name: "model not listed", device: func(d *Device) { d.Model = "IP-200" }, wantCode: CodeModelUnsupported},
		{name: "hardware revision not listed", device: func(d *Device) { d.HardwareRevision = "A" }, wantCode: CodeHardwareUnsupported},
		{name: "every revision when list empty", device: func(d *Device) { d.HardwareRevision = "" }, release: func(r *Release) { r.HardwareRevisions = nil }},
		{name: "missing revision when list set", device: func(d *Device) { d.HardwareRevision = "" }, wantCode: CodeInventoryIncomplete},
		{name: "same version", device: func(d *Device) { d.Version = "3.2.0" }, wantCode: CodeUpToDate},
		{name: "same version written shorter", device: func(d *Device) { d.Version = "v3.2" }, wantCode: CodeUpToDate},
		{name: "downgrade", device: func(d *Device) { d.Version = "3.3.0" }, wantCode: CodeDowngrade},
		{name: "allowed rollback", device: func(d *Device) { d.Version = "3.3.0" }, release: func(r *Release) { r.AllowRollback = true }},
		{name: "prerequisite too old", device: func(d *Device) { d.Components["bootloader"] = "2.0.9" }, wantCode: CodePrerequisiteUnmet},
		{name: "prerequisite too new", device: func(d *Device) { d.Components["bootloader"] = "3.0.0" }, wantCode: CodePrerequisiteUnmet},
		{name: "prerequisite missing", device: func(d *Device) { d.Components = nil }, wantCode: CodePrerequisiteMissing},
		{name: "invalid constraint", release: func(r *Release) { r.Requires = map[string]string{"bootloader": ">="} }, wantCode: CodeReleaseInvalid},
		{name: "empty device", device: func(d *Device) { *d = Device{} }, wantCode: CodeInventoryIncomplete},
		{name: "release without models", release: func(r *Release) { r.Models = nil }, wantCode: CodeReleaseInvalid},
		{name: "release without version", release: func(r *Release) { r.Version = "" }, wantCode: CodeReleaseInvalid},
		{name: "non-semver versions", device: func(d *Device) { d.Version = "R9" }, release: func(r *Release) { r.Version = "R10" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, r := baseDevice(), baseRelease()
			if tc.device != nil {
				tc.device(&d)
			}
			if tc.release != nil {
				tc.release(&r)
			}
			e := newTestEvaluator(t, Config{}, time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC))
			dec := e.Decide(d, r)
			if tc.wantCode == "" {
				if !dec.Offer {
					t.Fatalf("got no offer (%v), want offer", dec.Reasons)
				}
				return
			}
			if dec.Offer {
				t.Fatalf("got offer, want %s", tc.wantCode)
			}
			if got := dec.Reasons[0].Code; got != tc.wantCode {
				t.Fatalf("got main reason %s (%q), want %s", got, dec.Reasons[0].Message, tc.wantCode)
			}
		})
	}
}

func newTestEvaluator(t *testing.T, cfg Config, now time.Time) *Evaluator {
	t.Helper()
	e, err := NewEvaluator(cfg, FixedClock{T: now})
	if err != nil {
		t.Fatalf("NewEvaluator: %v", err)
	}
	return e
}
