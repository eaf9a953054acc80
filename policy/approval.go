package policy

import (
	"slices"
	"time"
)

// Approval is hospital IT's explicit approval of a release for a group.
type Approval struct {
	// Target is the release's TUF target path.
	Target string `json:"target"`
	// Group is the group the approval covers, or "" for every device.
	Group string `json:"group,omitempty"`
	// By and At record who approved and when, for reasons and audit.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at,omitzero"`
}

// ApprovalRule approves matching releases automatically, such as every
// security fix for every group.
type ApprovalRule struct {
	// Name identifies the rule in reasons.
	Name string
	// Groups limits the rule to devices in these groups, or to every
	// device when empty.
	Groups []string
	// Products and Channels limit the rule to these releases, or to any
	// release when empty.
	Products, Channels []string
	// SecurityFixesOnly limits the rule to releases marked SecurityFix.
	SecurityFixesOnly bool
}

func (r *ApprovalRule) covers(rel *Release, groups []string) bool {
	if r.SecurityFixesOnly && !rel.SecurityFix {
		return false
	}
	if len(r.Products) > 0 && !slices.Contains(r.Products, rel.Product) {
		return false
	}
	if len(r.Channels) > 0 && !slices.Contains(r.Channels, rel.Channel) {
		return false
	}
	if len(r.Groups) == 0 {
		return true
	}
	for _, g := range r.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// checkApproval appends the approval reason and reports whether r is
// approved for a device in groups.
func (e *Evaluator) checkApproval(rs *reasons, st *runtimeState, r *Release, pr *preparedRelease, groups []string) bool {
	if !e.cfg.RequireApproval && len(e.cfg.ApprovalRules) == 0 && st.approvalCount == 0 {
		rs.pass(CodeApproved, "approved automatically: no approval rules or approvals are configured")
		return true
	}
	for _, a := range st.approvals[r.Target] {
		if a.Group == "" || slices.Contains(groups, a.Group) {
			msg := "approved"
			if a.By != "" {
				msg += " by " + a.By
			}
			if a.Group != "" {
				msg += " for group " + a.Group
			} else {
				msg += " for every device"
			}
			if !a.At.IsZero() {
				msg += " on " + dateText(a.At)
			}
			rs.pass(CodeApproved, msg)
			return true
		}
	}
	for i := range e.cfg.ApprovalRules {
		if rule := &e.cfg.ApprovalRules[i]; rule.covers(r, groups) {
			rs.pass(CodeApproved, e.ruleMessages[i])
			return true
		}
	}
	group := ""
	if len(groups) > 0 {
		group = groups[0]
	}
	rs.block(CodeNotApproved, pr.message(msgNotApproved, group))
	return false
}

func quote(s string) string { return "\"" + s + "\"" }
