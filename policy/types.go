package policy

import (
	"time"
)

// Device is the inventory record of one device, as the gateway records it at
// check-in.
type Device struct {
	// Manufacturer and Serial identify the device.
	Manufacturer, Serial string
	// Model and HardwareRevision are matched against Release.Models and
	// Release.HardwareRevisions.
	Model, HardwareRevision string
	// Version is the installed version of the device's main software.
	Version string
	// Components maps other installed components to their versions, and
	// may be nil.
	Components map[string]string
	// VLAN, Department and DeviceClass select the device's groups.
	VLAN, Department, DeviceClass string
	// Site is the site id of this gateway, matched against entitlements.
	Site string
	// InClinicalUse is the device's own report that it is in use on a
	// patient: no install is offered while it is true.
	InClinicalUse bool
	// InMaintenance is the device's report that it is out of clinical
	// service for maintenance (see Config.MaintenanceModeBypassesWindows).
	InMaintenance bool
}

// Key returns "MANUFACTURER/SERIAL", the device's identity in groups,
// approvals and rollouts.
func (d Device) Key() string { return d.Manufacturer + "/" + d.Serial }

// Release is one installable image, built from the TUF target's custom
// metadata.
type Release struct {
	// Target is the TUF target path of the image, such as
	// "infusion-pump/3.2.0/image.bin".
	Target string
	// Product, Version and Channel name the release, and Version is ordered
	// by CompareVersions.
	Product, Version, Channel string
	// Models lists the device models the image supports, and a release with
	// none is offered to no device.
	Models []string
	// HardwareRevisions lists the supported hardware revisions, and empty
	// means every revision.
	HardwareRevisions []string
	// Requires maps a component name to a version constraint (see
	// ParseConstraint) that the device's installed component must meet.
	// The component name "" or the device's main software is not special:
	// use Device.Components names.
	Requires map[string]string
	// AllowRollback permits offering the release to devices running a
	// higher version.
	AllowRollback bool
	// SecurityFix marks a release that the manufacturer offers regardless
	// of entitlement.
	SecurityFix bool
	// InstallDuration is the expected install time, and an install starts
	// only if it fits before the maintenance window closes.
	InstallDuration time.Duration
}

// Reason is one step of a decision.
type Reason struct {
	// Code is a stable machine name such as "model-unsupported",
	// "up-to-date" or "window-closed". The codes are listed at the
	// Code... constants.
	Code string
	// Message is written for hospital IT, such as "hardware revision A
	// is not supported".
	Message string
	// Blocking is true when this reason prevents the install offer.
	Blocking bool
}

// Decision is the result of evaluating one device against one release.
type Decision struct {
	// Offer reports whether the install may be offered now.
	Offer bool
	// Download reports whether the device may download the image now.
	// It is true whenever Offer is. Outside a window it is true only when
	// the release may otherwise be offered and staged downloads are
	// allowed (see Config.DownloadOnlyInWindow).
	Download bool
	// Reasons are ordered: blocking reasons first, by priority, then the
	// checks that passed. When Offer is false, Reasons[0] is the main
	// cause.
	Reasons []Reason
	// Device and Target identify what was decided, as Device.Key() and
	// Release.Target.
	Device, Target string
	// At is the clock reading the decision was made at.
	At time.Time
	// NextOpening is when the device's maintenance window opens next, if
	// known and in the future, and zero otherwise.
	NextOpening time.Time
	// ClosesAt is when the current window closes, if one is open.
	ClosesAt time.Time
}

// Blocking returns the reasons that prevent the offer, in priority order.
func (d Decision) Blocking() []Reason {
	var out []Reason
	for _, r := range d.Reasons {
		if r.Blocking {
			out = append(out, r)
		}
	}
	return out
}

// Clock is the gateway's time source.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Trusted reports whether Now may be relied on, for example because
	// it is synchronised. While it is false every maintenance window
	// counts as closed.
	Trusted() bool
}
