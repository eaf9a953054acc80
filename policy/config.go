package policy

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the hospital's policy configuration. The zero value is usable
// and gives the defaults described in the package documentation.
type Config struct {
	// Groups are matched against each device in order, as Group describes.
	Groups []Group

	// AllowedChannels lists the release channels that may be offered,
	// such as "stable". Empty allows every channel.
	AllowedChannels []string

	// DownloadOnlyInWindow restricts downloads to the times an install
	// may start. When false, devices may stage a download at any time
	// that the release is otherwise allowed, even in clinical use.
	DownloadOnlyInWindow bool

	// MaintenanceModeBypassesWindows lets a device that reports
	// InMaintenance install outside its windows. Blackouts, clinical use
	// and an untrusted clock still block.
	MaintenanceModeBypassesWindows bool

	// EnforceEntitlements withholds every release that is not a security
	// fix while no entitlements document is loaded. A loaded document is
	// always enforced, whatever this field is set to.
	EnforceEntitlements bool
	// Entitlements is the document in force at start. NewEvaluator
	// verifies its signatures but accepts it when expired, so decisions
	// report the expiry. Evaluator.SetEntitlements replaces it.
	Entitlements *Entitlements
	// EntitlementKeys are the manufacturer's ed25519 public keys for
	// entitlement documents. A document that carries signatures must be
	// signed by one of them.
	EntitlementKeys []ed25519.PublicKey
	// RequireSignedEntitlements rejects entitlement documents that carry
	// no signature of their own (TUF has verified their delivery either
	// way).
	RequireSignedEntitlements bool

	// RequireApproval withholds every release until an approval or an
	// approval rule covers it. Approval is also required, whatever this
	// field is set to, once any approval rule or approval exists.
	RequireApproval bool
	// ApprovalRules approve matching releases automatically.
	ApprovalRules []ApprovalRule
	// Approvals are the explicit approvals in force at start.
	// Evaluator.SetApprovals replaces them.
	Approvals []Approval

	// Rollout is the plan for new rollouts, with the defaults Plan describes.
	Rollout Plan
}

// Group is a set of devices with shared windows, approvals and rollouts.
//
// A device is a member when it is listed in Devices, or when every
// non-empty selector among VLANs, Departments, Models and DeviceClasses
// contains the device's value. A group with no selectors and no Devices
// contains every device, which makes it a default when it comes last.
//
// The first matching group, in Config order, that has windows sets the
// device's maintenance windows. The blackouts of every matching group
// apply. A device in no group with windows may start installs at any
// time outside blackouts.
type Group struct {
	// Name identifies the group in approvals, rollouts and reasons.
	Name string
	// VLANs, Departments, Models and DeviceClasses select devices.
	VLANs, Departments, Models, DeviceClasses []string
	// Devices lists members explicitly, as "MANUFACTURER/SERIAL".
	Devices []string
	// Windows are window specs for ParseWindow.
	Windows []string
	// Blackouts are blackout specs for ParseBlackout.
	Blackouts []string
}

// compiledGroup is a Group with its specs parsed.
type compiledGroup struct {
	Group
	index     int // position in Config.Groups
	windows   []Window
	blackouts []Blackout
	devices   map[string]bool
}

func (g *compiledGroup) matches(d *Device, key string) bool {
	if len(g.devices) > 0 && g.devices[key] {
		return true
	}
	if len(g.Devices) > 0 && len(g.VLANs)+len(g.Departments)+len(g.Models)+len(g.DeviceClasses) == 0 {
		return false
	}
	return selects(g.VLANs, d.VLAN) && selects(g.Departments, d.Department) &&
		selects(g.Models, d.Model) && selects(g.DeviceClasses, d.DeviceClass)
}

func selects(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

// validate checks cfg and parses its specs.
func compileConfig(cfg Config) ([]*compiledGroup, error) {
	var groups []*compiledGroup
	seen := map[string]bool{}
	for i, g := range cfg.Groups {
		name := strings.TrimSpace(g.Name)
		if name == "" {
			return nil, fmt.Errorf("group %d has no name: give each group a name", i+1)
		}
		if seen[name] {
			return nil, fmt.Errorf("group %q is defined twice: rename one", name)
		}
		seen[name] = true
		cg := &compiledGroup{Group: g, index: i, devices: map[string]bool{}}
		cg.Name = name
		for _, key := range g.Devices {
			if m, s, ok := strings.Cut(key, "/"); !ok || m == "" || s == "" {
				return nil, fmt.Errorf("group %q: device %q: write it as MANUFACTURER/SERIAL", name, key)
			}
			cg.devices[key] = true
		}
		for _, spec := range g.Windows {
			w, err := ParseWindow(spec)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", name, err)
			}
			cg.windows = append(cg.windows, w)
		}
		for _, spec := range g.Blackouts {
			b, err := ParseBlackout(spec)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", name, err)
			}
			cg.blackouts = append(cg.blackouts, b)
		}
		groups = append(groups, cg)
	}
	for i, r := range cfg.ApprovalRules {
		for _, g := range r.Groups {
			if !seen[g] {
				return nil, fmt.Errorf("approval rule %d (%q) names group %q, which is not defined", i+1, r.Name, g)
			}
		}
	}
	for i, k := range cfg.EntitlementKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("entitlement key %d is %d bytes long, want a %d-byte ed25519 public key", i+1, len(k), ed25519.PublicKeySize)
		}
	}
	if err := cfg.Rollout.validate(); err != nil {
		return nil, fmt.Errorf("rollout plan: %w", err)
	}
	return groups, nil
}

// durationText formats d for hospital IT: "3d4h", "2h30m", "45m",
// "20s". Days drop the minutes, because "in 6d11h" is precise enough.
func durationText(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Round(time.Second)
	if d < time.Minute {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	d = d.Round(time.Minute)
	days, hours, mins := int64(d/(24*time.Hour)), int64(d/time.Hour)%24, int64(d/time.Minute)%60
	var buf [24]byte
	b := buf[:0]
	if days > 0 {
		b = append(strconv.AppendInt(b, days, 10), 'd')
	}
	if hours > 0 {
		b = append(strconv.AppendInt(b, hours, 10), 'h')
	}
	if mins > 0 && days == 0 {
		b = append(strconv.AppendInt(b, mins, 10), 'm')
	}
	return string(b)
}
