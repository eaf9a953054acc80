package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Policy is the hospital's update policy: device groups with their
// maintenance windows, approval and the rollout plan. The gateway turns
// it into policy.Config; the policy package checks window and blackout
// specs when the gateway starts.
type Policy struct {
	// RequireApproval withholds every release until hospital IT approves
	// it (in the console, the admin API or by an approval rule).
	RequireApproval bool `toml:"require_approval"`
	// AutoApproveSecurityFixes approves releases the manufacturer marks
	// as security fixes for every group.
	AutoApproveSecurityFixes bool `toml:"auto_approve_security_fixes"`
	// DownloadOnlyInWindow stops devices from staging downloads outside
	// their maintenance windows.
	DownloadOnlyInWindow bool `toml:"download_only_in_window"`
	// MaintenanceModeBypassesWindows lets a device that reports it is in
	// maintenance install outside its windows.
	MaintenanceModeBypassesWindows bool `toml:"maintenance_mode_bypasses_windows"`
	// AllowedChannels lists the release channels offered; empty allows
	// every channel.
	AllowedChannels []string `toml:"allowed_channels"`
	Rollout         Rollout  `toml:"rollout"`
	// Groups are matched against each device in order.
	Groups []Group `toml:"groups"`
}

// Rollout is the plan for new rollouts.
type Rollout struct {
	// Waves are the sizes of the waves before the final one, which takes
	// the remaining devices: "10%" or a count such as "2".
	Waves []string `toml:"waves"`
	// FailureThreshold halts a rollout after this many failed devices.
	FailureThreshold int `toml:"failure_threshold"`
	// DeviceTimeout is how long an offered device has to come back on the
	// new version before it counts as failed.
	DeviceTimeout Duration `toml:"device_timeout"`
}

// Group is a set of devices with shared windows and approvals. A device
// is a member when it is listed in Devices or every non-empty selector
// contains its value; a group without selectors holds every device.
type Group struct {
	Name          string   `toml:"name"`
	Models        []string `toml:"models"`
	DeviceClasses []string `toml:"device_classes"`
	Departments   []string `toml:"departments"`
	VLANs         []string `toml:"vlans"`
	// Devices lists members as "MANUFACTURER/SERIAL".
	Devices []string `toml:"devices"`
	// Windows are maintenance windows such as "Tue 02:00-04:00
	// Europe/Berlin"; Blackouts are dates such as "2026-12-24
	// Europe/Berlin".
	Windows   []string `toml:"windows"`
	Blackouts []string `toml:"blackouts"`
}

// WaveSize is one parsed entry of Rollout.Waves.
type WaveSize struct{ Count, Percent int }

// ParseWaves parses Rollout.Waves.
func (r Rollout) ParseWaves() ([]WaveSize, error) {
	var out []WaveSize
	for _, w := range r.Waves {
		s := strings.TrimSpace(w)
		if p, ok := strings.CutSuffix(s, "%"); ok {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 99 {
				return nil, fmt.Errorf("policy.rollout.waves entry %q must be a percentage from 1%% to 99%% or a device count", w)
			}
			out = append(out, WaveSize{Percent: n})
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("policy.rollout.waves entry %q must be a percentage such as \"10%%\" or a device count such as \"2\"", w)
		}
		out = append(out, WaveSize{Count: n})
	}
	return out, nil
}

func (p Policy) validate() error {
	if _, err := p.Rollout.ParseWaves(); err != nil {
		return err
	}
	if p.Rollout.FailureThreshold < 0 {
		return fmt.Errorf("policy.rollout.failure_threshold %d must not be negative", p.Rollout.FailureThreshold)
	}
	if p.Rollout.DeviceTimeout < Duration(time.Minute) {
		return fmt.Errorf("policy.rollout.device_timeout %s is below 1m", time.Duration(p.Rollout.DeviceTimeout))
	}
	seen := map[string]bool{}
	for i, g := range p.Groups {
		if g.Name == "" {
			return fmt.Errorf("policy.groups entry %d has no name: give each group a name", i+1)
		}
		if seen[g.Name] {
			return fmt.Errorf("policy.groups name %q is used twice: names must be unique", g.Name)
		}
		seen[g.Name] = true
		for _, d := range g.Devices {
			if m, s, ok := strings.Cut(d, "/"); !ok || m == "" || s == "" {
				return fmt.Errorf("policy.groups %q device %q must be MANUFACTURER/SERIAL", g.Name, d)
			}
		}
	}
	return nil
}
