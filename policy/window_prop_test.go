package policy

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var propZones = []string{"UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"}

var propDays = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

func genWindowSpec(t *rapid.T, label string) string {
	zone := rapid.SampledFrom(propZones).Draw(t, label+"zone")
	clock := func(name string) string {
		return fmt.Sprintf("%02d:%02d", rapid.IntRange(0, 23).Draw(t, name+"h"), 15*rapid.IntRange(0, 3).Draw(t, name+"m"))
	}
	switch rapid.IntRange(0, 3).Draw(t, label+"kind") {
	case 0:
		return fmt.Sprintf("%s %s-%s %s", rapid.SampledFrom(propDays).Draw(t, label+"day"), clock(label+"start"), clock(label+"end"), zone)
	case 1:
		return fmt.Sprintf("%s %s-%s %s %s", rapid.SampledFrom(propDays).Draw(t, label+"day"), clock(label+"start"),
			rapid.SampledFrom(propDays).Draw(t, label+"endday"), clock(label+"end"), zone)
	case 2:
		return fmt.Sprintf("cron %d %d * * %d %dm %s", 15*rapid.IntRange(0, 3).Draw(t, label+"min"), rapid.IntRange(0, 23).Draw(t, label+"hour"),
			rapid.IntRange(0, 6).Draw(t, label+"dow"), rapid.IntRange(1, 600).Draw(t, label+"len"), zone)
	default:
		day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rapid.IntRange(0, 800).Draw(t, label+"date"))
		return fmt.Sprintf("%s %s-%s %s", day.Format("2006-01-02"), clock(label+"start"), clock(label+"end"), zone)
	}
}

func genSchedule(t *rapid.T) (func() *Schedule, []string) {
	var specs []string
	var windows []Window
	for i := range rapid.IntRange(0, 3).Draw(t, "windows") {
		spec := genWindowSpec(t, fmt.Sprintf("w%d", i))
		w, err := ParseWindow(spec)
		if err != nil {
			t.Fatalf("generated spec %q does not parse: %v", spec, err)
		}
		specs, windows = append(specs, spec), append(windows, w)
	}
	var blackouts []Blackout
	for i := range rapid.IntRange(0, 2).Draw(t, "blackouts") {
		day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rapid.IntRange(0, 800).Draw(t, fmt.Sprintf("b%ddate", i)))
		spec := day.Format("2006-01-02") + " " + rapid.SampledFrom(propZones).Draw(t, fmt.Sprintf("b%dzone", i))
		b, err := ParseBlackout(spec)
		if err != nil {
			t.Fatalf("generated blackout %q does not parse: %v", spec, err)
		}
		specs, blackouts = append(specs, "blackout "+spec), append(blackouts, b)
	}
	// A fresh schedule per query, so one query's cache cannot hide a
	// disagreement with another.
	return func() *Schedule { return NewSchedule(windows, blackouts) }, specs
}

func genInstant(t *rapid.T, name string) time.Time {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return base.Add(time.Duration(rapid.Int64Range(0, 2*366*24*3600).Draw(t, name)) * time.Second)
}

func TestPropertyNextOpeningNotBeforeNow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fresh, specs := genSchedule(t)
		now := genInstant(t, "now")
		st := fresh().Status(now)
		if st.HasNext && !st.Next.Start.After(now) {
			t.Fatalf("%v at %s: next opening %s is not after now", specs, now, st.Next.Start)
		}
		d := time.Duration(rapid.IntRange(0, 300).Draw(t, "install")) * time.Minute
		if p, ok := fresh().NextFit(now, d); ok && p.Start.Before(now) {
			t.Fatalf("%v at %s: next fit %s is before now", specs, now, p.Start)
		}
	})
}

func TestPropertyOpenAgreesWithPeriods(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fresh, specs := genSchedule(t)
		now := genInstant(t, "now")
		st := fresh().Status(now)
		open := func(at time.Time) bool { return fresh().Status(at).Open }
		sec := time.Second
		if st.Open {
			cur := st.Current
			if now.Before(cur.Start) || !now.Before(cur.End) {
				t.Fatalf("%v at %s: open, but current period %s-%s does not contain now", specs, now, cur.Start, cur.End)
			}
			u := cur.Start.Add(time.Duration(rapid.Int64Range(0, int64(cur.End.Sub(cur.Start)/sec)-1).Draw(t, "u")) * sec)
			if !open(u) || !open(cur.End.Add(-sec)) {
				t.Fatalf("%v: closed at %s or %s inside current period %s-%s", specs, u, cur.End.Add(-sec), cur.Start, cur.End)
			}
			if !cur.Capped && open(cur.End) {
				t.Fatalf("%v: open at the current period's end %s", specs, cur.End)
			}
			return
		}
		if !st.HasNext {
			for range 5 {
				if u := now.Add(time.Duration(rapid.Int64Range(0, 366*24*3600).Draw(t, "later")) * sec); open(u) {
					t.Fatalf("%v at %s: no next opening, but open at %s", specs, now, u)
				}
			}
			return
		}
		next := st.Next.Start
		if !open(next) {
			t.Fatalf("%v at %s: closed at the computed next opening %s", specs, now, next)
		}
		if open(next.Add(-sec)) {
			t.Fatalf("%v at %s: open one second before the computed next opening %s", specs, now, next)
		}
		u := now.Add(time.Duration(rapid.Int64Range(0, int64(next.Sub(now)/sec)-1).Draw(t, "u")) * sec)
		if open(u) {
			t.Fatalf("%v at %s: open at %s, before the computed next opening %s", specs, now, u, next)
		}
	})
}

func TestPropertyNeverLongerThanWritten(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		zone := rapid.SampledFrom(propZones).Draw(t, "zone")
		start := rapid.IntRange(0, 24*4-1).Draw(t, "start") * 15
		length := rapid.IntRange(1, 24*4-1).Draw(t, "length") * 15
		end := (start + length) % (24 * 60)
		spec := fmt.Sprintf("Sun %02d:%02d-%02d:%02d %s", start/60, start%60, end/60, end%60, zone)
		s := NewSchedule([]Window{mustWindowRapid(t, spec)}, nil)
		st := s.Status(genInstant(t, "now"))
		p := st.Next
		if st.Open {
			p = st.Current
		}
		if got := p.End.Sub(p.Start); got > time.Duration(length)*time.Minute {
			t.Fatalf("%s: occurrence %s-%s lasts %s, longer than the written %dm", spec, p.Start, p.End, got, length)
		}
	})
}

func mustWindowRapid(t *rapid.T, spec string) Window {
	w, err := ParseWindow(spec)
	if err != nil {
		t.Fatalf("ParseWindow(%q): %v", spec, err)
	}
	return w
}
