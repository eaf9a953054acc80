package exposure

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardgate/wardgate/cache/advisory"
)

// DeviceStatus is a device's status for one vulnerability.
type DeviceStatus struct {
	Device  string `json:"device"`
	Release string `json:"release"`
	// Vulnerability is the display id of the vulnerability's alias group;
	// IDs lists all of its ids.
	Vulnerability string          `json:"vulnerability"`
	IDs           []string        `json:"ids"`
	Status        advisory.Status `json:"status"`
	// Justification is set for not affected.
	Justification string `json:"justification,omitempty"`
	// Detail explains the status in a sentence.
	Detail string `json:"detail,omitempty"`
	// Source is "osv:ID" or "vex:DOCUMENT" for what decided the status, or
	// empty when no advisory touched the device's release.
	Source string `json:"source,omitempty"`
	// Components are the findings for the release's components that the
	// advisories or statements name.
	Components []ComponentFinding `json:"components,omitempty"`
}

// FixedIn returns the fix version of the first affected component, if the
// advisory names one.
func (s DeviceStatus) FixedIn() string {
	for _, c := range s.Components {
		if c.Status == advisory.StatusAffected && c.FixedIn != "" {
			return c.FixedIn
		}
	}
	return ""
}

// Status returns one device's status for a vulnerability id (any alias).
// A device whose release is unknown, or whose release SBOM the index does
// not hold, is unknown, never not affected. It returns an error wrapping
// ErrUnknownDevice for a device the index does not contain.
func (e *Evaluator) Status(deviceID, vulnID string) (DeviceStatus, error) {
	g, _ := e.advisories.Lookup(vulnID)
	ix := e.index
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	target, ok := ix.devices[deviceID]
	if !ok {
		return DeviceStatus{}, fmt.Errorf("status of %q for %s: %w", deviceID, vulnID, ErrUnknownDevice)
	}
	r := ix.releases[target]
	var findings map[*release]*releaseFinding
	if r != nil {
		findings = e.evaluateGroup(g, r)
	}
	return deviceStatus(deviceID, target, g, r, findings), nil
}

func deviceStatus(deviceID, target string, g advisory.Group, r *release, findings map[*release]*releaseFinding) DeviceStatus {
	ds := DeviceStatus{Device: deviceID, Release: target, Vulnerability: g.ID, IDs: g.IDs}
	switch {
	case target == "":
		ds.Status = advisory.StatusUnknown
		ds.Detail = "the release the device runs is not known"
	case r == nil:
		ds.Status = advisory.StatusUnknown
		ds.Detail = fmt.Sprintf("no SBOM is cached for release %s", target)
	default:
		f, ok := findings[r]
		if !ok {
			ds.Status = advisory.StatusNotAffected
			ds.Justification = JustificationComponentNotPresent
			ds.Detail = "no component of the release is a package the advisories name"
			if r.unkeyed > 0 {
				// NOTE: components known only by CPE or name cannot be matched
				// against OSV packages, so they are not ruled in here.
				ds.Detail += fmt.Sprintf("; %d component(s) have no package URL and could not be compared", r.unkeyed)
			}
			if len(g.Records) == 0 && len(g.Statements) == 0 {
				ds.Status = advisory.StatusUnknown
				ds.Justification = ""
				ds.Detail = "no advisory or VEX statement for this id is known"
			}
			return ds
		}
		ds.Status, ds.Justification, ds.Detail, ds.Source = f.status, f.justification, f.detail, f.source
		ds.Components = f.components
	}
	return ds
}

// ExposureReport lists the devices exposed to one vulnerability.
type ExposureReport struct {
	Vulnerability string   `json:"vulnerability"`
	IDs           []string `json:"ids"`
	Summary       string   `json:"summary,omitempty"`
	Severity      string   `json:"severity,omitempty"`
	Score         float64  `json:"cvss_score,omitempty"`
	// Known is false when the store has no record or statement for the id;
	// every device is then unknown.
	Known bool `json:"known"`
	// Counts counts every device of the index by status, including those
	// left out of Devices.
	Counts map[advisory.Status]int `json:"counts"`
	// Devices lists each device whose status is anything other than not
	// affected because the release lacks the package, most urgent first,
	// then by device id.
	Devices []DeviceStatus `json:"devices"`
}

// ExposureOptions tunes Exposure.
type ExposureOptions struct {
	// All lists every device, including those whose release does not
	// contain any package the advisories name.
	All bool
}

// Exposure returns the status of every device for a vulnerability id.
func (e *Evaluator) Exposure(vulnID string, opts ExposureOptions) ExposureReport {
	g, known := e.advisories.Lookup(vulnID)
	rep := ExposureReport{Vulnerability: g.ID, IDs: g.IDs, Known: known, Summary: g.Summary(), Counts: map[advisory.Status]int{}}
	rep.Severity, rep.Score = g.Rating()
	ix := e.index
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	findings := e.evaluateGroup(g, nil)
	// Devices sharing a release share its status, so it is computed once per
	// release.
	for target, devices := range ix.onRelease {
		base := deviceStatus("", target, g, ix.releases[target], findings)
		rep.Counts[base.Status] += len(devices)
		if !opts.All && base.Justification == JustificationComponentNotPresent {
			continue
		}
		for d := range devices {
			ds := base
			ds.Device = d
			rep.Devices = append(rep.Devices, ds)
		}
	}
	slices.SortFunc(rep.Devices, func(a, b DeviceStatus) int {
		if ra, rb := a.Status.Rank(), b.Status.Rank(); ra != rb {
			return rb - ra
		}
		return strings.Compare(a.Device, b.Device)
	})
	return rep
}
