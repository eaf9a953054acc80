package policy

import (
	"fmt"
	"strings"
	"sync"
	"time"

	// The zone database embedded in Go is the fallback when the system has
	// none, so maintenance windows never fail for lack of tzdata. The
	// system copy, when present, is used first and may be newer.
	_ "time/tzdata"
)

// MaxWindowLength is the longest a maintenance window may last.
const MaxWindowLength = 7 * 24 * time.Hour

// Window is one maintenance window, parsed by ParseWindow. A window is a
// range of wall-clock time in an IANA time zone: it is open at instant t
// when t lies in one of its occurrences, start inclusive and end
// exclusive.
//
// Daylight-saving changes are resolved per occurrence, as follows, with
// Europe/Berlin as the example (02:00-03:00 is skipped on the last Sunday
// of March and repeated on the last Sunday of October):
//
//   - A start or end time that falls in a skipped hour moves to the
//     instant the clock jumped forward. A window inside the skipped hour
//     does not occur that day ("Sun 02:15-02:45" next opens a week
//     later), and a window straddling it is shorter by the skipped part
//     ("Sun 01:30-02:30" lasts 30 minutes).
//   - A start or end time that occurs twice, because the clock was set
//     back, means its first occurrence, and no occurrence lasts longer
//     than its wall-clock length. A window inside or around the repeated
//     hour therefore opens once and is never longer than written: "Sun
//     02:15-02:45" is open during the first pass only, and "Sun
//     01:00-04:00" closes after 3 hours, at 03:00 by the set-back clock.
//
// Decisions evaluate windows at whole-second resolution, because every
// window and blackout starts and ends on a whole second.
type Window struct {
	kind   windowKind
	spec   string
	loc    *time.Location
	days   [7]bool // weekly: weekdays on which an occurrence starts
	start  int64   // weekly: start as seconds after midnight
	length int64   // weekly and cron: wall-clock length in seconds
	cron   cronSchedule
	// once: wall-clock start and length
	onceWall   int64
	onceStart  int64 // instants, resolved at parse time
	onceEnd    int64
	onceExists bool
}

type windowKind uint8

const (
	kindWeekly windowKind = iota + 1
	kindCron
	kindOnce
)

// String returns the window's spec as it was written, trimmed.
func (w Window) String() string { return w.spec }

// Kind returns "weekly", "cron" or "once".
func (w Window) Kind() string {
	switch w.kind {
	case kindWeekly:
		return "weekly"
	case kindCron:
		return "cron"
	case kindOnce:
		return "once"
	}
	return ""
}

// Location returns the window's time zone.
func (w Window) Location() *time.Location { return w.loc }

// Ends returns when a one-time window closes. The result ok is false for recurring
// windows and for a one-time window that does not occur at all.
func (w Window) Ends() (end time.Time, ok bool) {
	if w.kind != kindOnce || !w.onceExists {
		return time.Time{}, false
	}
	return time.Unix(w.onceEnd, 0).In(w.loc), true
}

// ParseWindow parses a maintenance window spec. The forms are:
//
//	Tue 02:00-04:00 Europe/Berlin            weekly, one day
//	Mon-Fri 22:00-02:00 America/New_York     weekly, crossing midnight
//	Mon,Wed,Sat 01:30-03:00 UTC              weekly, a list of days
//	daily 03:00-04:00 Australia/Sydney       every day
//	Sat 22:00-Mon 06:00 Europe/Berlin        weekly, spanning days
//	cron 0 2 * * 2 2h Europe/Berlin          cron schedule and length
//	cron "30 1 1-7 * SUN" 90m UTC            the cron fields may be quoted
//	2026-03-14 02:00-06:00 Europe/Berlin     one time
//	2026-03-14 22:00-2026-03-16 06:00 UTC    one time, spanning days
//
// Day names are English, three letters or full, in any case, and day ranges
// may wrap ("Fri-Mon"). Times are 24-hour HH:MM, and an end of "24:00"
// means midnight at the end of the day. An end time at or before the
// start time on a one-day form means the window crosses midnight, equal
// times mean 24 hours, and equal day and time on the spanning form mean
// 7 days. Cron fields are minute, hour, day of month, month and day of
// week, as in Vixie cron (the package documentation lists the syntax).
// The cron length is a Go duration that may also use "d" for 24-hour
// days, such as "1d12h", and it is a wall-clock length like the weekly
// forms, so the daylight-saving rules at Window apply. Every form ends
// with an IANA time zone name or "UTC". No window may last longer than
// MaxWindowLength.
func ParseWindow(spec string) (Window, error) {
	w, err := parseWindow(spec)
	if err != nil {
		return Window{}, fmt.Errorf("parsing window %q: %w", spec, err)
	}
	return w, nil
}

