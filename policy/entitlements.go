package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// EntitlementsType is the value of the "type" member of an entitlements
// document.
const EntitlementsType = "wardgate-entitlements"

// MaxEntitlementsSize is the largest entitlements document ParseEntitlements
// accepts, in bytes.
const MaxEntitlementsSize = 16 << 20

// EntitlementsDocument is the signed part of an entitlements document.
//
// The file is JSON of this form (members in any order, unknown members
// rejected):
//
//	{
//	  "signed": {
//	    "type": "wardgate-entitlements",
//	    "version": 7,
//	    "manufacturer": "Acme Medical",
//	    "issued": "2026-01-05T00:00:00Z",
//	    "expires": "2027-01-05T00:00:00Z",
//	    "entitlements": [{
//	      "id": "C-1001",
//	      "site": "site-7f3a",
//	      "products": ["infusion-pump"],
//	      "models": ["IP-300"],
//	      "channels": ["stable"],
//	      "versions": ">=3.0.0, <4",
//	      "serials": ["SN-0001"],
//	      "not_before": "2026-01-01T00:00:00Z",
//	      "not_after": "2026-10-01T00:00:00Z",
//	      "grace": "720h"
//	    }]
//	  },
//	  "signatures": [{"keyid": "HEX", "sig": "BASE64"}]
//	}
//
// Each signature is an ed25519 signature over the exact bytes of the value
// of "signed" as they appear in the file, from its "{" to its "}". keyid
// is the lower-case hex SHA-256 of the 32-byte public key (see KeyID).
// "signatures" may be absent or empty, because the document also arrives
// as a TUF target whose delivery TUF has verified (see
// Config.RequireSignedEntitlements). Times are RFC 3339. "grace" is a Go
// duration, and may use "d" for 24-hour days.
type EntitlementsDocument struct {
	Type         string        `json:"type"`
	Version      int64         `json:"version"`
	Manufacturer string        `json:"manufacturer"`
	Issued       time.Time     `json:"issued"`
	Expires      time.Time     `json:"expires"`
	Entitlements []Entitlement `json:"entitlements"`
}

// Entitlement grants one site the right to receive releases. Every list
// that is empty, other than Products, places no restriction.
type Entitlement struct {
	// ID names the contract in reasons, such as "C-1001".
	ID string `json:"id"`
	// Site is the site id of the gateway, or "*" for every site.
	Site string `json:"site"`
	// Products lists the products covered, and may not be empty.
	Products []string `json:"products"`
	Models   []string `json:"models,omitempty"`
	Channels []string `json:"channels,omitempty"`
	// Versions is a version constraint (see ParseConstraint) on the
	// release version.
	Versions string   `json:"versions,omitempty"`
	Serials  []string `json:"serials,omitempty"`
	// NotBefore and NotAfter bound the contract, and zero means unbounded.
	// NotAfter is exclusive.
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Grace extends NotAfter: within it the release is still offered,
	// with a reason saying the contract has ended.
	Grace string `json:"grace,omitempty"`
}

// Signature is one signature over the signed part of a document.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Entitlements is a parsed entitlements document. It is immutable.
type Entitlements struct {
	doc        EntitlementsDocument
	signed     []byte
	signatures []Signature
	rules      []entitlementRule
}

type entitlementRule struct {
	Entitlement
	versions           Constraint
	grace              time.Duration
	grantMsg, graceMsg string
}

type entitlementsFile struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []Signature     `json:"signatures"`
}

