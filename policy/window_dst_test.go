package policy

import (
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("parsing test time %q: %v", s, err)
	}
	return v
}

func mustWindow(t *testing.T, spec string) Window {
	t.Helper()
	w, err := ParseWindow(spec)
	if err != nil {
		t.Fatalf("ParseWindow(%q): %v", spec, err)
	}
	return w
}

// TestTimeZoneData checks the daylight-saving transitions the window
// tables rely on, so a change in the zone database shows up here rather
// than as a puzzling window failure.
func TestTimeZoneData(t *testing.T) {
	tests := []struct {
		zone                string
		before, after       string // instants one second before and at the change
		offBefore, offAfter int    // UTC offsets in minutes
	}{
		{"America/New_York", "2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z", -300, -240},
		{"America/New_York", "2026-11-01T05:59:59Z", "2026-11-01T06:00:00Z", -240, -300},
		{"Europe/Berlin", "2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z", 60, 120},
		{"Europe/Berlin", "2026-10-25T00:59:59Z", "2026-10-25T01:00:00Z", 120, 60},
		{"Australia/Sydney", "2026-04-04T15:59:59Z", "2026-04-04T16:00:00Z", 660, 600},
		{"Australia/Sydney", "2026-10-03T15:59:59Z", "2026-10-03T16:00:00Z", 600, 660},
		{"Australia/Lord_Howe", "2026-04-04T14:59:59Z", "2026-04-04T15:00:00Z", 660, 630},
		{"Australia/Lord_Howe", "2026-10-03T15:29:59Z", "2026-10-03T15:30:00Z", 630, 660},
	}
	for _, tc := range tests {
		t.Run(tc.zone+" "+tc.after, func(t *testing.T) {
			loc, err := loadLocation(tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			_, before := mustTime(t, tc.before).In(loc).Zone()
			_, after := mustTime(t, tc.after).In(loc).Zone()
			if before/60 != tc.offBefore || after/60 != tc.offAfter {
				t.Fatalf("got offsets %d then %d minutes, want %d then %d", before/60, after/60, tc.offBefore, tc.offAfter)
			}
		})
	}
}

// TestWindowOccurrenceDST checks the occurrence that follows an instant,
// across daylight-saving changes, midnight, month ends and 29 February.
func TestWindowOccurrenceDST(t *testing.T) {
	tests := []struct {
		name       string
		spec       string
		after      string // query instant
		start, end string // expected next (or current) occurrence, UTC
	}{
		// America/New_York: clocks go 02:00 EST -> 03:00 EDT on 2026-03-08
		// and 02:00 EDT -> 01:00 EST on 2026-11-01.
		{"NY inside skipped hour does not occur", "Sun 02:15-02:45 America/New_York", "2026-03-08T00:00:00Z", "2026-03-15T06:15:00Z", "2026-03-15T06:45:00Z"},
		{"NY straddling skipped hour start", "Sun 01:30-02:30 America/New_York", "2026-03-08T00:00:00Z", "2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"},
		{"NY straddling skipped hour end", "Sun 02:30-03:30 America/New_York", "2026-03-08T00:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"},
		{"NY cron inside skipped hour", "cron 30 2 * * 0 20m America/New_York", "2026-03-08T00:00:00Z", "2026-03-15T06:30:00Z", "2026-03-15T06:50:00Z"},
		{"NY crossing midnight into the change", "daily 23:00-03:00 America/New_York", "2026-03-08T03:00:00Z", "2026-03-08T04:00:00Z", "2026-03-08T07:00:00Z"},
		{"NY inside repeated hour opens once", "Sun 01:15-01:45 America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T05:15:00Z", "2026-11-01T05:45:00Z"},
		{"NY ending inside repeated hour", "Sun 00:30-01:30 America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z"},
		{"NY straddling repeated hour keeps its length", "Sun 01:30-02:30 America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"},
		// Europe/Berlin: 02:00 CET -> 03:00 CEST on 2026-03-29, 03:00 CEST
		// -> 02:00 CET on 2026-10-25.
		{"Berlin inside skipped hour does not occur", "Sun 02:15-02:45 Europe/Berlin", "2026-03-28T00:00:00Z", "2026-04-05T00:15:00Z", "2026-04-05T00:45:00Z"},
		{"Berlin straddling skipped hour", "Sun 01:30-02:30 Europe/Berlin", "2026-03-28T00:00:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"},
		{"Berlin around skipped hour", "Sun 01:00-04:00 Europe/Berlin", "2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"},
		{"Berlin inside repeated hour opens once", "Sun 02:15-02:45 Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z"},
		{"Berlin straddling repeated hour end", "Sun 02:30-03:30 Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"},
		{"Berlin around repeated hour keeps its length", "Sun 01:00-04:00 Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z"},
		{"Berlin cron in repeated hour", "cron 15 2 * * SUN 30m Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z"},
		// Australia/Sydney: 03:00 AEDT -> 02:00 AEST on 2026-04-05, 02:00
		// AEST -> 03:00 AEDT on 2026-10-04.
		{"Sydney inside repeated hour opens once", "Sun 02:15-02:45 Australia/Sydney", "2026-04-04T00:00:00Z", "2026-04-04T15:15:00Z", "2026-04-04T15:45:00Z"},
		{"Sydney inside skipped hour does not occur", "Sun 02:15-02:45 Australia/Sydney", "2026-10-03T00:00:00Z", "2026-10-10T15:15:00Z", "2026-10-10T15:45:00Z"},
		{"Sydney straddling skipped hour", "Sun 01:30-02:30 Australia/Sydney", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"},
		// Australia/Lord_Howe shifts by 30 minutes: 02:00 -> 01:30 on
		// 2026-04-05 and 02:00 -> 02:30 on 2026-10-04.
		{"Lord Howe inside repeated half hour opens once", "Sun 01:40-01:50 Australia/Lord_Howe", "2026-04-04T00:00:00Z", "2026-04-04T14:40:00Z", "2026-04-04T14:50:00Z"},
		{"Lord Howe around repeated half hour keeps its length", "Sun 01:00-02:30 Australia/Lord_Howe", "2026-04-04T00:00:00Z", "2026-04-04T14:00:00Z", "2026-04-04T15:30:00Z"},
		{"Lord Howe inside skipped half hour does not occur", "Sun 02:05-02:25 Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-10T15:05:00Z", "2026-10-10T15:25:00Z"},
		{"Lord Howe straddling skipped half hour start", "Sun 01:45-02:15 Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-03T15:15:00Z", "2026-10-03T15:30:00Z"},
		{"Lord Howe straddling skipped half hour end", "Sun 02:15-03:00 Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"},
		// Midnight, month ends, leap days.
		{"crossing midnight", "Tue 23:00-01:00 UTC", "2026-03-10T12:00:00Z", "2026-03-10T23:00:00Z", "2026-03-11T01:00:00Z"},
		{"end of day written 24:00", "Tue 22:00-24:00 UTC", "2026-03-10T12:00:00Z", "2026-03-10T22:00:00Z", "2026-03-11T00:00:00Z"},
		{"spanning a month end", "Sat 22:00-Mon 06:00 Europe/Berlin", "2026-01-30T00:00:00Z", "2026-01-31T21:00:00Z", "2026-02-02T05:00:00Z"},
		{"spanning a year end", "Thu 20:00-Fri 04:00 UTC", "2026-12-30T00:00:00Z", "2026-12-31T20:00:00Z", "2027-01-01T04:00:00Z"},
		{"cron on the last days of months", "cron 0 1 31 * * 2h UTC", "2026-04-01T00:00:00Z", "2026-05-31T01:00:00Z", "2026-05-31T03:00:00Z"},
		{"cron on 29 February", "cron 0 2 29 2 * 1h UTC", "2026-03-01T00:00:00Z", "2028-02-29T02:00:00Z", "2028-02-29T03:00:00Z"},
		{"cron on 29 February across 2100", "cron 0 2 29 2 * 1h UTC", "2096-03-01T00:00:00Z", "2104-02-29T02:00:00Z", "2104-02-29T03:00:00Z"},
		{"one-time on 29 February", "2028-02-29 22:00-2028-03-01 02:00 Europe/Berlin", "2028-02-01T00:00:00Z", "2028-02-29T21:00:00Z", "2028-03-01T01:00:00Z"},
		{"one-time inside skipped hour keeps only what exists", "2026-03-29 01:30-03:30 Europe/Berlin", "2026-03-01T00:00:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"},
		{"almost seven days", "Mon 00:00-Sun 23:00 UTC", "2026-03-10T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-15T23:00:00Z"},
		{"cron with a step and the Vixie day rule", "cron */30 3 13 * FRI 15m UTC", "2026-03-01T00:00:00Z", "2026-03-06T03:00:00Z", "2026-03-06T03:15:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSchedule([]Window{mustWindow(t, tc.spec)}, nil)
			st := s.Status(mustTime(t, tc.after))
			p := st.Next
			if st.Open {
				p = st.Current
			} else if !st.HasNext {
				t.Fatalf("got no next opening after %s, want %s", tc.after, tc.start)
			}
			gotStart, gotEnd := p.Start.UTC().Format(time.RFC3339), p.End.UTC().Format(time.RFC3339)
			if gotStart != tc.start || gotEnd != tc.end {
				t.Fatalf("got occurrence %s to %s, want %s to %s", gotStart, gotEnd, tc.start, tc.end)
			}
		})
	}
}

// TestWindowNeverTwice walks each daylight-saving day minute by minute
// and checks that a window opens at most once and is never open longer
// than written.
func TestWindowNeverTwice(t *testing.T) {
	tests := []struct {
		spec    string
		day     string // UTC start of a 36-hour walk
		written time.Duration
	}{
		{"Sun 01:15-01:45 America/New_York", "2026-11-01T00:00:00Z", 30 * time.Minute},
		{"Sun 00:30-02:30 America/New_York", "2026-11-01T00:00:00Z", 2 * time.Hour},
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-24T12:00:00Z", time.Hour},
		{"Sun 02:30-03:30 Europe/Berlin", "2026-10-24T12:00:00Z", time.Hour},
		{"cron 0 2 * * * 1h Europe/Berlin", "2026-10-24T12:00:00Z", time.Hour},
		{"Sun 02:00-03:00 Australia/Sydney", "2026-04-04T00:00:00Z", time.Hour},
		{"Sun 01:30-02:00 Australia/Lord_Howe", "2026-04-04T00:00:00Z", 30 * time.Minute},
		{"Sun 01:00-03:00 Australia/Lord_Howe", "2026-04-04T00:00:00Z", 2 * time.Hour},
		{"Sun 01:30-02:30 Europe/Berlin", "2026-03-28T12:00:00Z", time.Hour},
		{"Sun 02:00-02:30 Australia/Lord_Howe", "2026-10-03T00:00:00Z", 30 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s := NewSchedule([]Window{mustWindow(t, tc.spec)}, nil)
			start := mustTime(t, tc.day)
			opens, open, wasOpen := 0, time.Duration(0), false
			for at := start; at.Before(start.Add(36 * time.Hour)); at = at.Add(time.Minute) {
				isOpen := s.Status(at).Open
				if isOpen && !wasOpen {
					opens++
				}
				if isOpen {
					open += time.Minute
				}
				wasOpen = isOpen
			}
			if opens > 1 {
				t.Errorf("got %d openings in 36 hours, want at most 1", opens)
			}
			if open > tc.written {
				t.Errorf("got %s open, want at most the written %s", open, tc.written)
			}
		})
	}
}

