// Package console is the gateway's web console for hospital IT: server
// rendered pages (html/template, embedded templates and CSS, no build
// step) for the overview, devices, releases and rollouts, maintenance
// windows, exposure and the audit trail. It owns console sessions,
// login with an API token, CSRF protection and the security headers;
// the data and every change come from a Backend that the gateway
// implements and audits.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Server.
type Options struct {
	Backend Backend
	// SessionLifetime is how long a login lasts (default 8h).
	SessionLifetime time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the console under /console/.
type Server struct {
	b     Backend
	log   *slog.Logger
	now   func() time.Time
	sess  *sessions
	pages map[string]*template.Template
}

// New parses the templates and returns the console.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("console needs a backend")
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = 8 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{b: opts.Backend, log: opts.Logger.With("component", "console"), now: opts.Now,
		sess: newSessions(opts.SessionLifetime, opts.Now), pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parsing console template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return s, nil
}

// EndSessions logs out every console session of a token, as when it is
// revoked.
func (s *Server) EndSessions(tokenID string) { s.sess.dropToken(tokenID) }

// Handler returns the console's routes, to be mounted at "/console/".
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET /console/login", s.loginPage)
	mux.HandleFunc("POST /console/login", s.login)
	mux.Handle("POST /console/logout", s.auth(RoleViewer, s.logout))
	mux.Handle("GET /console/{$}", s.auth(RoleViewer, s.overview))
	mux.Handle("GET /console/devices", s.auth(RoleViewer, s.devices))
	mux.Handle("GET /console/devices/{manufacturer}/{serial}", s.auth(RoleViewer, s.device))
	mux.Handle("GET /console/releases", s.auth(RoleViewer, s.releases))
	mux.Handle("GET /console/releases/progress", s.auth(RoleViewer, s.progress))
	mux.Handle("POST /console/releases/approve", s.auth(RoleApprover, s.approve))
	mux.Handle("POST /console/rollouts/{id}/{action}", s.auth(RoleOperator, s.rolloutAction))
	mux.Handle("GET /console/windows", s.auth(RoleViewer, s.windows))
	mux.Handle("GET /console/exposure", s.auth(RoleViewer, s.exposure))
	mux.Handle("GET /console/audit", s.auth(RoleViewer, s.audit))
	mux.Handle("GET /console/audit/export", s.auth(RoleViewer, s.auditExport))
	return SecurityHeaders(mux)
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		h.ServeHTTP(w, r)
	})
}

type ctxKey int

const (
	sessionKey ctxKey = iota
	nonceKey
)

// SecurityHeaders sets the console's and the admin API's response
// headers: a strict Content-Security-Policy whose only script source is
// a per-response nonce, no framing, no MIME sniffing, no referrer, no
// caching of pages, and HSTS on TLS.
func SecurityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nonce := randomToken()[:22]
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if hd.Get("Cache-Control") == "" {
			hd.Set("Cache-Control", "no-store")
		}
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nonceKey, nonce)))
	})
}

// auth admits a request with a live session whose role includes need.
// State-changing requests must also carry the session's CSRF token and
// come from the console's own origin.
func (s *Server) auth(need Role, fn func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie(sessionCookie)
		var sess *session
		ok := false
		if c != nil {
			sess, ok = s.sess.get(c.Value)
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Not logged in", "Log in with an API token first.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				s.fail(w, r, sess, http.StatusForbidden, "Cross-site request refused", "This form did not come from the console.")
				return
			}
			if !equalSecret(r.PostFormValue("csrf"), sess.csrf) {
				s.fail(w, r, sess, http.StatusForbidden, "Form expired or forged", "The form's CSRF token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		if !sess.actor.Role.Allows(need) {
			s.fail(w, r, sess, http.StatusForbidden, "Not allowed", fmt.Sprintf("This needs the %s role; your token %q has the %s role.", need, sess.actor.Name, sess.actor.Role))
			return
		}
		fn(w, r.WithContext(context.WithValue(r.Context(), sessionKey, sess)), sess)
	})
}

// page is the data every template receives.
type page struct {
	Title   string
	Nav     string
	Session *session
	Nonce   string
	Now     time.Time
	Flash   string
	Error   string
	Data    any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p.Nonce, _ = r.Context().Value(nonceKey).(string)
	if p.Now.IsZero() {
		p.Now = s.now()
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		s.log.Error("rendering console page failed", "page", name, "err", err)
		http.Error(w, "rendering the page failed; see the gateway log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type failure struct{ Heading, Message string }

func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, heading, msg string) {
	s.render(w, r, status, "error", page{Title: heading, Session: sess, Data: failure{heading, msg}})
}
