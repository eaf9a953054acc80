package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Role is the permission level of an API token. Roles are ordered: each includes the
// ones before it.
type Role int

// Roles, from least to most privileged.
const (
	// RoleViewer reads every page and report, and exports the audit trail.
	RoleViewer Role = iota + 1
	// RoleOperator also pauses, resumes and cancels rollouts.
	RoleOperator
	// RoleApprover also approves releases, which starts their rollout.
	RoleApprover
	// RoleAdmin also manages API tokens and takes backups.
	RoleAdmin
)

var roleNames = map[Role]string{RoleViewer: "viewer", RoleOperator: "operator", RoleApprover: "approver", RoleAdmin: "admin"}

// String returns the role's name.
func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Allows reports whether r includes need.
func (r Role) Allows(need Role) bool { return r >= need }

// ParseRole parses "viewer", "operator", "approver" or "admin".
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q is unknown: use viewer, operator, approver or admin", s)
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Actor is the authenticated caller: an API token.
type Actor struct {
	TokenID string
	Name    string
	Role    Role
}

// AuditName returns the actor's name in audit records.
func (a Actor) AuditName() string { return "token:" + a.TokenID }

// Backend is what the console reads and changes. The gateway implements
// it; every changing call audits itself with the actor.
type Backend interface {
	// Authenticate checks an API token and returns its actor.
	Authenticate(ctx context.Context, token string) (Actor, error)
	// AuditLogin records a console login, logout or failed login.
	AuditLogin(ctx context.Context, action string, a Actor, remote string, detail string)

	Overview(ctx context.Context) (Overview, error)
	Devices(ctx context.Context, f DeviceFilter) (DeviceList, error)
	Device(ctx context.Context, manufacturer, serial string) (DeviceDetail, error)
	Releases(ctx context.Context) ([]Release, error)
	// Rollouts returns every rollout's progress, without the per-device
	// decisions that Releases makes, for the page's frequent refresh.
	Rollouts(ctx context.Context) ([]Rollout, error)
	Approve(ctx context.Context, a Actor, target, group string) error
	// RolloutAction applies "pause", "resume" or "cancel" to a rollout.
	RolloutAction(ctx context.Context, a Actor, id, action, note string) error
	Windows(ctx context.Context, from time.Time, days int) (Windows, error)
	Exposure(ctx context.Context, id string) (Exposure, error)
	Audit(ctx context.Context, q AuditQuery) (AuditPage, error)
	ExportAudit(ctx context.Context, a Actor, w io.Writer, format string, q AuditQuery) error
}

// Overview is the front page.
type Overview struct {
	Site             string
	TunnelState      string // "connected", "reconnecting", "offline" (no hub)
	TunnelTransport  string // such as "QUIC" or "HTTP/2 over TCP"
	TunnelError      string
	TunnelDials      int
	LastRefresh      time.Time
	LastRefreshError string
	MetadataVersion  int64
	MetadataExpires  time.Time
	Targets          int
	Cache            CacheUse
	Telemetry        TelemetryQueue
	Devices          int
	DevicesByState   []Count
	ActiveRollouts   int
	AuditHead        uint64
	AuditForwarding  string // "", or a description of the syslog state
	Alerts           []Alert
	Now              time.Time
}

// CacheUse is the blob cache's space accounting.
type CacheUse struct {
	StoredBytes, MaxBytes, FreeBytes int64
	Blobs, Fills                     int
}

// TelemetryQueue is the state of the telemetry queue.
type TelemetryQueue struct {
	Batches, Bytes, MaxBytes int64
	PendingUploads           uint64
	// OldestAge is the age of the oldest queued batch or undelivered
	// upload; zero when nothing waits.
	OldestAge time.Duration
	Refusing  string
}

// Alert is a condition hospital IT should act on.
type Alert struct {
	Level   string // "critical", "warning" or "info"
	Message string
}

// Count is one labelled number.
type Count struct {
	Label string
	N     int
}

// DeviceFilter selects devices on the devices page.
type DeviceFilter struct {
	Query, Manufacturer, Model, Version, Class, State string
}

// DeviceList is the devices page.
type DeviceList struct {
	Devices []DeviceRow
	Total   int
	// Choices offer the filter values present in the inventory.
	Models, Versions, Classes, States, Manufacturers []string
}

