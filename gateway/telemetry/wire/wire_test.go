package wire

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func validPayload() *Payload {
	return &Payload{
		Format: Format, Version: Version, Site: "site-0123456789", Seq: 3, PeriodSeconds: 3600, MinCellDevices: 2,
		Events: 5, WithheldEvents: 2, WithheldCells: 2,
		Cells: []Cell{{
			Dims:    Dims{Period: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Manufacturer: "Acme", Model: "M1", Version: "1.0", DeviceClass: "pump", Kind: "counter", Name: "c"},
			Devices: 2,
			Stats:   Stats{Events: 3, Sum: 6, Min: 1, Max: 3, Bounds: []float64{1, 2}, Counts: []uint64{1, 1, 1}},
		}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	b, err := Encode(validPayload())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, validPayload()) {
		t.Fatalf("round trip: got %+v, want %+v", p, validPayload())
	}
	if got := Key("site-0123456789", 3); got != "site-0123456789:3" {
		t.Errorf("Key: got %q, want site-0123456789:3", got)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Payload)
		want   string
	}{
		{"duplicate cell", func(p *Payload) { p.Cells = append(p.Cells, p.Cells[0]); p.Events += 3 }, "twice"},
		{"negative withheld", func(p *Payload) { p.WithheldCells = -1 }, "withheld_cells"},
		{"withheld events without cells", func(p *Payload) { p.WithheldCells = 0 }, "no withheld cells"},
		{"offset period", func(p *Payload) { p.Cells[0].Period = p.Cells[0].Period.In(time.FixedZone("x", 3600)) }, "UTC"},
		{"bad pseudonym", func(p *Payload) {
			p.DeviceCells = []DeviceCell{{Dims: p.Cells[0].Dims, Device: "SN-1234", Stats: p.Cells[0].Stats}}
		}, "pseudonym"},
		{"long dimension", func(p *Payload) { p.Cells[0].Model = strings.Repeat("m", MaxDimLen+1) }, "model"},
		{"zero period", func(p *Payload) { p.PeriodSeconds = 0 }, "period_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPayload()
			tt.mutate(p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzDecode checks that the hub's payload decoder never panics and that
// whatever it accepts encodes back to a payload that decodes the same.
func FuzzDecode(f *testing.F) {
	b, _ := Encode(validPayload())
	f.Add(b)
	f.Add([]byte(`{"format":"wardgate-telemetry","version":1,"site":"site-0123456789","seq":1,"period_seconds":60,"min_cell_devices":1,"events":0,"withheld_events":0,"withheld_cells":0,"cells":[]}`))
	f.Add([]byte(`{"format":"wardgate-telemetry","version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(p)
		if err != nil {
			t.Fatalf("re-encoding an accepted payload: %v", err)
		}
		p2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("re-decoded payload differs: %v", err)
		}
	})
}