func parseWindow(spec string) (Window, error) {
	spec = strings.Join(strings.Fields(spec), " ")
	if spec == "" {
		return Window{}, fmt.Errorf("empty: write a window such as \"Tue 02:00-04:00 Europe/Berlin\"")
	}
	body, loc, err := splitZone(spec)
	if err != nil {
		return Window{}, err
	}
	w := Window{spec: spec, loc: loc}
	switch {
	case strings.HasPrefix(strings.ToLower(body), "cron "):
		w.kind = kindCron
		if err := w.parseCron(body[len("cron "):]); err != nil {
			return Window{}, err
		}
	case len(body) > 0 && isDigit(body[0]):
		w.kind = kindOnce
		start, end, err := parseDateRange(body, true)
		if err != nil {
			return Window{}, err
		}
		length := end - start
		if length <= 0 {
			return Window{}, fmt.Errorf("the window ends before it starts: put the end after the start")
		}
		if length > int64(MaxWindowLength/time.Second) {
			return Window{}, fmt.Errorf("the window lasts %s, longer than the maximum of 7 days: split it", time.Duration(length)*time.Second)
		}
		w.onceWall = start
		w.onceStart, w.onceEnd, w.onceExists = occurrence(start, length, loc)
		w.length = length
	default:
		w.kind = kindWeekly
		if err := w.parseWeekly(body); err != nil {
			return Window{}, err
		}
	}
	return w, nil
}

var locations sync.Map // zone name -> *time.Location

// splitZone separates the trailing time zone name from spec and loads it.
func splitZone(spec string) (string, *time.Location, error) {
	i := strings.LastIndexByte(spec, ' ')
	if i < 0 {
		return "", nil, fmt.Errorf("no time zone: end the spec with an IANA zone such as Europe/Berlin or UTC")
	}
	name := spec[i+1:]
	loc, err := loadLocation(name)
	if err != nil {
		return "", nil, err
	}
	return spec[:i], loc, nil
}