// DeviceRow is one device in the list.
type DeviceRow struct {
	Manufacturer, Serial, Model, HardwareRevision, Version, Class, State string
	Verified                                                             bool
	InClinicalUse, InMaintenance                                         bool
	LastSeen, LastCheckIn                                                time.Time
	Interfaces                                                           []string
	Groups                                                               []string
}

// DeviceDetail is one device's page.
type DeviceDetail struct {
	DeviceRow
	FirstSeen  time.Time
	Components []Count2
	Addresses  []string
	History    []HistoryEntry
	Decisions  []DeviceDecision
}

// Count2 is a name and a value, such as a component and its version.
type Count2 struct{ Name, Value string }

// HistoryEntry is one event in a device's history.
type HistoryEntry struct {
	Time    time.Time
	Kind    string
	Version string
	Details []Count2
}

// DeviceDecision is the current policy decision on one release for a device.
type DeviceDecision struct {
	Target, Version string
	Offer           bool
	Reasons         []Reason
}

// Reason is one step of a decision.
type Reason struct {
	Code, Message string
	Blocking      bool
}

// Release is one cached release with its approvals and rollouts.
type Release struct {
	Target, Product, Version, Channel string
	Models                            []string
	SecurityFix                       bool
	Length                            int64
	Approvals                         []Approval
	Approved                          bool   // approved for some group, by approval or rule
	ApprovalNote                      string // how it is approved, or why not
	Rollouts                          []Rollout
	Offered                           int
	Withheld                          []Count // devices withheld, by reason code
	Groups                            []string
}

// Approval is one explicit approval.
type Approval struct {
	Group, By string
	At        time.Time
}

// Rollout is one staged rollout with its waves.
type Rollout struct {
	ID, Target, Version, Group, State, Reason string
	Paused                                    bool
	Wave, Waves                               int
	CreatedAt, StartedAt                      time.Time
	WaveProgress                              []WaveProgress
	Totals                                    WaveProgress
}

// WaveProgress counts a wave's devices by state.
type WaveProgress struct {
	Index                                                          int
	Open                                                           bool
	Devices, Waiting, Offered, Installed, Updated, Failed, Removed int
}

// Done returns the share of the wave's devices that updated, in percent.
func (w WaveProgress) Done() int {
	if w.Devices == 0 {
		return 0
	}
	return w.Updated * 100 / w.Devices
}

// Windows is the maintenance window timeline.
type Windows struct {
	From, To time.Time
	Location *time.Location
	Groups   []GroupWindows
	// ClockTrusted is false while every window counts as closed.
	ClockTrusted bool
}

// GroupWindows is one group's coming periods.
type GroupWindows struct {
	Name      string
	Specs     []string
	Blackouts []string
	Devices   int
	Periods   []Period
	// AnyTime is true for a group without windows: installs may start at
	// any time outside blackouts.
	AnyTime bool
	Expired bool
	Error   string
}

// Period is one span in which installs may start, or a blackout.
type Period struct {
	Start, End time.Time
	Label      string
	Blackout   bool
}

// Exposure is the exposure report for one vulnerability id.
type Exposure struct {
	// Loaded is false when no advisories are loaded at all.
	Loaded bool
	// Known is false when the id matches no loaded advisory.
	Known      bool
	ID         string
	Aliases    []string
	Summary    string
	Severity   string
	Devices    []ExposedDevice
	Counts     []Count
	FixedBy    []string
	Risk       []RiskRow
	Advisories int
}

// ExposedDevice is one device's status for the vulnerability.
type ExposedDevice struct {
	Device, Model, Version, Release, Status, Justification, Detail, FixedIn string
}

// RiskRow is one line of the fleet's risk summary.
type RiskRow struct {
	Device, Model, Version string
	Open                   int
	Highest                string
	FixRelease             string
}

// AuditQuery selects audit records.
type AuditQuery struct {
	From, To               time.Time
	Actor, Action, Subject string
	Text                   string
	Before                 uint64
	Limit                  int
}

// AuditPage is one page of audit records, newest first.
type AuditPage struct {
	Entries []AuditEntry
	Next    uint64
	Head    uint64
	// Verified is the result of the last chain verification.
	Verified string
}

// AuditEntry is one audit record.
type AuditEntry struct {
	Seq                    uint64
	Time                   time.Time
	Actor, Action, Subject string
	Details                []Count2
	Hash                   string
}