// TestWindowBoundaries checks start inclusive and end exclusive, one
// second either side.
func TestWindowBoundaries(t *testing.T) {
	tests := []struct {
		spec       string
		start, end string
	}{
		{"Tue 02:00-04:00 Europe/Berlin", "2026-03-10T01:00:00Z", "2026-03-10T03:00:00Z"},
		{"Mon-Fri 22:00-02:00 America/New_York", "2026-03-10T02:00:00Z", "2026-03-10T06:00:00Z"},
		{"cron 0 2 * * 2 2h Europe/Berlin", "2026-03-10T01:00:00Z", "2026-03-10T03:00:00Z"},
		{"2026-03-14 02:00-06:00 Australia/Lord_Howe", "2026-03-13T15:00:00Z", "2026-03-13T19:00:00Z"},
		{"Sun 01:30-02:30 Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s := NewSchedule([]Window{mustWindow(t, tc.spec)}, nil)
			start, end := mustTime(t, tc.start), mustTime(t, tc.end)
			for _, c := range []struct {
				at   time.Time
				want bool
			}{
				{start.Add(-time.Second), false},
				{start.Add(-time.Nanosecond), false},
				{start, true},
				{end.Add(-time.Second), true},
				{end.Add(-time.Nanosecond), true},
				{end, false},
				{end.Add(time.Second), false},
			} {
				if got := s.Status(c.at).Open; got != c.want {
					t.Errorf("open at %s: got %v, want %v", c.at.Format(time.RFC3339Nano), got, c.want)
				}
			}
		})
	}
}
