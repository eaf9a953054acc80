package hub

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// The registry lives in files under DATA/registry rather than in the
// hub's database: the `wardhub token create`, `wardhub revoke` and
// `wardhub enroll` commands change it while `wardhub serve` holds the
// database lock, and the running hub picks the change up within a second.
//
//	registry/sites/SITE.json       one enrolled site
//	registry/tokens/ID.json        an unused enrolment token (ID is a hash)
//	registry/tokens/used/ID.json   a token that enrolled a site
const (
	registryDir = "registry"
	// tokenBytes is the entropy of an enrolment token.
	tokenBytes = 32
	// maxRecordFile bounds a registry file read from disk.
	maxRecordFile = 64 << 10
)

// siteIDPattern is the form of every site id the hub issues.
var siteIDPattern = regexp.MustCompile(`^site-[0-9a-f]{32}$`)

// Errors of token consumption. Each names the reason sent to the
// enrolling gateway.
var (
	ErrTokenUnknown = errors.New("enrolment token unknown")
	ErrTokenUsed    = errors.New("enrolment token already used")
	ErrTokenExpired = errors.New("enrolment token expired")
	ErrSiteUnknown  = errors.New("site unknown")
)

// Site is one enrolled gateway site.
type Site struct {
	ID string `json:"id"`
	// EnrolledAt is when the site's first certificate was issued.
	EnrolledAt time.Time `json:"enrolled_at"`
	// Method is "token" (the gateway sent a signing request) or "bundle"
	// (the hub generated the key into a credentials bundle).
	Method string `json:"method"`
	// Token is the id of the enrolment token used, never the token.
	Token string `json:"token,omitempty"`
	// Note is the operator's label from `wardhub token create -note`.
	Note string `json:"note,omitempty"`
	// RevokedAt is set once the site is revoked; a revoked site is
	// refused on every connection from then on.
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
	// Certificates lists every certificate issued to the site, newest
	// last.
	Certificates []IssuedCert `json:"certificates,omitempty"`
}

// IssuedCert records one certificate issued to a site.
type IssuedCert struct {
	Serial   string    `json:"serial"`
	IssuedAt time.Time `json:"issued_at"`
	NotAfter time.Time `json:"not_after"`
}

// Revoked reports whether the site has been revoked.
func (s Site) Revoked() bool { return !s.RevokedAt.IsZero() }

