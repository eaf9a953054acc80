package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func testDocument() EntitlementsDocument {
	return EntitlementsDocument{
		Version: 3, Manufacturer: "Acme Medical",
		Issued:  time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC),
		Expires: time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC),
		Entitlements: []Entitlement{{
			ID: "C-1001", Site: "site-1", Products: []string{"infusion-pump"}, Models: []string{"IP-300", "IP-310"},
			Channels: []string{"stable"}, Versions: ">=3.0.0, <4",
			NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Grace: "30d",
		}, {
			ID: "C-2002", Site: "site-1", Products: []string{"monitor"}, Serials: []string{"SN-M1"},
		}},
	}
}

func signedDocument(t testing.TB, priv ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := SignEntitlements(testDocument(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestEntitlementsVerify(t *testing.T) {
	pub, priv := testKey(t)
	otherPub, otherPriv := testKey(t)
	data := signedDocument(t, priv)
	tests := []struct {
		name    string
		data    []byte
		keys    []ed25519.PublicKey
		require bool
		want    string // "" means valid; otherwise part of the error
	}{
		{name: "valid signature", data: data, keys: []ed25519.PublicKey{pub}},
		{name: "valid among several keys", data: data, keys: []ed25519.PublicKey{otherPub, pub}},
		{name: "tampered model list", data: bytes.Replace(data, []byte(`"IP-310"`), []byte(`"IP-999"`), 1), keys: []ed25519.PublicKey{pub}, want: "altered after signing"},
		{name: "tampered date", data: bytes.Replace(data, []byte(`2026-10-01`), []byte(`2036-10-01`), 1), keys: []ed25519.PublicKey{pub}, want: "altered after signing"},
		{name: "signed by an unknown key", data: signedDocument(t, otherPriv), keys: []ed25519.PublicKey{pub}, want: "no signature is by a configured entitlement key"},
		{name: "signed but no key configured", data: data, want: "no entitlement key is configured"},
		{name: "unsigned accepted", data: unsignedDocument(t)},
		{name: "unsigned rejected when required", data: unsignedDocument(t), require: true, want: "carries no signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ents, err := ParseEntitlements(tc.data)
			if err != nil {
				t.Fatalf("ParseEntitlements: %v", err)
			}
			err = ents.Verify(tc.keys, tc.require)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func unsignedDocument(t testing.TB) []byte {
	t.Helper()
	data, err := SignEntitlements(testDocument())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseEntitlementsErrors(t *testing.T) {
	valid := string(unsignedDocument(t))
	tests := []struct {
		name, data, want string
	}{
		{"not JSON", "{", "parsing entitlements"},
		{"no signed part", `{"signatures":[]}`, `"signed" object is missing`},
		{"unknown member", strings.Replace(valid, `"version":3`, `"version":3,"extra":1`, 1), "unknown field"},
		{"wrong type", strings.Replace(valid, EntitlementsType, "other", 1), "type is"},
		{"no expiry", strings.Replace(valid, `"expires":"2027-01-05T00:00:00Z"`, `"expires":"0001-01-01T00:00:00Z"`, 1), `"expires" is missing`},
		{"bad constraint", strings.Replace(valid, `3.0.0, `, `3.0.0, ~`, 1), "C-1001"},
		{"bad grace", strings.Replace(valid, `"30d"`, `"soon"`, 1), "grace"},
		{"trailing data", valid + "{}", "after the JSON value"},
		{"bad signature encoding", strings.Replace(valid, `"signatures":[]`, `"signatures":[{"keyid":"`+strings.Repeat("ab", 32)+`","sig":"!!"}]`, 1), "base64"},
		{"duplicate id", strings.Replace(valid, `"C-2002"`, `"C-1001"`, 1), "used twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEntitlements([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEntitlementDecisions(t *testing.T) {
	pub, priv := testKey(t)
	ents, err := ParseEntitlements(signedDocument(t, priv))
	if err != nil {
		t.Fatal(err)
	}
	inContract := time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		now      time.Time
		device   func(*Device)
		release  func(*Release)
		wantCode string // code of the entitlement reason
		wantMsg  string
		offer    bool
	}{
		{name: "entitled", now: inContract, wantCode: CodeEntitled, wantMsg: "entitled by contract C-1001 until 2026-10-01", offer: true},
		{name: "in grace period", now: time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC), wantCode: CodeEntitledGrace, wantMsg: "updates stop 2026-10-31", offer: true},
		{name: "contract ended", now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), wantCode: CodeNotEntitled, wantMsg: "not entitled: contract C-1001 ended 2026-10-01 and its grace period ended 2026-10-31"},
		{name: "contract not started", now: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), wantCode: CodeNotEntitled, wantMsg: "contract C-1001 starts 2026-01-01"},
		{name: "other site", now: inContract, device: func(d *Device) { d.Site = "site-9" }, wantCode: CodeNotEntitled, wantMsg: "site site-9 has no entitlement from Acme Medical"},
		{name: "model not covered", now: inContract, device: func(d *Device) { d.Model = "IP-320" }, release: func(r *Release) { r.Models = append(r.Models, "IP-320") }, wantCode: CodeNotEntitled, wantMsg: "model IP-320 is not covered by contract C-1001"},
		{name: "channel not covered", now: inContract, release: func(r *Release) { r.Channel = "beta" }, wantCode: CodeNotEntitled, wantMsg: "channel beta"},
		{name: "version outside range", now: inContract, release: func(r *Release) { r.Version = "4.0.0" }, wantCode: CodeNotEntitled, wantMsg: "version 4.0.0 is outside contract C-1001's range"},
		{name: "product not covered", now: inContract, release: func(r *Release) { r.Product = "ventilator" }, wantCode: CodeNotEntitled, wantMsg: "not entitled to product ventilator"},
		{name: "serial not covered", now: inContract, release: func(r *Release) { r.Product = "monitor" }, wantCode: CodeNotEntitled, wantMsg: "serial SN1 is not covered by contract C-2002"},
		{name: "security fix regardless", now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), release: func(r *Release) { r.SecurityFix = true }, wantCode: CodeSecurityFix, offer: true},
		{name: "document expired", now: time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), wantCode: CodeEntitlementsInvalid, wantMsg: "expired 2027-01-05"},
		{name: "missing site", now: inContract, device: func(d *Device) { d.Site = "" }, wantCode: CodeInventoryIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEvaluator(Config{EntitlementKeys: []ed25519.PublicKey{pub}}, FixedClock{T: inContract})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetEntitlements(ents); err != nil {
				t.Fatal(err)
			}
			d, r := baseDevice(), baseRelease()
			if tc.device != nil {
				tc.device(&d)
			}
			if tc.release != nil {
				tc.release(&r)
			}
			dec := e.DecideAt(d, r, tc.now)
			if dec.Offer != tc.offer {
				t.Fatalf("got offer %v, want %v: %v", dec.Offer, tc.offer, dec.Reasons)
			}
			if !tc.offer && dec.Download {
				t.Fatalf("got download allowed for a device that is not entitled, want none")
			}
			reason, ok := findReason(dec, tc.wantCode)
			if !ok {
				t.Fatalf("got reasons %v, want one with code %s", dec.Reasons, tc.wantCode)
			}
			if !strings.Contains(reason.Message, tc.wantMsg) {
				t.Fatalf("got message %q, want it to contain %q", reason.Message, tc.wantMsg)
			}
			if !tc.offer && dec.Reasons[0].Code != tc.wantCode {
				t.Fatalf("got main reason %s, want %s", dec.Reasons[0].Code, tc.wantCode)
			}
		})
	}
}

func findReason(d Decision, code string) (Reason, bool) {
	for _, r := range d.Reasons {
		if r.Code == code {
			return r, true
		}
	}
	return Reason{}, false
}

func TestSetEntitlementsRejects(t *testing.T) {
	pub, priv := testKey(t)
	now := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	e, err := NewEvaluator(Config{EntitlementKeys: []ed25519.PublicKey{pub}}, FixedClock{T: now})
	if err != nil {
		t.Fatal(err)
	}
	doc := testDocument()
	load := func(doc EntitlementsDocument) error {
		data, err := SignEntitlements(doc, priv)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := ParseEntitlements(data)
		if err != nil {
			t.Fatal(err)
		}
		return e.SetEntitlements(ents)
	}
	if err := load(doc); err != nil {
		t.Fatalf("loading version 3: %v", err)
	}
	older := doc
	older.Version = 2
	if err := load(older); err == nil || !strings.Contains(err.Error(), "may not go back") {
		t.Fatalf("loading version 2 after 3: got %v, want a rejection", err)
	}
	expired := doc
	expired.Version, expired.Expires = 4, now.Add(-time.Hour)
	expired.Issued = now.Add(-48 * time.Hour)
	if err := load(expired); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("loading an expired document: got %v, want a rejection", err)
	}
	tampered, err := ParseEntitlements(bytes.Replace(signedDocument(t, priv), []byte("site-1"), []byte("site-2"), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetEntitlements(tampered); err == nil {
		t.Fatal("loading a tampered document: got no error, want one")
	}
	if e.Entitlements().Version() != 3 {
		t.Fatalf("got version %d loaded after rejections, want 3", e.Entitlements().Version())
	}
}

func TestEnforceEntitlementsWithoutDocument(t *testing.T) {
	e := newTestEvaluator(t, Config{EnforceEntitlements: true}, time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	dec := e.Decide(baseDevice(), baseRelease())
	if dec.Offer || dec.Reasons[0].Code != CodeNotEntitled {
		t.Fatalf("got offer %v, main reason %v; want not-entitled", dec.Offer, dec.Reasons[0])
	}
	r := baseRelease()
	r.SecurityFix = true
	if dec := e.Decide(baseDevice(), r); !dec.Offer {
		t.Fatalf("security fix: got %v, want offered", dec.Reasons)
	}
}

func TestNewEvaluatorEntitlements(t *testing.T) {
	pub, priv := testKey(t)
	ents, err := ParseEntitlements(signedDocument(t, priv))
	if err != nil {
		t.Fatal(err)
	}
	late := FixedClock{T: time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)}
	e, err := NewEvaluator(Config{Entitlements: ents, EntitlementKeys: []ed25519.PublicKey{pub}}, late)
	if err != nil {
		t.Fatalf("starting with an expired document: got %v, want it loaded", err)
	}
	if dec := e.Decide(baseDevice(), baseRelease()); dec.Offer || dec.Reasons[0].Code != CodeEntitlementsInvalid {
		t.Fatalf("got %v, want entitlements-invalid first", dec.Reasons)
	}
	otherPub, _ := testKey(t)
	if _, err := NewEvaluator(Config{Entitlements: ents, EntitlementKeys: []ed25519.PublicKey{otherPub}}, late); err == nil {
		t.Fatal("starting with a document signed by an unknown key: got no error, want one")
	}
}
