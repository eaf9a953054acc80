package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

func TestParseTXTRules(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    TXTAttributes
		wantErr bool
	}{
		{"key value", []string{"mf=Acme"}, TXTAttributes{"mf": {"Acme", true}}, false},
		{"keys case-insensitive", []string{"MF=Acme"}, TXTAttributes{"mf": {"Acme", true}}, false},
		{"first occurrence wins", []string{"mf=Acme", "MF=Other", "mf=Third"}, TXTAttributes{"mf": {"Acme", true}}, false},
		{"bare key is boolean", []string{"clin"}, TXTAttributes{"clin": {"", false}}, false},
		{"empty value", []string{"sw="}, TXTAttributes{"sw": {"", true}}, false},
		{"value keeps equals signs", []string{"x=a=b"}, TXTAttributes{"x": {"a=b", true}}, false},
		{"leading equals ignored", []string{"=orphan", "mf=A"}, TXTAttributes{"mf": {"A", true}}, false},
		{"empty string ignored", []string{"", "mf=A"}, TXTAttributes{"mf": {"A", true}}, false},
		{"key with control byte rejected", []string{"m\x01f=A", "sn=1"}, TXTAttributes{"sn": {"1", true}}, true},
		{"oversized string rejected", []string{"mf=" + strings.Repeat("a", 300)}, TXTAttributes{}, true},
		{"oversized record rejected", repeatStrings("k="+strings.Repeat("v", 200), 7), TXTAttributes{"k": {strings.Repeat("v", 200), true}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTXT(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTXT(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTXT(%q) attributes differ (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func repeatStrings(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestParseDeviceTXT(t *testing.T) {
	full := []string{"txtvers=1", "mf=Acme Medical", "md=InfuMax 300", "sn=SN-0001", "sw=4.2.1", "hw=rev C", "dc=infusion-pump", "api=8443", "clin", "maint=0"}
	tests := []struct {
		name         string
		in           []string
		want         DeviceInfo
		wantProblems []string
	}{
		{
			name: "full record",
			in:   full,
			want: DeviceInfo{SchemaVersion: 1, Manufacturer: "Acme Medical", Model: "InfuMax 300", Serial: "SN-0001", Version: "4.2.1",
				HardwareRevision: "rev C", DeviceClass: "infusion-pump", APIPort: 8443, InClinicalUse: true},
		},
		{
			name: "upper-case keys and duplicates",
			in:   []string{"TXTVERS=1", "MF=Acme", "mf=Evil", "SN=1", "Maint"},
			want: DeviceInfo{SchemaVersion: 1, Manufacturer: "Acme", Serial: "1", InMaintenance: true},
		},
		{name: "empty record", in: []string{""}, wantProblems: []string{"record has no attributes"}},
		{name: "no strings", in: nil, wantProblems: []string{"record has no attributes"}},
		{
			name:         "missing identity",
			in:           []string{"txtvers=1", "md=X"},
			want:         DeviceInfo{SchemaVersion: 1, Model: "X"},
			wantProblems: []string{"missing mf", "missing sn"},
		},
		{
			name:         "oversized value rejected",
			in:           []string{"txtvers=1", "mf=A", "sn=1", "sw=" + strings.Repeat("9", 65)},
			want:         DeviceInfo{SchemaVersion: 1, Manufacturer: "A", Serial: "1"},
			wantProblems: []string{"sw is 65 bytes, over the 64-byte limit"},
		},
		{
			name:         "bad port and flag",
			in:           []string{"txtvers=1", "mf=A", "sn=1", "api=0", "clin=maybe"},
			want:         DeviceInfo{SchemaVersion: 1, Manufacturer: "A", Serial: "1"},
			wantProblems: []string{`api "0" is not a port from 1 to 65535`, `clin "maybe" is not a boolean (use the bare key, or 1 or 0)`},
		},
		{
			name:         "missing version",
			in:           []string{"mf=A", "sn=1"},
			want:         DeviceInfo{Manufacturer: "A", Serial: "1"},
			wantProblems: []string{"missing txtvers"},
		},
		{
			name:         "control characters in value",
			in:           []string{"txtvers=1", "mf=A\x07", "sn=1"},
			want:         DeviceInfo{SchemaVersion: 1, Serial: "1"},
			wantProblems: []string{`mf "A\a" is not printable UTF-8 text`},
		},
		{
			name:         "device class not a token",
			in:           []string{"txtvers=1", "mf=A", "sn=1", "dc=Infusion Pump"},
			want:         DeviceInfo{SchemaVersion: 1, Manufacturer: "A", Serial: "1"},
			wantProblems: []string{`dc "Infusion Pump" is not a lower-case token of letters, digits and '-'`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDeviceTXT(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseDeviceTXT info differs (-want +got):\n%s", diff)
			}
			var txtErr *TXTError
			if len(tt.wantProblems) == 0 {
				if err != nil {
					t.Fatalf("ParseDeviceTXT error = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &txtErr) || !errors.Is(err, ErrMalformedTXT) {
				t.Fatalf("ParseDeviceTXT error = %v, want a *TXTError wrapping ErrMalformedTXT", err)
			}
			if diff := cmp.Diff(tt.wantProblems, txtErr.Problems); diff != "" {
				t.Errorf("problems differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceInfoTXTRoundTrip(t *testing.T) {
	text := rapid.StringMatching(`[A-Za-z0-9][A-Za-z0-9 ._-]{0,40}`)
	rapid.Check(t, func(t *rapid.T) {
		info := DeviceInfo{
			SchemaVersion:    1,
			Manufacturer:     text.Draw(t, "mf"),
			Serial:           text.Draw(t, "sn"),
			Model:            rapid.OneOf(rapid.Just(""), text).Draw(t, "md"),
			Version:          rapid.OneOf(rapid.Just(""), text).Draw(t, "sw"),
			HardwareRevision: rapid.OneOf(rapid.Just(""), text).Draw(t, "hw"),
			DeviceClass:      rapid.StringMatching(`[a-z0-9-]{0,20}`).Draw(t, "dc"),
			APIPort:          rapid.Uint16().Draw(t, "api"),
			InClinicalUse:    rapid.Bool().Draw(t, "clin"),
			InMaintenance:    rapid.Bool().Draw(t, "maint"),
		}
		strs, err := info.TXT()
		if err != nil {
			t.Fatalf("TXT() error = %v", err)
		}
		got, err := ParseDeviceTXT(strs)
		if err != nil {
			t.Fatalf("ParseDeviceTXT(%q) error = %v", strs, err)
		}
		if got != info {
			t.Fatalf("round trip got %+v, want %+v", got, info)
		}
	})
}

func TestDeviceInfoTXTRejectsBadIdentity(t *testing.T) {
	if _, err := (DeviceInfo{Manufacturer: "A"}).TXT(); err == nil {
		t.Fatal("TXT() of a record without serial returned nil error, want one")
	}
}
