package discovery

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		want    Filter
		wantErr bool
	}{
		{"empty", "", Filter{}, false},
		{"model and vlan", "model=Pump&vlan=eth1.101", Filter{Model: "Pump", Interface: "eth1.101"}, false},
		{"state", "state=stale", Filter{State: StateStale}, false},
		{"address", "address=10.1.0.5", Filter{Address: netip.MustParseAddr("10.1.0.5")}, false},
		{"bad state", "state=gone", Filter{}, true},
		{"bad address", "address=x", Filter{}, true},
		{"unknown key", "room=12", Filter{}, true},
		{"repeated key", "model=a&model=b", Filter{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			got, err := ParseFilter(q)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFilter(%q) error = %v, want error %v", tt.query, err, tt.wantErr)
			}
			if err == nil && (got.Model != tt.want.Model || got.Interface != tt.want.Interface || got.State != tt.want.State || got.Address != tt.want.Address) {
				t.Errorf("ParseFilter(%q) = %+v, want %+v", tt.query, got, tt.want)
			}
		})
	}
	q, _ := url.ParseQuery("verified=true")
	if f, err := ParseFilter(q); err != nil || f.Verified == nil || !*f.Verified {
		t.Errorf("ParseFilter(verified=true) = %+v, %v; want Verified true", f, err)
	}
}

func TestWriteDeviceReports(t *testing.T) {
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	d := Device{
		Manufacturer: "Acme", Serial: "S1", Model: "Pump\x1b[31m", Version: "1.0", State: StateActive, LastSeen: now,
		Interfaces: []string{"vlan101"},
		Links:      []Link{{Interface: "vlan101", Instance: "Pump", Present: true, Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.5")}}},
	}
	history := []Event{{Kind: EventDiscovered, Time: now, Details: map[string]string{"source": "mdns"}}}

	var table bytes.Buffer
	if err := WriteDeviceTable(&table, []Device{d}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(table.String(), "\x1b") {
		t.Errorf("table contains a raw escape character: %q", table.String())
	}
	if !strings.Contains(table.String(), `Pump\x1b[31m`) || !strings.Contains(table.String(), "10.1.0.5") {
		t.Errorf("table = %q, want the escaped model and the address", table.String())
	}

	var detail bytes.Buffer
	if err := WriteDeviceDetail(&detail, d, history); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Serial:", "S1", "discovered", "source=mdns", "vlan101"} {
		if !strings.Contains(detail.String(), want) {
			t.Errorf("detail lacks %q:\n%s", want, detail.String())
		}
	}

	var js bytes.Buffer
	if err := WriteDeviceJSON(&js, d, history); err != nil {
		t.Fatal(err)
	}
	var back DeviceReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("decoding WriteDeviceJSON output: %v", err)
	}
	if back.Device.Serial != "S1" || len(back.History) != 1 || back.Device.Links[0].Addresses[0] != d.Links[0].Addresses[0] {
		t.Errorf("JSON round trip = %+v, want the device and one event", back)
	}
	js.Reset()
	if err := WriteDevicesJSON(&js, nil); err != nil || strings.TrimSpace(js.String()) != "[]" {
		t.Errorf("WriteDevicesJSON(nil) = %q, %v; want []", js.String(), err)
	}
}