// ParseEntitlements parses and validates an entitlements document. It
// does not check signatures, which need the manufacturer's keys (see
// Entitlements.Verify), nor expiry, which needs the time.
func ParseEntitlements(data []byte) (*Entitlements, error) {
	if len(data) > MaxEntitlementsSize {
		return nil, fmt.Errorf("parsing entitlements: document is %d bytes, more than the limit of %d", len(data), MaxEntitlementsSize)
	}
	var file entitlementsFile
	if err := decodeStrict(data, &file); err != nil {
		return nil, fmt.Errorf("parsing entitlements: %w", err)
	}
	if len(file.Signed) == 0 || file.Signed[0] != '{' {
		return nil, errors.New(`parsing entitlements: the "signed" object is missing`)
	}
	e := &Entitlements{signed: bytes.Clone([]byte(file.Signed)), signatures: file.Signatures}
	if err := decodeStrict(file.Signed, &e.doc); err != nil {
		return nil, fmt.Errorf("parsing entitlements: signed part: %w", err)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("parsing entitlements: %w", err)
	}
	for i, s := range e.signatures {
		if _, err := decodeSig(s); err != nil {
			return nil, fmt.Errorf("parsing entitlements: signature %d: %w", i+1, err)
		}
	}
	return e, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func (e *Entitlements) validate() error {
	d := &e.doc
	switch {
	case d.Type != EntitlementsType:
		return fmt.Errorf("type is %q, want %q", d.Type, EntitlementsType)
	case d.Version < 1:
		return fmt.Errorf("version is %d, want 1 or more", d.Version)
	case d.Expires.IsZero():
		return errors.New(`"expires" is missing`)
	case !d.Issued.IsZero() && !d.Issued.Before(d.Expires):
		return fmt.Errorf("issued %s is not before expires %s", d.Issued.Format(time.RFC3339), d.Expires.Format(time.RFC3339))
	}
	ids := map[string]bool{}
	for i, ent := range d.Entitlements {
		where := fmt.Sprintf("entitlement %d (%q)", i+1, ent.ID)
		switch {
		case strings.TrimSpace(ent.ID) == "":
			return fmt.Errorf("entitlement %d has no id", i+1)
		case ids[ent.ID]:
			return fmt.Errorf("%s: id is used twice", where)
		case ent.Site == "":
			return fmt.Errorf("%s has no site", where)
		case len(ent.Products) == 0:
			return fmt.Errorf("%s lists no products", where)
		case !ent.NotBefore.IsZero() && !ent.NotAfter.IsZero() && !ent.NotBefore.Before(ent.NotAfter):
			return fmt.Errorf("%s: not_before is not before not_after", where)
		}
		ids[ent.ID] = true
		rule := entitlementRule{Entitlement: ent}
		if ent.Versions != "" {
			c, err := ParseConstraint(ent.Versions)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			rule.versions = c
		}
		if ent.Grace != "" {
			g, err := parseGrace(ent.Grace)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			rule.grace = g
		}
		rule.prepareMessages()
		e.rules = append(e.rules, rule)
	}
	return nil
}

func parseGrace(s string) (time.Duration, error) {
	text, days := s, int64(0)
	if i := strings.IndexByte(text, 'd'); i >= 0 {
		var n int64
		if _, err := fmt.Sscanf(text[:i], "%d", &n); err != nil || n < 0 || n > 3650 || fmt.Sprint(n) != text[:i] {
			return 0, fmt.Errorf("grace %q: write a duration such as 720h or 30d", s)
		}
		days, text = n, text[i+1:]
	}
	var d time.Duration
	if text != "" {
		var err error
		if d, err = time.ParseDuration(text); err != nil || d < 0 {
			return 0, fmt.Errorf("grace %q: write a duration such as 720h or 30d", s)
		}
	}
	return d + time.Duration(days)*24*time.Hour, nil
}

func decodeSig(s Signature) ([]byte, error) {
	if len(s.KeyID) != 2*sha256.Size {
		return nil, fmt.Errorf("keyid %q is not a hex SHA-256", s.KeyID)
	}
	if _, err := hex.DecodeString(s.KeyID); err != nil {
		return nil, fmt.Errorf("keyid %q is not a hex SHA-256", s.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("sig by key %s is not a base64 %d-byte ed25519 signature", s.KeyID, ed25519.SignatureSize)
	}
	return sig, nil
}

// Document returns a copy of the signed part.
func (e *Entitlements) Document() EntitlementsDocument {
	d := e.doc
	d.Entitlements = append([]Entitlement(nil), d.Entitlements...)
	return d
}

// Version returns the document's version.
func (e *Entitlements) Version() int64 { return e.doc.Version }

// Expires returns when the document stops being valid.
func (e *Entitlements) Expires() time.Time { return e.doc.Expires }

// Signed reports whether the document carries signatures.
func (e *Entitlements) Signed() bool { return len(e.signatures) > 0 }

// KeyID returns the key id of an ed25519 public key: the lower-case hex
// SHA-256 of its 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// ErrEntitlementsUnsigned is returned by Verify for a document without
// signatures when a signature is required.
var ErrEntitlementsUnsigned = errors.New("entitlements document carries no signature")

// Verify checks the document's signatures against the manufacturer's
// keys. A signed document must carry a valid signature by one of keys,
// and every signature by one of keys must be valid: a signature that
// fails means the document was altered after signing. An unsigned
// document passes unless requireSignature is set.
func (e *Entitlements) Verify(keys []ed25519.PublicKey, requireSignature bool) error {
	if len(e.signatures) == 0 {
		if requireSignature {
			return fmt.Errorf("verifying entitlements version %d: %w, and signed entitlements are required", e.doc.Version, ErrEntitlementsUnsigned)
		}
		return nil
	}
	if len(keys) == 0 {
		return fmt.Errorf("verifying entitlements version %d: the document is signed but no entitlement key is configured: add the manufacturer's entitlement public key", e.doc.Version)
	}
	byID := make(map[string]ed25519.PublicKey, len(keys))
	for _, k := range keys {
		byID[KeyID(k)] = k
	}
	valid := 0
	for _, s := range e.signatures {
		key, known := byID[strings.ToLower(s.KeyID)]
		if !known {
			continue
		}
		sig, err := decodeSig(s)
		if err != nil || !ed25519.Verify(key, e.signed, sig) {
			return fmt.Errorf("verifying entitlements version %d: the signature by key %s does not match the document: it was altered after signing or signed with another key", e.doc.Version, s.KeyID)
		}
		valid++
	}
	if valid == 0 {
		return fmt.Errorf("verifying entitlements version %d: no signature is by a configured entitlement key (key ids: %s)", e.doc.Version, sigKeyIDs(e.signatures))
	}
	return nil
}

func sigKeyIDs(sigs []Signature) string {
	ids := make([]string, len(sigs))
	for i, s := range sigs {
		ids[i] = s.KeyID
	}
	return strings.Join(ids, ", ")
}

// SignEntitlements encodes doc and signs it with each key, returning a
// document that ParseEntitlements accepts. The manufacturer's tooling and
// tests use it.
func SignEntitlements(doc EntitlementsDocument, keys ...ed25519.PrivateKey) ([]byte, error) {
	if doc.Type == "" {
		doc.Type = EntitlementsType
	}
	signed, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding entitlements: %w", err)
	}
	sigs := []Signature{}
	for _, k := range keys {
		pub, ok := k.Public().(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("signing entitlements: key is not an ed25519 private key")
		}
		sigs = append(sigs, Signature{
			KeyID: KeyID(pub),
			Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(k, signed)),
		})
	}
	sigJSON, err := json.Marshal(sigs)
	if err != nil {
		return nil, fmt.Errorf("encoding entitlement signatures: %w", err)
	}
	// The file is assembled by hand so the signed bytes stay exactly as
	// signed, because re-encoding or indenting them would break the signatures.
	var out bytes.Buffer
	out.WriteString("{\"signed\":")
	out.Write(signed)
	out.WriteString(",\n\"signatures\":")
	out.Write(sigJSON)
	out.WriteString("}\n")
	return out.Bytes(), nil
}
