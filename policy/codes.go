package policy

// Reason codes. They are stable: the gateway, its audit records and
// scripts that read `wardgate explain` rely on them.
const (
	// Blocking codes, in the priority order Decide reports them.
	CodeInventoryIncomplete = "inventory-incomplete" // a device field the check needs is empty
	CodeReleaseInvalid      = "release-invalid"      // the release metadata cannot be evaluated
	CodeModelUnsupported    = "model-unsupported"
	CodeHardwareUnsupported = "hardware-unsupported"
	CodeUpToDate            = "up-to-date"
	CodeDowngrade           = "downgrade"
	CodePrerequisiteMissing = "prerequisite-missing" // a required component is not installed
	CodePrerequisiteUnmet   = "prerequisite-unmet"   // a required component has the wrong version
	CodeChannelNotAllowed   = "channel-not-allowed"
	CodeNotEntitled         = "not-entitled"
	CodeEntitlementsInvalid = "entitlements-invalid" // the loaded document is expired or unverifiable
	CodeNotApproved         = "not-approved"
	CodeRolloutWaiting      = "rollout-waiting"
	CodeRolloutHalted       = "rollout-halted"
	CodeRolloutCancelled    = "rollout-cancelled"
	CodeRolloutPending      = "rollout-pending"
	CodeRolloutFailed       = "rollout-device-failed"
	CodeInClinicalUse       = "in-clinical-use"
	CodeClockUntrusted      = "clock-untrusted"
	CodeBlackout            = "blackout"
	CodeWindowClosed        = "window-closed"
	CodeWindowTooShort      = "window-too-short" // the install would not finish before the window closes
	CodeWindowExpired       = "window-expired"   // every window is a one-time window that has passed
	CodeNoWindow            = "no-window"        // the windows never open

	// Informational codes, for checks that passed.
	CodeCompatible      = "compatible"
	CodeUpgrade         = "upgrade"
	CodeRollback        = "rollback"
	CodeEntitled        = "entitled"
	CodeEntitledGrace   = "entitled-grace"
	CodeSecurityFix     = "security-fix"
	CodeEntitlementsOff = "entitlement-not-checked"
	CodeApproved        = "approved"
	CodeRolloutActive   = "rollout"
	CodeWindowOpen      = "window-open"
	CodeAnyTime         = "no-window-configured"
	CodeMaintenanceMode = "maintenance-mode"
)
