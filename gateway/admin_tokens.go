package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/console"
)

// Role is the permission level of an API token; see console.Role for
// the order.
type Role = console.Role

// Roles of API tokens.
const (
	RoleViewer   = console.RoleViewer
	RoleOperator = console.RoleOperator
	RoleApprover = console.RoleApprover
	RoleAdmin    = console.RoleAdmin
)

// API tokens look like "wgt_<id>_<secret>": a 12-hex-digit id that names
// the token in audit records, and 32 random bytes in unpadded base64url.
// The gateway stores only the SHA-256 of the secret under "tok/<id>"; a
// secret this long needs no slow hash.
const (
	tokenPrefix   = "wgt_"
	tokenKey      = "tok/"
	tokenIDLen    = 12
	tokenSecretSz = 32
)

// TokenInfo is a stored token without its secret.
type TokenInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	// Hash is the hex SHA-256 of the secret.
	Hash string `json:"hash"`
}

// Active reports whether the token may be used at now.
func (t TokenInfo) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Tokens is the API token store in badger. It is safe for concurrent use.
type Tokens struct {
	db  *badger.DB
	now func() time.Time
	mu  sync.Mutex // serialises LastUsed updates
}

// OpenTokens returns the token store in db.
func OpenTokens(db *badger.DB) *Tokens { return &Tokens{db: db, now: time.Now} }

// ErrBadToken is wrapped by Verify's errors.
var ErrBadToken = errors.New("invalid API token")

// ParseToken splits a token into its id and secret, checking its form.
func ParseToken(s string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: it does not start with %q", ErrBadToken, tokenPrefix)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != tokenIDLen || !isHex(id) {
		return "", "", fmt.Errorf("%w: the id part is not %d hex digits", ErrBadToken, tokenIDLen)
	}
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(raw) != tokenSecretSz {
		return "", "", fmt.Errorf("%w: the secret part is not %d bytes of base64url", ErrBadToken, tokenSecretSz)
	}
	return id, secret, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func secretHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create makes a token and returns it with its record; the token is shown
// only now. ttl 0 means no expiry. by names the creator for the record.
func (t *Tokens) Create(ctx context.Context, name string, role Role, ttl time.Duration, by string) (string, TokenInfo, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\r\n\t") {
		return "", TokenInfo{}, fmt.Errorf("token name %q must be 1 to 64 characters on one line, such as a person's name", name)
	}
	if role < RoleViewer || role > RoleAdmin {
		return "", TokenInfo{}, fmt.Errorf("role %d is unknown: use viewer, operator, approver or admin", role)
	}
	if ttl < 0 {
		return "", TokenInfo{}, fmt.Errorf("token lifetime %s is negative: use 0 for no expiry", ttl)
	}
	var idb [tokenIDLen / 2]byte
	var sec [tokenSecretSz]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", TokenInfo{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", TokenInfo{}, err
	}
	id, secret := hex.EncodeToString(idb[:]), base64.RawURLEncoding.EncodeToString(sec[:])
	now := t.now().UTC()
	info := TokenInfo{ID: id, Name: name, Role: role, CreatedAt: now, CreatedBy: by, Hash: secretHash(secret)}
	if ttl > 0 {
		info.ExpiresAt = now.Add(ttl)
	}
	if err := t.put(info, true); err != nil {
		return "", TokenInfo{}, err
	}
	return tokenPrefix + id + "_" + secret, info, nil
}

func (t *Tokens) put(info TokenInfo, create bool) error {
	data, _ := json.Marshal(info)
	err := t.db.Update(func(txn *badger.Txn) error {
		if create {
			if _, err := txn.Get([]byte(tokenKey + info.ID)); err == nil {
				return fmt.Errorf("token id %s exists already", info.ID)
			}
		}
		return txn.Set([]byte(tokenKey+info.ID), data)
	})
	if err != nil {
		return fmt.Errorf("storing token %s: %w", info.ID, err)
	}
	return nil
}

// Get returns the token with the given id.
func (t *Tokens) Get(ctx context.Context, id string) (TokenInfo, error) {
	var info TokenInfo
	err := t.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(tokenKey + id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &info) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return info, fmt.Errorf("no token has id %q: see `wardgate token list`", id)
	}
	if err != nil {
		return info, fmt.Errorf("reading token %s: %w", id, err)
	}
	return info, nil
}

// List returns every token, revoked ones included, oldest first.
func (t *Tokens) List(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	err := t.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(tokenKey), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var info TokenInfo
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &info) }); err != nil {
				return fmt.Errorf("token record %q is unreadable: %w", it.Item().Key(), err)
			}
			out = append(out, info)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// Revoke marks a token revoked; it stays listed for the audit trail.
func (t *Tokens) Revoke(ctx context.Context, id, by string) (TokenInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, err := t.Get(ctx, id)
	if err != nil {
		return info, err
	}
	if !info.RevokedAt.IsZero() {
		return info, fmt.Errorf("token %s was already revoked on %s", id, info.RevokedAt.Format(time.RFC3339))
	}
	info.RevokedAt, info.RevokedBy = t.now().UTC(), by
	return info, t.put(info, false)
}

// Verify checks a token and returns its record. The secret is compared
// in constant time; a revoked or expired token fails with the reason.
func (t *Tokens) Verify(ctx context.Context, token string) (TokenInfo, error) {
	id, secret, err := ParseToken(token)
	if err != nil {
		return TokenInfo{}, err
	}
	info, err := t.Get(ctx, id)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("%w: unknown token id %s", ErrBadToken, id)
	}
	if subtle.ConstantTimeCompare([]byte(secretHash(secret)), []byte(info.Hash)) != 1 {
		return TokenInfo{}, fmt.Errorf("%w: wrong secret for token %s", ErrBadToken, id)
	}
	now := t.now()
	switch {
	case !info.RevokedAt.IsZero():
		return TokenInfo{}, fmt.Errorf("%w: token %s (%s) was revoked on %s", ErrBadToken, id, info.Name, info.RevokedAt.Format(time.RFC3339))
	case !info.Active(now):
		return TokenInfo{}, fmt.Errorf("%w: token %s (%s) expired on %s", ErrBadToken, id, info.Name, info.ExpiresAt.Format(time.RFC3339))
	}
	if now.Sub(info.LastUsed) > 10*time.Minute {
		t.mu.Lock()
		if cur, err := t.Get(ctx, id); err == nil && cur.RevokedAt.IsZero() {
			cur.LastUsed = now.UTC()
			_ = t.put(cur, false)
		}
		t.mu.Unlock()
	}
	return info, nil
}
