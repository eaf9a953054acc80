package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// safeNext keeps a post-login redirect on the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/console/"
	}
	return next
}

type loginData struct {
	Next, CSRF string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	csrf := randomToken()
	setCookie(w, r, loginCookie, csrf, 600)
	s.render(w, r, http.StatusOK, "login", page{Title: "Log in", Data: loginData{Next: safeNext(r.URL.Query().Get("next")), CSRF: csrf}})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	c, _ := r.Cookie(loginCookie)
	next := safeNext(r.PostFormValue("next"))
	again := func(status int, msg string) {
		csrf := randomToken()
		setCookie(w, r, loginCookie, csrf, 600)
		s.render(w, r, status, "login", page{Title: "Log in", Error: msg, Data: loginData{Next: next, CSRF: csrf}})
	}
	if c == nil || !equalSecret(r.PostFormValue("csrf"), c.Value) || !sameOrigin(r) {
		again(http.StatusForbidden, "The login form expired or did not come from this console. Try again.")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	a, err := s.b.Authenticate(r.Context(), token)
	if err != nil {
		s.b.AuditLogin(r.Context(), "admin.login_failed", Actor{}, r.RemoteAddr, err.Error())
		again(http.StatusUnauthorized, "That token is not valid: "+err.Error())
		return
	}
	id, _ := s.sess.create(a)
	setCookie(w, r, sessionCookie, id, int(s.sess.lifetime/time.Second))
	setCookie(w, r, loginCookie, "", -1)
	s.b.AuditLogin(r.Context(), "admin.login", a, r.RemoteAddr, "console")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	if c, _ := r.Cookie(sessionCookie); c != nil {
		s.sess.drop(c.Value)
	}
	setCookie(w, r, sessionCookie, "", -1)
	s.b.AuditLogin(r.Context(), "admin.logout", sess.actor, r.RemoteAddr, "console")
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	o, err := s.b.Overview(r.Context())
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "Overview unavailable", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Session: sess, Data: o})
}

type devicesData struct {
	Filter DeviceFilter
	List   DeviceList
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	f := DeviceFilter{Query: q.Get("q"), Manufacturer: q.Get("manufacturer"), Model: q.Get("model"), Version: q.Get("version"), Class: q.Get("class"), State: q.Get("state")}
	list, err := s.b.Devices(r.Context(), f)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "Devices unavailable", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "devices", page{Title: "Devices", Nav: "devices", Session: sess, Data: devicesData{f, list}})
}

func (s *Server) device(w http.ResponseWriter, r *http.Request, sess *session) {
	d, err := s.b.Device(r.Context(), r.PathValue("manufacturer"), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, sess, http.StatusNotFound, "No such device", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "device", page{Title: d.Manufacturer + " " + d.Serial, Nav: "devices", Session: sess, Data: d})
}

func (s *Server) releases(w http.ResponseWriter, r *http.Request, sess *session) {
	rel, err := s.b.Releases(r.Context())
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "Releases unavailable", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "releases", page{Title: "Releases and rollouts", Nav: "releases", Session: sess,
		Flash: r.URL.Query().Get("done"), Data: rel})
}

// progressJSON is the rollout progress that the releases page's script
// polls to move the bars.
type progressJSON struct {
	ID     string         `json:"id"`
	State  string         `json:"state"`
	Paused bool           `json:"paused"`
	Waves  []waveSegments `json:"waves"`
}

