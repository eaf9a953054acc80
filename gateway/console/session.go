package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Cookie names. The session cookie holds a random id; the server keeps
// only its SHA-256, so a memory dump does not yield live sessions.
const (
	sessionCookie = "wardgate_session"
	loginCookie   = "wardgate_login"
)

// maxSessions bounds the sessions kept in memory; the oldest goes first.
const maxSessions = 1024

type session struct {
	actor   Actor
	csrf    string
	created time.Time
	expires time.Time
}

type sessions struct {
	mu       sync.Mutex
	byHash   map[[32]byte]*session
	lifetime time.Duration
	now      func() time.Time
}

func newSessions(lifetime time.Duration, now func() time.Time) *sessions {
	return &sessions{byHash: map[[32]byte]*session{}, lifetime: lifetime, now: now}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for a and returns its cookie value.
func (s *sessions) create(a Actor) (string, *session) {
	id := randomToken()
	now := s.now()
	sess := &session{actor: a, csrf: randomToken(), created: now, expires: now.Add(s.lifetime)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, old := range s.byHash {
		if !now.Before(old.expires) {
			delete(s.byHash, h)
		}
	}
	for len(s.byHash) >= maxSessions {
		var oldest [32]byte
		var t time.Time
		for h, old := range s.byHash {
			if t.IsZero() || old.created.Before(t) {
				oldest, t = h, old.created
			}
		}
		delete(s.byHash, oldest)
	}
	s.byHash[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

func (s *sessions) get(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byHash[h]
	if !ok {
		return nil, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.byHash, h)
		return nil, false
	}
	return sess, true
}

func (s *sessions) drop(id string) {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byHash, h)
}

// dropToken ends every session of a token, as when it is revoked.
func (s *sessions) dropToken(tokenID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, sess := range s.byHash {
		if sess.actor.TokenID == tokenID {
			delete(s.byHash, h)
		}
	}
}

func equalSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sameOrigin rejects a state-changing request whose Origin or
// Sec-Fetch-Site header says it came from another site. Requests
// without either header (such as from curl) rely on the CSRF token.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == ""
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/console/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// Actor returns the session's caller, for templates.
func (s *session) Actor() Actor { return s.actor }

// CSRF returns the token that the session's forms must carry.
func (s *session) CSRF() string { return s.csrf }
