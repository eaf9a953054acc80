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
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
	Role    Role   `json:"role"`
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
	Site             string         `json:"site"`
	TunnelState      string         `json:"tunnel_state"`     // "connected", "reconnecting", "offline" (no hub)
	TunnelTransport  string         `json:"tunnel_transport"` // such as "QUIC" or "HTTP/2 over TCP"
	TunnelError      string         `json:"tunnel_error"`
	TunnelDials      int            `json:"tunnel_dials"`
	LastRefresh      time.Time      `json:"last_refresh"`
	LastRefreshError string         `json:"last_refresh_error"`
	MetadataVersion  int64          `json:"metadata_version"`
	MetadataExpires  time.Time      `json:"metadata_expires"`
	Targets          int            `json:"targets"`
	Cache            CacheUse       `json:"cache"`
	Telemetry        TelemetryQueue `json:"telemetry"`
	Devices          int            `json:"devices"`
	DevicesByState   []Count        `json:"devices_by_state"`
	ActiveRollouts   int            `json:"active_rollouts"`
	AuditHead        uint64         `json:"audit_head"`
	AuditForwarding  string         `json:"audit_forwarding"` // "", or a description of the syslog state
	Alerts           []Alert        `json:"alerts"`
	Now              time.Time      `json:"now"`
}

// CacheUse is the blob cache's space accounting.
type CacheUse struct {
	StoredBytes int64 `json:"stored_bytes"`
	MaxBytes    int64 `json:"max_bytes"`
	FreeBytes   int64 `json:"free_bytes"`
	Blobs       int   `json:"blobs"`
	Fills       int   `json:"fills"`
}

// TelemetryQueue is the state of the telemetry queue.
type TelemetryQueue struct {
	Batches        int64  `json:"batches"`
	Bytes          int64  `json:"bytes"`
	MaxBytes       int64  `json:"max_bytes"`
	PendingUploads uint64 `json:"pending_uploads"`
	// OldestAge is the age of the oldest queued batch or undelivered
	// upload; zero when nothing waits.
	OldestAge time.Duration `json:"oldest_age"`
	Refusing  string        `json:"refusing"`
}

// Alert is a condition hospital IT should act on.
type Alert struct {
	Level   string `json:"level"` // "critical", "warning" or "info"
	Message string `json:"message"`
}

// Count is one labelled number.
type Count struct {
	Label string `json:"label"`
	N     int    `json:"n"`
}