func loadLocation(name string) (*time.Location, error) {
	if v, ok := locations.Load(name); ok {
		return v.(*time.Location), nil
	}
	if name == "" || name == "Local" || len(name) > 64 {
		return nil, fmt.Errorf("time zone %q: use an IANA zone name such as Europe/Berlin or UTC", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '/' || c == '_' || c == '-' || c == '+') {
			return nil, fmt.Errorf("time zone %q: use an IANA zone name such as Europe/Berlin or UTC", name)
		}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q is not a known IANA zone (check the spelling, such as America/New_York): %w", name, err)
	}
	locations.Store(name, loc)
	return loc, nil
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tues": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thur": time.Thursday, "thurs": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

func parseDay(s string) (time.Weekday, error) {
	d, ok := dayNames[strings.ToLower(s)]
	if !ok {
		return 0, fmt.Errorf("day %q: use Mon, Tue, Wed, Thu, Fri, Sat or Sun", s)
	}
	return d, nil
}

// parseWeekly parses "DAYS HH:MM-HH:MM" or "DAY HH:MM-DAY HH:MM".
func (w *Window) parseWeekly(body string) error {
	daysText, rest, ok := strings.Cut(body, " ")
	if !ok {
		return fmt.Errorf("%q: write days and a time range such as \"Tue 02:00-04:00\"", body)
	}
	rest = strings.ReplaceAll(rest, " - ", "-")
	startText, endText, ok := strings.Cut(rest, "-")
	if !ok {
		return fmt.Errorf("time range %q: write it as HH:MM-HH:MM", rest)
	}
	start, err := parseClock(startText, false)
	if err != nil {
		return err
	}
	w.start = start
	endText = strings.TrimSpace(endText)
	if endDayText, endClock, spanning := strings.Cut(endText, " "); spanning {
		// The spanning form: one start day, an end day and time.
		startDay, err := parseDay(daysText)
		if err != nil {
			return fmt.Errorf("%w (the form \"Sat 22:00-Mon 06:00\" takes one start day)", err)
		}
		endDay, err := parseDay(endDayText)
		if err != nil {
			return err
		}
		end, err := parseClock(endClock, true)
		if err != nil {
			return err
		}
		w.days[startDay] = true
		days := (int64(endDay) - int64(startDay) + 7) % 7
		w.length = days*secondsPerDay + end - start
		if w.length <= 0 {
			w.length += 7 * secondsPerDay
		}
		return nil
	}
	end, err := parseClock(endText, true)
	if err != nil {
		return err
	}
	w.length = end - start
	if w.length <= 0 {
		w.length += secondsPerDay
	}
	return w.parseDays(daysText)
}

func (w *Window) parseDays(text string) error {
	if strings.EqualFold(text, "daily") || text == "*" {
		for i := range w.days {
			w.days[i] = true
		}
		return nil
	}
	for item := range strings.SplitSeq(text, ",") {
		from, to, isRange := strings.Cut(item, "-")
		first, err := parseDay(from)
		if err != nil {
			return err
		}
		last := first
		if isRange {
			if last, err = parseDay(to); err != nil {
				return err
			}
		}
		for d := first; ; d = (d + 1) % 7 {
			w.days[d] = true
			if d == last {
				break
			}
		}
	}
	return nil
}

// parseClock parses HH:MM into seconds after midnight, and "24:00" is
// accepted only as an end time.
func parseClock(s string, end bool) (int64, error) {
	if len(s) != 5 || s[2] != ':' || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[3]) || !isDigit(s[4]) {
		return 0, fmt.Errorf("time %q: write 24-hour HH:MM such as 02:00", s)
	}
	h := int64(s[0]-'0')*10 + int64(s[1]-'0')
	m := int64(s[3]-'0')*10 + int64(s[4]-'0')
	if end && h == 24 && m == 0 {
		return secondsPerDay, nil
	}
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("time %q: hours run 00-23 and minutes 00-59", s)
	}
	return h*3600 + m*60, nil
}

// parseDate parses YYYY-MM-DD into the wall time of its midnight.
func parseDate(s string) (int64, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return 0, fmt.Errorf("date %q: write YYYY-MM-DD such as 2026-03-14", s)
	}
	return t.Unix(), nil
}

// parseDateRange parses "DATE HH:MM-HH:MM" or "DATE HH:MM-DATE HH:MM" into
// wall times. When needTime is false, "DATE" and "DATE..DATE" are also
// accepted and cover whole days.
func parseDateRange(body string, needTime bool) (start, end int64, err error) {
	if !needTime && !strings.Contains(body, " ") {
		from, to, isRange := strings.Cut(body, "..")
		if start, err = parseDate(from); err != nil {
			return 0, 0, err
		}
		end = start
		if isRange {
			if end, err = parseDate(to); err != nil {
				return 0, 0, err
			}
		}
		if end < start {
			return 0, 0, fmt.Errorf("date range %q ends before it starts", body)
		}
		return start, end + secondsPerDay, nil
	}
	dateText, rest, ok := strings.Cut(body, " ")
	if !ok {
		return 0, 0, fmt.Errorf("%q: write a date and a time range such as \"2026-03-14 02:00-06:00\"", body)
	}
	day, err := parseDate(dateText)
	if err != nil {
		return 0, 0, err
	}
	rest = strings.ReplaceAll(rest, " - ", "-")
	startText, endText, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, fmt.Errorf("time range %q: write it as HH:MM-HH:MM", rest)
	}
	clock, err := parseClock(startText, false)
	if err != nil {
		return 0, 0, err
	}
	start = day + clock
	if endDateText, endClock, spanning := strings.Cut(endText, " "); spanning {
		endDay, err := parseDate(endDateText)
		if err != nil {
			return 0, 0, err
		}
		c, err := parseClock(endClock, true)
		if err != nil {
			return 0, 0, err
		}
		return start, endDay + c, nil
	}
	c, err := parseClock(endText, true)
	if err != nil {
		return 0, 0, err
	}
	end = day + c
	if end <= start {
		end += secondsPerDay
	}
	return start, end, nil
}
