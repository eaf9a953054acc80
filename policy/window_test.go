package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseWindowErrors(t *testing.T) {
	tests := []struct {
		spec string
		want string // part of the error
	}{
		{"", "empty"},
		{"Tue 02:00-04:00", "time zone"},
		{"Tue 02:00-04:00 Mars/Olympus", "not a known IANA zone"},
		{"Tue 02:00-04:00 Local", "IANA zone name"},
		{"Tue 02:00-04:00 ../../etc/passwd", "IANA zone name"},
		{"Tux 02:00-04:00 UTC", "day \"Tux\""},
		{"Tue 2:00-04:00 UTC", "HH:MM"},
		{"Tue 02:00-24:01 UTC", "hours run"},
		{"Tue 24:00-02:00 UTC", "hours run"},
		{"Tue 02:00 UTC", "HH:MM-HH:MM"},
		{"Mon-Fri 22:00-Sat 02:00 UTC", "one start day"},
		{"cron 0 2 * * 2 UTC", "five cron fields and a length"},
		{"cron 0 2 * * 2 8d UTC", "duration"},
		{"cron 0 2 * * 2 169h UTC", "longer than the maximum"},
		{"cron 0 2 * * 2 30s UTC", "shorter than one minute"},
		{"cron 60 2 * * 2 1h UTC", "from 0 to 59"},
		{"cron 0 2 * 13 2 1h UTC", "from 1 to 12"},
		{"cron 0 5-2 * * * 1h UTC", "runs backwards"},
		{"cron */0 2 * * * 1h UTC", "step"},
		{`cron "0 2 * * 2 1h UTC`, "closing quote"},
		{"2026-02-30 02:00-04:00 UTC", "date"},
		{"2026-03-14 02:00-2026-03-13 06:00 UTC", "ends before it starts"},
		{"2026-03-01 02:00-2026-03-09 02:00 UTC", "longer than the maximum"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := ParseWindow(tc.spec)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %q, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseWindowForms(t *testing.T) {
	tests := []struct {
		spec     string
		kind     string
		openAt   string
		closedAt string
	}{
		{"Tue 02:00-04:00 Europe/Berlin", "weekly", "2026-03-10T01:30:00Z", "2026-03-10T03:00:00Z"},
		{"  tue   02:00 - 04:00   Europe/Berlin ", "weekly", "2026-03-10T01:30:00Z", "2026-03-10T03:00:00Z"},
		{"TUESDAY 02:00-04:00 Europe/Berlin", "weekly", "2026-03-10T01:30:00Z", "2026-03-10T03:00:00Z"},
		{"Mon,Wed,Sat 01:30-03:00 UTC", "weekly", "2026-03-11T02:00:00Z", "2026-03-10T02:00:00Z"},
		{"Fri-Mon 01:00-02:00 UTC", "weekly", "2026-03-09T01:30:00Z", "2026-03-10T01:30:00Z"},
		{"daily 03:00-04:00 Australia/Sydney", "weekly", "2026-03-10T16:30:00Z", "2026-03-10T17:30:00Z"},
		{"Mon 05:00-05:00 UTC", "weekly", "2026-03-10T04:59:00Z", "2026-03-10T05:00:00Z"},
		{"cron 0 2 * * 2 2h Europe/Berlin", "cron", "2026-03-10T02:30:00Z", "2026-03-10T03:00:00Z"},
		{`cron "30 1 1-7 * SUN" 90m UTC`, "cron", "2026-03-08T02:00:00Z", "2026-03-09T02:00:00Z"}, // Vixie: day 1-7 or any Sunday
		{"cron @daily 1d UTC", "cron", "2026-03-10T12:00:00Z", "0001-01-01T00:00:00Z"},
		{"cron 0 22 * * 1-5 1d12h UTC", "cron", "2026-03-10T09:00:00Z", "2026-03-09T21:00:00Z"},
		{"2026-03-14 02:00-06:00 Europe/Berlin", "once", "2026-03-14T01:00:00Z", "2026-03-14T05:00:00Z"},
		{"2026-03-14 22:00 - 2026-03-16 06:00 UTC", "once", "2026-03-15T12:00:00Z", "2026-03-16T06:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			w := mustWindow(t, tc.spec)
			if w.Kind() != tc.kind {
				t.Errorf("got kind %q, want %q", w.Kind(), tc.kind)
			}
			s := NewSchedule([]Window{w}, nil)
			if !s.Status(mustTime(t, tc.openAt)).Open {
				t.Errorf("got closed at %s, want open", tc.openAt)
			}
			if tc.closedAt != "0001-01-01T00:00:00Z" && s.Status(mustTime(t, tc.closedAt)).Open {
				t.Errorf("got open at %s, want closed", tc.closedAt)
			}
		})
	}
}

func TestScheduleBlackoutsAndExpiry(t *testing.T) {
	weekly := mustWindow(t, "daily 02:00-04:00 Europe/Berlin")
	once := mustWindow(t, "2026-03-14 02:00-06:00 Europe/Berlin")
	xmas, err := ParseBlackout("2026-12-24..2026-12-26 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	part, err := ParseBlackout("2026-03-11 03:00-2026-03-11 03:30 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("blackout closes window days", func(t *testing.T) {
		s := NewSchedule([]Window{weekly}, []Blackout{xmas})
		st := s.Status(mustTime(t, "2026-12-24T01:30:00Z"))
		if st.Open || st.Blackout == nil {
			t.Fatalf("got open=%v blackout=%v, want closed by the blackout", st.Open, st.Blackout)
		}
		if got, want := st.Next.Start.UTC().Format(time.RFC3339), "2026-12-27T01:00:00Z"; got != want {
			t.Fatalf("got next opening %s, want %s", got, want)
		}
	})
	t.Run("blackout splits a window", func(t *testing.T) {
		s := NewSchedule([]Window{weekly}, []Blackout{part})
		st := s.Status(mustTime(t, "2026-03-11T01:10:00Z"))
		if !st.Open || st.Current.End.UTC().Format(time.RFC3339) != "2026-03-11T02:00:00Z" {
			t.Fatalf("got open=%v closing %s, want open until the blackout at 02:00Z", st.Open, st.Current.End.UTC())
		}
		if got := st.Next.Start.UTC().Format(time.RFC3339); got != "2026-03-11T02:30:00Z" {
			t.Fatalf("got next opening %s, want 2026-03-11T02:30:00Z after the blackout", got)
		}
		fit, ok := s.NextFit(mustTime(t, "2026-03-11T01:10:00Z"), 55*time.Minute)
		if !ok || fit.Start.UTC().Format(time.RFC3339) != "2026-03-12T01:00:00Z" {
			t.Fatalf("got fit %v %v, want the next day's window at 01:00Z", fit.Start.UTC(), ok)
		}
	})
	t.Run("no windows is open outside blackouts", func(t *testing.T) {
		s := NewSchedule(nil, []Blackout{xmas})
		if !s.Status(mustTime(t, "2026-12-23T12:00:00Z")).Open {
			t.Fatal("got closed before the blackout, want open")
		}
		st := s.Status(mustTime(t, "2026-12-25T12:00:00Z"))
		if st.Open || st.Next.Start.UTC().Format(time.RFC3339) != "2026-12-26T23:00:00Z" {
			t.Fatalf("got open=%v next %s, want closed until 2026-12-26T23:00Z", st.Open, st.Next.Start.UTC())
		}
	})
	t.Run("one-time window expires", func(t *testing.T) {
		s := NewSchedule([]Window{once}, nil)
		if st := s.Status(mustTime(t, "2026-03-14T04:59:59Z")); !st.Open || st.Expired {
			t.Fatalf("got open=%v expired=%v in the window, want open", st.Open, st.Expired)
		}
		st := s.Status(mustTime(t, "2026-03-14T05:00:00Z"))
		if st.Open || !st.Expired || st.Last == nil || st.Last.String() != once.String() {
			t.Fatalf("got open=%v expired=%v last=%v after the window, want expired", st.Open, st.Expired, st.Last)
		}
		if st := s.Status(mustTime(t, "2030-01-01T00:00:00Z")); !st.Expired {
			t.Fatal("got not expired years later, want expired still")
		}
	})
	t.Run("one-time window beside a recurring one is not expired", func(t *testing.T) {
		s := NewSchedule([]Window{once, weekly}, nil)
		if st := s.Status(mustTime(t, "2026-04-01T12:00:00Z")); st.Expired || !st.HasNext {
			t.Fatalf("got expired=%v hasNext=%v, want the recurring window next", st.Expired, st.HasNext)
		}
	})
	t.Run("cron that never fires", func(t *testing.T) {
		s := NewSchedule([]Window{mustWindow(t, "cron 0 2 30 2 * 1h UTC")}, nil)
		if st := s.Status(mustTime(t, "2026-04-01T12:00:00Z")); st.Open || st.HasNext || st.Expired {
			t.Fatalf("got open=%v hasNext=%v expired=%v, want never open", st.Open, st.HasNext, st.Expired)
		}
	})
	t.Run("overlapping windows merge", func(t *testing.T) {
		s := NewSchedule([]Window{mustWindow(t, "Tue 02:00-04:00 UTC"), mustWindow(t, "Tue 03:30-05:00 UTC")}, nil)
		st := s.Status(mustTime(t, "2026-03-10T02:30:00Z"))
		if !st.Open || st.Current.End.UTC().Format(time.RFC3339) != "2026-03-10T05:00:00Z" {
			t.Fatalf("got open=%v until %s, want open until 05:00Z", st.Open, st.Current.End.UTC())
		}
	})
	t.Run("always open is capped", func(t *testing.T) {
		s := NewSchedule([]Window{mustWindow(t, "daily 00:00-24:00 UTC")}, nil)
		st := s.Status(mustTime(t, "2026-03-10T02:30:00Z"))
		if !st.Open || !st.Current.Capped {
			t.Fatalf("got open=%v capped=%v, want open and capped", st.Open, st.Current.Capped)
		}
	})
}

func TestParseBlackoutErrors(t *testing.T) {
	for _, spec := range []string{"", "2026-12-24", "2026-12-26..2026-12-24 UTC", "24.12.2026 UTC", "2026-12-24 10:00-2026-12-24 09:00 UTC"} {
		if _, err := ParseBlackout(spec); err == nil {
			t.Errorf("ParseBlackout(%q): got no error, want one", spec)
		}
	}
}