// DeviceFilter selects devices on the devices page.
type DeviceFilter struct {
	Query        string `json:"query"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Version      string `json:"version"`
	Class        string `json:"class"`
	State        string `json:"state"`
}

// DeviceList is the devices page.
type DeviceList struct {
	Devices []DeviceRow `json:"devices"`
	Total   int         `json:"total"`
	// Choices offer the filter values present in the inventory.
	Models        []string `json:"models"`
	Versions      []string `json:"versions"`
	Classes       []string `json:"classes"`
	States        []string `json:"states"`
	Manufacturers []string `json:"manufacturers"`
}

// DeviceRow is one device in the list.
type DeviceRow struct {
	Manufacturer     string    `json:"manufacturer"`
	Serial           string    `json:"serial"`
	Model            string    `json:"model"`
	HardwareRevision string    `json:"hardware_revision"`
	Version          string    `json:"version"`
	Class            string    `json:"class"`
	State            string    `json:"state"`
	Verified         bool      `json:"verified"`
	InClinicalUse    bool      `json:"in_clinical_use"`
	InMaintenance    bool      `json:"in_maintenance"`
	LastSeen         time.Time `json:"last_seen"`
	LastCheckIn      time.Time `json:"last_check_in"`
	Interfaces       []string  `json:"interfaces"`
	Groups           []string  `json:"groups"`
}

// DeviceDetail is one device's page.
type DeviceDetail struct {
	DeviceRow
	FirstSeen  time.Time        `json:"first_seen"`
	Components []Count2         `json:"components"`
	Addresses  []string         `json:"addresses"`
	History    []HistoryEntry   `json:"history"`
	Decisions  []DeviceDecision `json:"decisions"`
}

// Count2 is a name and a value, such as a component and its version.
type Count2 struct{ Name, Value string }

// HistoryEntry is one event in a device's history.
type HistoryEntry struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Version string    `json:"version"`
	Details []Count2  `json:"details"`
}

// DeviceDecision is the current policy decision on one release for a device.
type DeviceDecision struct {
	Target  string   `json:"target"`
	Version string   `json:"version"`
	Offer   bool     `json:"offer"`
	Reasons []Reason `json:"reasons"`
}

// Reason is one step of a decision.
type Reason struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Blocking bool   `json:"blocking"`
}

// Release is one cached release with its approvals and rollouts.
type Release struct {
	Target       string     `json:"target"`
	Product      string     `json:"product"`
	Version      string     `json:"version"`
	Channel      string     `json:"channel"`
	Models       []string   `json:"models"`
	SecurityFix  bool       `json:"security_fix"`
	Length       int64      `json:"length"`
	Approvals    []Approval `json:"approvals"`
	Approved     bool       `json:"approved"`      // approved for some group, by approval or rule
	ApprovalNote string     `json:"approval_note"` // how it is approved, or why not
	Rollouts     []Rollout  `json:"rollouts"`
	Offered      int        `json:"offered"`
	Withheld     []Count    `json:"withheld"` // devices withheld, by reason code
	Groups       []string   `json:"groups"`
}

// Approval is one explicit approval.
type Approval struct {
	Group string    `json:"group"`
	By    string    `json:"by"`
	At    time.Time `json:"at"`
}

// Rollout is one staged rollout with its waves.
type Rollout struct {
	ID           string         `json:"id"`
	Target       string         `json:"target"`
	Version      string         `json:"version"`
	Group        string         `json:"group"`
	State        string         `json:"state"`
	Reason       string         `json:"reason"`
	Paused       bool           `json:"paused"`
	Wave         int            `json:"wave"`
	Waves        int            `json:"waves"`
	CreatedAt    time.Time      `json:"created_at"`
	StartedAt    time.Time      `json:"started_at"`
	WaveProgress []WaveProgress `json:"wave_progress"`
	Totals       WaveProgress   `json:"totals"`
}

// WaveProgress counts a wave's devices by state.
type WaveProgress struct {
	Index     int  `json:"index"`
	Open      bool `json:"open"`
	Devices   int  `json:"devices"`
	Waiting   int  `json:"waiting"`
	Offered   int  `json:"offered"`
	Installed int  `json:"installed"`
	Updated   int  `json:"updated"`
	Failed    int  `json:"failed"`
	Removed   int  `json:"removed"`
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
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
	Location *time.Location `json:"-"`
	Groups   []GroupWindows `json:"groups"`
	// ClockTrusted is false while every window counts as closed.
	ClockTrusted bool `json:"clock_trusted"`
}

// GroupWindows is one group's coming periods.
type GroupWindows struct {
	Name      string   `json:"name"`
	Specs     []string `json:"specs"`
	Blackouts []string `json:"blackouts"`
	Devices   int      `json:"devices"`
	Periods   []Period `json:"periods"`
	// AnyTime is true for a group without windows: installs may start at
	// any time outside blackouts.
	AnyTime bool   `json:"any_time"`
	Expired bool   `json:"expired"`
	Error   string `json:"error"`
}

// Period is one span in which installs may start, or a blackout.
type Period struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Label    string    `json:"label"`
	Blackout bool      `json:"blackout"`
}

// Exposure is the exposure report for one vulnerability id.
type Exposure struct {
	// Loaded is false when no advisories are loaded at all.
	Loaded bool `json:"loaded"`
	// Known is false when the id matches no loaded advisory.
	Known      bool            `json:"known"`
	ID         string          `json:"id"`
	Aliases    []string        `json:"aliases"`
	Summary    string          `json:"summary"`
	Severity   string          `json:"severity"`
	Devices    []ExposedDevice `json:"devices"`
	Counts     []Count         `json:"counts"`
	FixedBy    []string        `json:"fixed_by"`
	Risk       []RiskRow       `json:"risk"`
	Advisories int             `json:"advisories"`
}

// ExposedDevice is one device's status for the vulnerability.
type ExposedDevice struct {
	Device        string `json:"device"`
	Model         string `json:"model"`
	Version       string `json:"version"`
	Release       string `json:"release"`
	Status        string `json:"status"`
	Justification string `json:"justification"`
	Detail        string `json:"detail"`
	FixedIn       string `json:"fixed_in"`
}

// RiskRow is one line of the fleet's risk summary.
type RiskRow struct {
	Device     string `json:"device"`
	Model      string `json:"model"`
	Version    string `json:"version"`
	Open       int    `json:"open"`
	Highest    string `json:"highest"`
	FixRelease string `json:"fix_release"`
}

// AuditQuery selects audit records.
type AuditQuery struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Text    string    `json:"text"`
	Before  uint64    `json:"before"`
	Limit   int       `json:"limit"`
}

// AuditPage is one page of audit records, newest first.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	Next    uint64       `json:"next"`
	Head    uint64       `json:"head"`
	// Verified is the result of the last chain verification.
	Verified string `json:"verified"`
}

// AuditEntry is one audit record.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Details []Count2  `json:"details"`
	Hash    string    `json:"hash"`
}
