// Package policy decides, for every device and release, whether the
// release may be offered to the device now, and returns the reasons in
// words hospital IT can act on. It owns maintenance windows, entitlements,
// compatibility and prerequisite rules, approvals and staged rollouts.
//
// The package is pure: it does no networking and no storage, and it reads
// time only from the injected Clock. The gateway feeds it inventory,
// release metadata, entitlement documents and rollout state, persists
// what it returns, and audits the decisions and rollout transitions.
//
// # Defaults
//
// A fresh gateway runs on the zero Config, which means:
//
//   - Maintenance windows: a device none of whose groups has windows may
//     start installs at any time (blackouts still apply).
//   - Entitlements: with no entitlements document loaded and
//     Config.EnforceEntitlements off, entitlement is not checked. Once a
//     document is loaded it is always enforced.
//   - Approvals: with no approval rules and no approvals, every release
//     is approved automatically. Config.RequireApproval, any approval
//     rule or any explicit approval switches to explicit approval, in
//     which a release needs an approval or a rule that covers it.
//   - Rollouts: a release without a rollout is offered to every eligible
//     device at once. Plan describes the default waves and threshold.
//   - Channels: every channel is allowed.
//   - Downloads: a device may stage a download outside its windows, and
//     while in clinical use, whenever the release is otherwise allowed
//     (Config.DownloadOnlyInWindow turns this off).
//
// # Decisions
//
// Decide runs every check and returns all reasons: blocking reasons first,
// in priority order, so Reasons[0] is the main cause when Offer is false,
// then the checks that passed. The priority order is inventory and
// release metadata, model, hardware revision, version (up-to-date,
// downgrade), prerequisites, channel, entitlement, approval, rollout,
// clinical use, clock, maintenance window. Reason codes are the Code...
// constants and are stable. A device that lacks an inventory field a
// check needs gets inventory-incomplete, never a panic.
//
// A device that reports InClinicalUse is never offered an install. While
// the clock is not trusted every window counts as closed and no download
// is allowed either, because entitlement periods cannot be checked. A nil
// Clock counts as never trusted. An install starts only if
// Release.InstallDuration fits before the open window closes.
//
// An Evaluator caches what it derives from each release target, and the
// window results per group combination and install duration, so deciding
// a fleet stays cheap. A release whose metadata changes under the same
// target is prepared again.
//
// # Versions
//
// Versions are ordered by semantic versioning, leniently: a leading "v"
// and any number of numeric components are accepted, and missing
// components count as 0. Strings that are not versions in this sense are
// ordered by a natural-order fallback that CompareVersions describes. No
// version string makes a comparison fail.
//
// # Windows
//
// ParseWindow documents the spec forms (weekly, cron with a length, and
// one-time) and the daylight-saving rules, and ParseBlackout documents
// blackouts. Cron fields follow Vixie cron: minute 0-59, hour 0-23, day
// of month 1-31, month 1-12 or JAN-DEC, and day of week 0-7 or SUN-SAT,
// where 0 and 7 are Sunday. Fields take "*", lists, ranges and steps
// ("*/15", "1-5/2"), and the macros @yearly, @monthly, @weekly, @daily
// and @hourly replace all five. When both day fields are restricted, a
// day matches if either does. Group describes how groups choose a
// device's windows. A one-time window that has passed makes the decision
// window-expired, rather than a silent wait, when no other window opens.
//
// # Entitlements
//
// The manufacturer publishes an entitlements document as a TUF target,
// and EntitlementsDocument describes its JSON form and signature. TUF
// verifies delivery and freshness. ParseEntitlements parses the
// document, and Evaluator.SetEntitlements verifies its own ed25519
// signatures against Config.EntitlementKeys and rejects a document that
// has expired or is older than the loaded one. A release marked
// SecurityFix is offered regardless of entitlement. A device that is not
// entitled gets Offer and Download false, with the reason.
//
// # Rollouts
//
// Rollout is a state machine that the gateway persists: Rollout.Apply
// takes events and returns the next state and the transitions, for the
// audit trail. Decisions follow the rollouts given to
// Evaluator.PutRollout, so the gateway calls it after each Apply.
package policy
