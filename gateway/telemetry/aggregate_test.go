package telemetry

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// recs makes one record per device for a model, each with one counter event.
func recs(model string, devices int, seqStart int) []record {
	var out []record
	for i := range devices {
		var p [8]byte
		copy(p[:], fmt.Sprintf("%s%03d", model[:min(len(model), 5)], i))
		out = append(out, record{
			Seq: uint64(seqStart + i), Received: time.Date(2026, 12, 4, 10, 30, 0, 0, time.UTC).UnixNano(),
			Device: deviceRef{Manufacturer: "Acme", Model: model, Version: "1.0", Class: "pump", Pseudonym: p},
			Events: []Event{{KindCounter, "c", float64(i + 1)}},
		})
	}
	return out
}

func TestSuppression(t *testing.T) {
	tests := []struct {
		name          string
		models        map[string]int // model -> distinct devices
		k             int
		wantPublished []string
		wantWithheld  int
	}{
		{"all large", map[string]int{"A": 12, "B": 11}, 11, []string{"A", "B"}, 0},
		{"one small gets a complement", map[string]int{"A": 12, "B": 20, "C": 2}, 11, []string{"B"}, 2},
		{"two small need no complement", map[string]int{"A": 12, "B": 3, "C": 2}, 11, []string{"A"}, 2},
		{"lone cell withheld", map[string]int{"A": 5}, 11, nil, 1},
		{"threshold one publishes all", map[string]int{"A": 1, "B": 2}, 1, []string{"A", "B"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAggregator(time.Hour, nil)
			var total uint64
			seq := 1
			for _, m := range slices.Sorted(mapsKeys(tt.models)) {
				for _, r := range recs(m, tt.models[m], seq) {
					a.add(r)
					total++
				}
				seq += 100
			}
			p := a.build("site-0123456789", 1, tt.k)
			if err := p.Validate(); err != nil {
				t.Fatalf("payload does not validate: %v", err)
			}
			var got []string
			var published uint64
			for _, c := range p.Cells {
				got = append(got, c.Model)
				published += c.Events
				if c.Devices < tt.k {
					t.Errorf("cell %s covers %d devices, below %d", c.Model, c.Devices, tt.k)
				}
			}
			if !slices.Equal(got, tt.wantPublished) {
				t.Errorf("published: got %v, want %v", got, tt.wantPublished)
			}
			if p.WithheldCells != tt.wantWithheld {
				t.Errorf("withheld cells: got %d, want %d", p.WithheldCells, tt.wantWithheld)
			}
			if p.Events != total || published+p.WithheldEvents != total {
				t.Errorf("events: got total %d = %d published + %d withheld, want %d", p.Events, published, p.WithheldEvents, total)
			}
		})
	}
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestAggregateStatsAndPeriods(t *testing.T) {
	a := newAggregator(time.Hour, map[string]bool{"Acme": true})
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	dev := deviceRef{Manufacturer: "Acme", Model: "M", Version: "1", Class: "pump", Pseudonym: [8]byte{9}}
	for i, v := range []float64{5, 95, 40} {
		a.add(record{Seq: uint64(i + 1), Received: base.Add(time.Duration(i) * 35 * time.Minute).UnixNano(), Device: dev,
			Events: []Event{{KindHealth, "battery_pct", v}}})
	}
	p := a.build("site-0123456789", 1, 1)
	if len(p.Cells) != 2 {
		t.Fatalf("cells: got %d, want 2 (10:00 and 11:00)", len(p.Cells))
	}
	c := p.Cells[0]
	if !c.Period.Equal(base) || c.Events != 2 || c.Sum != 100 || c.Min != 5 || c.Max != 95 {
		t.Errorf("10:00 cell: got %+v, want 2 events, sum 100, min 5, max 95", c)
	}
	if c.Counts[0] != 1 || c.Counts[9] != 1 {
		t.Errorf("10:00 histogram: got %v over %v, want one in the first and one in the last bucket", c.Counts, c.Bounds)
	}
	if !p.Cells[1].Period.Equal(base.Add(time.Hour)) {
		t.Errorf("second cell period: got %v, want %v", p.Cells[1].Period, base.Add(time.Hour))
	}
	if len(p.DeviceCells) != 2 || p.DeviceCells[0].Device != "0900000000000000" {
		t.Errorf("device cells: got %+v, want 2 under the pseudonym", p.DeviceCells)
	}
}

func TestPeriodStart(t *testing.T) {
	tests := []struct {
		t    time.Time
		want time.Time
	}{
		{time.Date(2026, 12, 4, 10, 59, 59, 999, time.UTC), time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)},
		{time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC), time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)},
		{time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		if got := time.Unix(periodStart(tt.t.UnixNano(), time.Hour), 0).UTC(); !got.Equal(tt.want) {
			t.Errorf("periodStart(%v): got %v, want %v", tt.t, got, tt.want)
		}
	}
}
