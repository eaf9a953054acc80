// Package policy decides, for every device and release, whether the
// release may be offered to the device now, and returns the reasons in
// words hospital IT can act on. It owns maintenance windows, entitlements,
// compatibility and prerequisite rules, approvals and staged rollouts.
//
// The package is pure: it does no networking and no storage, and it reads
// time only from the injected Clock. The gateway feeds it inventory,
// release metadata, entitlement documents and rollout state, and persists
// whatever it returns.
package policy
