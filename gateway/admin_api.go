package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/console"
)

// apiRoutes adds the JSON admin API. Every route needs an API token in
// "Authorization: Bearer wgt_..."; the role each needs is given here.
// Calls that change something are audited with the token's id.
func (g *Gateway) apiRoutes(mux *http.ServeMux) {
	h := func(pattern string, need Role, fn func(http.ResponseWriter, *http.Request, TokenInfo)) {
		mux.Handle(pattern, console.SecurityHeaders(g.api(need, fn)))
	}
	h("GET /v1/whoami", RoleViewer, func(w http.ResponseWriter, r *http.Request, t TokenInfo) { writeJSON(w, http.StatusOK, t) })
	h("GET /v1/status", RoleViewer, g.apiStatus)
	h("GET /v1/devices", RoleViewer, g.apiDevices)
	h("GET /v1/devices/{manufacturer}/{serial}", RoleViewer, g.apiDevice)
	h("GET /v1/releases", RoleViewer, g.apiReleases)
	h("POST /v1/releases/approve", RoleApprover, g.apiApprove)
	h("POST /v1/rollouts/{id}/{action}", RoleOperator, g.apiRolloutAction)
	h("GET /v1/windows", RoleViewer, g.apiWindows)
	h("GET /v1/exposure", RoleViewer, g.apiExposure)
	h("GET /v1/audit", RoleViewer, g.apiAudit)
	h("GET /v1/audit/export", RoleViewer, g.apiAuditExport)
	h("POST /v1/audit/verify", RoleViewer, g.apiAuditVerify)
	h("GET /v1/tokens", RoleAdmin, g.apiTokens)
	h("POST /v1/tokens", RoleAdmin, g.apiTokenCreate)
	h("POST /v1/tokens/{id}/revoke", RoleAdmin, g.apiTokenRevoke)
	h("GET /v1/backup", RoleAdmin, g.apiBackup)
	g.reportRoutes(h)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

func (g *Gateway) api(need Role, fn func(http.ResponseWriter, *http.Request, TokenInfo)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wardgate"`)
			writeError(w, http.StatusUnauthorized, "this call needs an API token: send \"Authorization: Bearer wgt_...\" (create one with `wardgate token create`)")
			return
		}
		info, err := g.admin.tokens.Verify(r.Context(), tok)
		if err != nil {
			if ok, skipped := g.admin.fails.allow(r.RemoteAddr, time.Now()); ok {
				g.recordAudit(r.Context(), audit.Record{Actor: "anonymous", Action: "admin.auth_failed", Subject: "api", Details: map[string]string{
					"remote": r.RemoteAddr, "path": r.URL.Path, "error": err.Error(), "unrecorded_before": strconv.Itoa(skipped)}})
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="wardgate", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "%v", err)
			return
		}
		if !info.Role.Allows(need) {
			writeError(w, http.StatusForbidden, "%s needs the %s role; token %s (%s) has the %s role", r.URL.Path, need, info.ID, info.Name, info.Role)
			return
		}
		fn(w, r, info)
	})
}

func actorOf(t TokenInfo) string { return "token:" + t.ID }

// failLimiter bounds the audit records of failed authentications, so a
// client that retries a bad token cannot flood the chain. It allows one
// record per client address a minute and counts the ones it held back.
type failLimiter struct {
	mu   sync.Mutex
	last map[string]failState
}

type failState struct {
	at      time.Time
	skipped int
}

// allow reports whether to record a failure from remote ("host:port"),
// and how many failures from that host went unrecorded before it.
func (l *failLimiter) allow(remote string, now time.Time) (bool, int) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) > 4096 {
		l.last = map[string]failState{}
	}
	st, seen := l.last[host]
	if seen && now.Sub(st.at) < time.Minute {
		st.skipped++
		l.last[host] = st
		return false, 0
	}
	l.last[host] = failState{at: now}
	return true, st.skipped
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body: %v", err)
		return false
	}
	return true
}

func (g *Gateway) apiStatus(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	st, err := g.Status(r.Context())
	if err != nil {
		st.Alerts = append(st.Alerts, StatusAlert{Level: "critical", Message: "status incomplete: " + err.Error()})
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) apiDevices(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	q := r.URL.Query()
	list, err := g.deviceList(r.Context(), console.DeviceFilter{Query: q.Get("q"), Manufacturer: q.Get("manufacturer"), Model: q.Get("model"), Version: q.Get("version"), Class: q.Get("class"), State: q.Get("state")})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, list.Devices)
}

func (g *Gateway) apiDevice(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	d, err := g.deviceDetail(r.Context(), r.PathValue("manufacturer"), r.PathValue("serial"))
	if err != nil {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (g *Gateway) apiReleases(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	rel, err := g.releaseViews(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, rel)
}

// ApproveRequest is the body of POST /v1/releases/approve.
type ApproveRequest struct {
	Target string `json:"target"`
	Group  string `json:"group"`
}

func (g *Gateway) apiApprove(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	var req ApproveRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ro, err := g.admin.rollouts.Approve(r.Context(), actorOf(t), t.Name+" ("+actorOf(t)+")", req.Target, req.Group)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, rolloutView(rolloutRecord{Rollout: ro}))
}

func (g *Gateway) apiRolloutAction(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	var req struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 && !decodeBody(w, r, &req) {
		return
	}
	if err := g.admin.rollouts.Action(r.Context(), actorOf(t), r.PathValue("id"), r.PathValue("action"), req.Note); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) apiWindows(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	days := 7
	if s := r.URL.Query().Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 62 {
			writeError(w, http.StatusBadRequest, "days %q must be a whole number from 1 to 62", s)
			return
		}
		days = n
	}
	now := time.Now()
	v, err := g.windowsView(r.Context(), time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location()), days)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (g *Gateway) apiExposure(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	ex, err := g.exposureView(r.Context(), strings.TrimSpace(r.URL.Query().Get("id")))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, ex)
}

