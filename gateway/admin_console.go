package gateway

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/console"
)

// consoleBackend gives the console the gateway's data and actions.
type consoleBackend struct{ g *Gateway }

var _ console.Backend = consoleBackend{}

func (b consoleBackend) Authenticate(ctx context.Context, token string) (console.Actor, error) {
	info, err := b.g.admin.tokens.Verify(ctx, token)
	if err != nil {
		return console.Actor{}, err
	}
	return console.Actor{TokenID: info.ID, Name: info.Name, Role: info.Role}, nil
}

func (b consoleBackend) AuditLogin(ctx context.Context, action string, a console.Actor, remote, detail string) {
	if action == "admin.login_failed" {
		ok, skipped := b.g.admin.fails.allow(remote, time.Now())
		if !ok {
			return
		}
		detail += fmt.Sprintf(" (%d failures from this address unrecorded before)", skipped)
	}
	actor := "anonymous"
	if a.TokenID != "" {
		actor = a.AuditName()
	}
	b.g.recordAudit(ctx, audit.Record{Actor: actor, Action: action, Subject: "console", Details: map[string]string{
		"remote": remote, "detail": detail, "name": a.Name, "role": roleString(a.Role)}})
}

func roleString(r console.Role) string {
	if r == 0 {
		return ""
	}
	return r.String()
}

func (b consoleBackend) Overview(ctx context.Context) (console.Overview, error) {
	return b.g.overview(ctx)
}

func (b consoleBackend) Devices(ctx context.Context, f console.DeviceFilter) (console.DeviceList, error) {
	return b.g.deviceList(ctx, f)
}

func (b consoleBackend) Device(ctx context.Context, m, s string) (console.DeviceDetail, error) {
	return b.g.deviceDetail(ctx, m, s)
}

func (b consoleBackend) Releases(ctx context.Context) ([]console.Release, error) {
	return b.g.releaseViews(ctx)
}

func (b consoleBackend) Rollouts(ctx context.Context) ([]console.Rollout, error) {
	_, recs := b.g.admin.rollouts.snapshot()
	out := make([]console.Rollout, 0, len(recs))
	for _, r := range recs {
		out = append(out, rolloutView(r))
	}
	return out, nil
}

func (b consoleBackend) Approve(ctx context.Context, a console.Actor, target, group string) error {
	_, err := b.g.admin.rollouts.Approve(ctx, a.AuditName(), a.Name+" ("+a.AuditName()+")", target, group)
	return err
}

func (b consoleBackend) RolloutAction(ctx context.Context, a console.Actor, id, action, note string) error {
	return b.g.admin.rollouts.Action(ctx, a.AuditName(), id, action, note)
}

func (b consoleBackend) Windows(ctx context.Context, from time.Time, days int) (console.Windows, error) {
	return b.g.windowsView(ctx, from, days)
}

func (b consoleBackend) Exposure(ctx context.Context, id string) (console.Exposure, error) {
	return b.g.exposureView(ctx, id)
}

func (b consoleBackend) Audit(ctx context.Context, q console.AuditQuery) (console.AuditPage, error) {
	return b.g.auditPage(ctx, q)
}

func (b consoleBackend) ExportAudit(ctx context.Context, a console.Actor, w io.Writer, format string, q console.AuditQuery) error {
	f, err := audit.ParseFormat(format)
	if err != nil {
		return err
	}
	res, err := b.g.audit.Export(ctx, w, f, auditFilter(q), nil)
	b.g.recordAudit(ctx, audit.Record{Actor: a.AuditName(), Action: "audit.export", Subject: "audit", Details: exportDetails(q, f, res, err)})
	return err
}

func exportDetails(q console.AuditQuery, f audit.Format, res audit.ExportResult, err error) map[string]string {
	d := map[string]string{"format": string(f), "entries": fmt.Sprint(res.Entries)}
	if !q.From.IsZero() {
		d["from"] = q.From.UTC().Format(time.RFC3339)
	}
	if !q.To.IsZero() {
		d["to"] = q.To.UTC().Format(time.RFC3339)
	}
	if res.Entries > 0 {
		d["first_seq"], d["last_seq"] = fmt.Sprint(res.FirstSeq), fmt.Sprint(res.LastSeq)
	}
	if err != nil {
		d["error"] = err.Error()
	}
	return d
}

func auditFilter(q console.AuditQuery) audit.Filter {
	return audit.Filter{From: q.From, To: q.To, Actor: q.Actor, Action: q.Action, Subject: q.Subject, Text: q.Text}
}

func (g *Gateway) auditPage(ctx context.Context, q console.AuditQuery) (console.AuditPage, error) {
	p, err := g.audit.Query(ctx, auditFilter(q), q.Before, q.Limit)
	if err != nil {
		return console.AuditPage{}, err
	}
	out := console.AuditPage{Next: p.Next, Head: g.audit.Head().Seq}
	g.admin.mu.Lock()
	out.Verified = g.admin.lastVerify
	g.admin.mu.Unlock()
	if out.Verified == "" {
		out.Verified = "chain not verified since start"
	}
	for _, e := range p.Entries {
		ae := console.AuditEntry{Seq: e.Seq, Time: e.Record.Time, Actor: e.Record.Actor, Action: e.Record.Action, Subject: e.Record.Subject, Hash: e.Hash}
		for _, k := range audit.DetailKeys(e.Record) {
			if v := e.Record.Details[k]; v != "" {
				ae.Details = append(ae.Details, console.Count2{Name: k, Value: v})
			}
		}
		out.Entries = append(out.Entries, ae)
	}
	return out, nil
}

// verifyAudit verifies the chain and remembers the outcome for the
// console.
func (g *Gateway) verifyAudit(ctx context.Context) (int, error) {
	n, err := g.audit.Verify(ctx)
	msg, ok := fmt.Sprintf("chain verified %s: %d records intact", time.Now().Format("2006-01-02 15:04"), n), 1.0
	if err != nil {
		msg, ok = "chain verification FAILED: "+err.Error(), 0
	}
	if ctx.Err() != nil {
		return n, err
	}
	g.admin.mu.Lock()
	g.admin.lastVerify, g.admin.chainOK = msg, ok
	g.admin.mu.Unlock()
	return n, err
}

func (g *Gateway) exposureView(ctx context.Context, id string) (console.Exposure, error) {
	g.admin.mu.Lock()
	src := g.admin.exposure
	g.admin.mu.Unlock()
	if src == nil {
		return console.Exposure{ID: id}, nil
	}
	return src.Exposure(ctx, id)
}