// tokenRecord is an enrolment token as stored: only its hash names it.
type tokenRecord struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Note      string    `json:"note,omitempty"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	UsedBy    string    `json:"used_by,omitempty"`
	UsedKey   string    `json:"used_key,omitempty"`
}

// Registry is the hub's record of enrolled sites and enrolment tokens. It
// is safe for concurrent use; several processes may share one folder.
type Registry struct {
	dir string

	mu     sync.RWMutex
	sites  map[string]Site
	stamp  time.Time
	loaded time.Time
}

// OpenRegistry opens the registry under dataDir, creating its folders.
func OpenRegistry(dataDir string) (*Registry, error) {
	r := &Registry{dir: filepath.Join(dataDir, registryDir)}
	for _, d := range []string{r.sitesDir(), r.tokensDir(), filepath.Join(r.tokensDir(), "used")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating registry folder %s: %w", d, err)
		}
	}
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) sitesDir() string  { return filepath.Join(r.dir, "sites") }
func (r *Registry) tokensDir() string { return filepath.Join(r.dir, "tokens") }

// Site returns the site with id. A site enrolled by another process
// since the last load is read from its file.
func (r *Registry) Site(id string) (Site, bool) {
	r.mu.RLock()
	s, ok := r.sites[id]
	r.mu.RUnlock()
	if ok || !siteIDPattern.MatchString(id) {
		return s, ok
	}
	s, err := readSite(filepath.Join(r.sitesDir(), id+".json"))
	if err != nil || s.ID != id {
		return Site{}, false
	}
	r.mu.Lock()
	r.sites[id] = s
	r.mu.Unlock()
	return s, true
}

// Sites returns every site, sorted by id.
func (r *Registry) Sites() []Site {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Site, 0, len(r.sites))
	for _, s := range r.sites {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Reload rereads the site files when another process changed them, as
// the folder's modification time shows. A full reread happens at least
// every 30 seconds in case a clock step hid a change.
func (r *Registry) Reload() error { return r.reload(false) }

func (r *Registry) reload(force bool) error {
	st, err := os.Stat(r.sitesDir())
	if err != nil {
		return fmt.Errorf("reading registry: %w", err)
	}
	r.mu.RLock()
	same := st.ModTime().Equal(r.stamp) && time.Since(r.loaded) < 30*time.Second
	r.mu.RUnlock()
	if same && !force {
		return nil
	}
	entries, err := os.ReadDir(r.sitesDir())
	if err != nil {
		return fmt.Errorf("reading registry: %w", err)
	}
	sites := make(map[string]Site, len(entries))
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !siteIDPattern.MatchString(id) {
			continue
		}
		s, err := readSite(filepath.Join(r.sitesDir(), e.Name()))
		if err != nil || s.ID != id {
			// A half-written file cannot exist (writes rename into
			// place); anything else unreadable is skipped and the site
			// stays unknown, which refuses it.
			continue
		}
		sites[id] = s
	}
	r.mu.Lock()
	r.sites, r.stamp, r.loaded = sites, st.ModTime(), time.Now()
	r.mu.Unlock()
	return nil
}

func readSite(name string) (Site, error) {
	data, err := readBounded(name)
	if err != nil {
		return Site{}, err
	}
	return parseSite(data)
}

// parseSite decodes one site file.
func parseSite(data []byte) (Site, error) {
	var s Site
	if err := json.Unmarshal(data, &s); err != nil {
		return Site{}, fmt.Errorf("decoding site record: %w", err)
	}
	if !siteIDPattern.MatchString(s.ID) {
		return Site{}, fmt.Errorf("site record has invalid id %q", s.ID)
	}
	return s, nil
}

func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRecordFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxRecordFile)
	}
	return data, nil
}

// NewSiteID returns a random site id.
func NewSiteID() (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	return "site-" + hex.EncodeToString(id[:]), nil
}

// PutSite writes a site record and reloads the registry.
func (r *Registry) PutSite(s Site) error {
	if !siteIDPattern.MatchString(s.ID) {
		return fmt.Errorf("site id %q is not of the form site-<32 hex digits>", s.ID)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(r.sitesDir(), s.ID+".json"), append(data, '\n')); err != nil {
		return fmt.Errorf("writing site %s: %w", s.ID, err)
	}
	return r.reload(true)
}

// addCertificate records a certificate issued to an existing site.
func (r *Registry) addCertificate(id string, c IssuedCert) error {
	s, err := readSite(filepath.Join(r.sitesDir(), id+".json"))
	if err != nil {
		return fmt.Errorf("%w: %s", ErrSiteUnknown, id)
	}
	s.Certificates = append(s.Certificates, c)
	// A site renews a few times a year; keep the last 50 for audit.
	if len(s.Certificates) > 50 {
		s.Certificates = s.Certificates[len(s.Certificates)-50:]
	}
	return r.PutSite(s)
}

// Revoke marks a site revoked. Its open connections are closed within a
// second by a running hub, and every later connection is refused.
func (r *Registry) Revoke(id, reason string) (Site, error) {
	if !siteIDPattern.MatchString(id) {
		return Site{}, fmt.Errorf("site id %q is not of the form site-<32 hex digits>: see `wardhub sites`", id)
	}
	s, err := readSite(filepath.Join(r.sitesDir(), id+".json"))
	if err != nil {
		return Site{}, fmt.Errorf("%w: %s (see `wardhub sites` for enrolled sites)", ErrSiteUnknown, id)
	}
	if s.Revoked() {
		return s, nil
	}
	s.RevokedAt = time.Now().UTC()
	s.RevokeReason = reason
	return s, r.PutSite(s)
}

// CreateToken mints a one-time enrolment token valid for ttl. Only its
// hash is stored; the token itself is returned once.
func (r *Registry) CreateToken(ttl time.Duration, note string) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("token lifetime %s must be positive", ttl)
	}
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := "wgt_" + base64.RawURLEncoding.EncodeToString(raw[:])
	now := time.Now().UTC()
	rec := tokenRecord{ID: tokenID(token), CreatedAt: now, ExpiresAt: now.Add(ttl), Note: note}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeAtomic(filepath.Join(r.tokensDir(), rec.ID+".json"), append(data, '\n')); err != nil {
		return "", fmt.Errorf("writing token: %w", err)
	}
	return token, nil
}

// tokenID names a token by a hash, so that the folder holds nothing that
// enrols a gateway.
func tokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// validToken reports whether token has the form CreateToken returns.
func validToken(token string) bool {
	rest, ok := strings.CutPrefix(token, "wgt_")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(raw) == tokenBytes
}

// consumeToken uses a token up for siteID and the key whose hash is
// keyHash. Renaming the file into used/ is atomic, so of two gateways
// racing with one token exactly one wins, even across processes. A used
// token returns ErrTokenUsed with its record, so the caller can tell a
// retry by the same key from a second gateway.
func (r *Registry) consumeToken(token, siteID string, now time.Time, keyHash string) (tokenRecord, error) {
	if !validToken(token) {
		return tokenRecord{}, ErrTokenUnknown
	}
	id := tokenID(token)
	from := filepath.Join(r.tokensDir(), id+".json")
	to := filepath.Join(r.tokensDir(), "used", id+".json")
	if err := os.Rename(from, to); err != nil {
		if rec, rerr := readToken(to); rerr == nil {
			return rec, ErrTokenUsed
		}
		return tokenRecord{}, ErrTokenUnknown
	}
	rec, err := readToken(to)
	if err != nil {
		return tokenRecord{}, err
	}
	if now.After(rec.ExpiresAt) {
		return rec, ErrTokenExpired
	}
	rec.UsedAt, rec.UsedBy, rec.UsedKey = now, siteID, keyHash
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return tokenRecord{}, err
	}
	if err := writeAtomic(to, append(data, '\n')); err != nil {
		return tokenRecord{}, fmt.Errorf("recording token use: %w", err)
	}
	return rec, nil
}

func readToken(name string) (tokenRecord, error) {
	data, err := readBounded(name)
	if err != nil {
		return tokenRecord{}, fmt.Errorf("reading token record: %w", err)
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return tokenRecord{}, fmt.Errorf("decoding token record: %w", err)
	}
	return rec, nil
}

// writeAtomic writes data to name through a synced temporary file and a
// rename, so readers see the old or the new content, never a part.
func writeAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