// parseAPIAuditQuery reads from, to (RFC 3339 or a date), actor, action,
// subject, q, before and limit.
func parseAPIAuditQuery(r *http.Request) (console.AuditQuery, error) {
	v := r.URL.Query()
	q := console.AuditQuery{Actor: v.Get("actor"), Action: v.Get("action"), Subject: v.Get("subject"), Text: v.Get("q"), Limit: 100}
	var err error
	if q.From, err = ParseTime(v.Get("from")); err != nil {
		return q, err
	}
	if q.To, err = ParseTime(v.Get("to")); err != nil {
		return q, err
	}
	if s := v.Get("before"); s != "" {
		if q.Before, err = strconv.ParseUint(s, 10, 64); err != nil {
			return q, fmt.Errorf("before %q is not a record number", s)
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > 10000 {
			return q, fmt.Errorf("limit %q must be a whole number from 1 to 10000", s)
		}
	}
	return q, nil
}

// ParseTime reads an RFC 3339 time or a UTC date such as "2026-03-01";
// an empty string is the zero time.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q is neither RFC 3339 (2026-03-01T08:00:00Z) nor a date (2026-03-01)", s)
}

func (g *Gateway) apiAudit(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	q, err := parseAPIAuditQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	p, err := g.audit.Query(r.Context(), auditFilter(q), q.Before, q.Limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (g *Gateway) apiAuditExport(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	q, err := parseAPIAuditQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	f, err := audit.ParseFormat(r.URL.Query().Get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if f == audit.FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	res, err := g.audit.Export(r.Context(), w, f, auditFilter(q), nil)
	g.recordAudit(context.WithoutCancel(r.Context()), audit.Record{Actor: actorOf(t), Action: "audit.export", Subject: "audit", Details: exportDetails(q, f, res, err)})
}

// VerifyResult is the response of POST /v1/audit/verify.
type VerifyResult struct {
	Entries int    `json:"entries"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	// BrokenSeq is the first broken entry, when the chain is broken.
	BrokenSeq uint64 `json:"broken_seq,omitempty"`
}

func (g *Gateway) apiAuditVerify(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	n, err := g.verifyAudit(r.Context())
	res := VerifyResult{Entries: n, OK: err == nil}
	var be *audit.BrokenError
	if errors.As(err, &be) {
		res.BrokenSeq = be.Seq
	}
	if err != nil {
		res.Error = err.Error()
	}
	g.recordAudit(r.Context(), audit.Record{Actor: actorOf(t), Action: "audit.verify", Subject: "audit", Details: map[string]string{"entries": strconv.Itoa(n), "ok": strconv.FormatBool(res.OK), "error": res.Error}})
	writeJSON(w, http.StatusOK, res)
}

func (g *Gateway) apiTokens(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	list, err := g.admin.tokens.List(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	for i := range list {
		list[i].Hash = ""
	}
	writeJSON(w, http.StatusOK, list)
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// TTL is a Go duration such as "720h"; empty means no expiry.
	TTL string `json:"ttl,omitempty"`
}

// TokenResponse carries a new token; its secret is shown only here.
type TokenResponse struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}

func (g *Gateway) apiTokenCreate(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	var req TokenRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			writeError(w, http.StatusBadRequest, "ttl %q is not a duration such as \"720h\"", req.TTL)
			return
		}
	}
	secret, info, err := CreateToken(r.Context(), g.admin.tokens, g.audit, actorOf(t), req.Name, req.Role, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	info.Hash = ""
	writeJSON(w, http.StatusOK, TokenResponse{Token: secret, Info: info})
}

func (g *Gateway) apiTokenRevoke(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	info, err := RevokeToken(r.Context(), g.admin.tokens, g.audit, actorOf(t), r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if g.admin.console != nil {
		g.admin.console.EndSessions(info.ID)
	}
	info.Hash = ""
	writeJSON(w, http.StatusOK, info)
}

// CreateToken creates a token and audits it, for the admin API and for
// `wardgate token create` on a stopped gateway.
func CreateToken(ctx context.Context, tokens *Tokens, rec audit.Recorder, by, name string, role Role, ttl time.Duration) (string, TokenInfo, error) {
	secret, info, err := tokens.Create(ctx, name, role, ttl, by)
	if err != nil {
		return "", info, err
	}
	d := map[string]string{"token": info.ID, "name": info.Name, "role": info.Role.String()}
	if !info.ExpiresAt.IsZero() {
		d["expires"] = info.ExpiresAt.Format(time.RFC3339)
	}
	if err := rec.Record(ctx, audit.Record{Actor: by, Action: "token.create", Subject: "token:" + info.ID, Details: d}); err != nil {
		return "", info, fmt.Errorf("auditing the new token: %w", err)
	}
	return secret, info, nil
}

// RevokeToken revokes a token and audits it.
func RevokeToken(ctx context.Context, tokens *Tokens, rec audit.Recorder, by, id string) (TokenInfo, error) {
	info, err := tokens.Revoke(ctx, id, by)
	if err != nil {
		return info, err
	}
	err = rec.Record(ctx, audit.Record{Actor: by, Action: "token.revoke", Subject: "token:" + info.ID, Details: map[string]string{"name": info.Name, "role": info.Role.String()}})
	return info, err
}