type waveSegments struct {
	Segments []Segment `json:"segments"`
	Label    string    `json:"label"`
	Open     bool      `json:"open"`
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request, sess *session) {
	rollouts, err := s.b.Rollouts(r.Context())
	if err != nil {
		s.log.Error("reading rollout progress failed", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := []progressJSON{}
	for _, ro := range rollouts {
		p := progressJSON{ID: ro.ID, State: ro.State, Paused: ro.Paused}
		for _, wv := range ro.WaveProgress {
			p.Waves = append(p.Waves, waveSegments{Segments: segments(wv), Label: waveLabel(wv), Open: wv.Open})
		}
		out = append(out, p)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request, sess *session) {
	target, group := r.PostFormValue("target"), r.PostFormValue("group")
	if err := s.b.Approve(r.Context(), sess.actor, target, group); err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Approval failed", err.Error())
		return
	}
	http.Redirect(w, r, "/console/releases?done="+url.QueryEscape("Approved "+target+" and started its rollout."), http.StatusSeeOther)
}

func (s *Server) rolloutAction(w http.ResponseWriter, r *http.Request, sess *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if err := s.b.RolloutAction(r.Context(), sess.actor, id, action, r.PostFormValue("note")); err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Rollout action failed", err.Error())
		return
	}
	http.Redirect(w, r, "/console/releases?done="+url.QueryEscape("Rollout "+id+": "+action+" done."), http.StatusSeeOther)
}

func (s *Server) windows(w http.ResponseWriter, r *http.Request, sess *session) {
	now := s.now()
	from := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	wins, err := s.b.Windows(r.Context(), from, 7)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "Windows unavailable", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "windows", page{Title: "Maintenance windows", Nav: "windows", Session: sess, Data: timeline(wins, now)})
}

func (s *Server) exposure(w http.ResponseWriter, r *http.Request, sess *session) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	ex, err := s.b.Exposure(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Exposure unavailable", err.Error())
		return
	}
	ex.ID = id
	s.render(w, r, http.StatusOK, "exposure", page{Title: "Exposure", Nav: "exposure", Session: sess, Data: ex})
}

type auditData struct {
	Q        AuditQuery
	From, To string
	Page     AuditPage
	Export   string
}

func parseAuditQuery(q url.Values, loc *time.Location) (AuditQuery, string, string, error) {
	aq := AuditQuery{Actor: q.Get("actor"), Action: q.Get("action"), Subject: q.Get("subject"), Text: q.Get("q"), Limit: 50}
	from, to := q.Get("from"), q.Get("to")
	var err error
	if aq.From, err = parseWhen(from, loc); err != nil {
		return aq, from, to, err
	}
	if aq.To, err = parseWhen(to, loc); err != nil {
		return aq, from, to, err
	}
	if b := q.Get("before"); b != "" {
		if aq.Before, err = strconv.ParseUint(b, 10, 64); err != nil {
			return aq, from, to, &inputError{"before", b, "a record number"}
		}
	}
	return aq, from, to, nil
}

type inputError struct{ field, value, want string }

func (e *inputError) Error() string {
	return "the " + e.field + " value " + strconv.Quote(e.value) + " is not " + e.want
}

// parseWhen reads a date ("2026-03-01"), a local date and time from a
// datetime-local field ("2026-03-01T08:30") or RFC 3339.
func parseWhen(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &inputError{"time", s, "a date such as 2026-03-01 or a time such as 2026-03-01T08:30"}
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, sess *session) {
	q, from, to, err := parseAuditQuery(r.URL.Query(), s.now().Location())
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Bad audit filter", err.Error())
		return
	}
	p, err := s.b.Audit(r.Context(), q)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "Audit trail unavailable", err.Error())
		return
	}
	exp := r.URL.Query()
	exp.Del("before")
	s.render(w, r, http.StatusOK, "audit", page{Title: "Audit trail", Nav: "audit", Session: sess, Data: auditData{Q: q, From: from, To: to, Page: p, Export: exp.Encode()}})
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, sess *session) {
	q, _, _, err := parseAuditQuery(r.URL.Query(), s.now().Location())
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Bad audit filter", err.Error())
		return
	}
	format := r.URL.Query().Get("format")
	ext, ctype := "jsonl", "application/x-ndjson"
	if format == "csv" {
		ext, ctype = "csv", "text/csv; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="wardgate-audit-`+s.now().UTC().Format("20060102T150405Z")+`.`+ext+`"`)
	if err := s.b.ExportAudit(r.Context(), sess.actor, w, format, q); err != nil {
		s.log.Error("audit export failed", "err", err)
	}
}
