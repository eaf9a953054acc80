package policy

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// cronSchedule is a parsed five-field cron expression. Each field is a
// bit set of the values it matches.
type cronSchedule struct {
	minute, hour uint64
	dom          uint64 // bits 1-31
	month        uint64 // bits 1-12
	dow          uint64 // bits 0-6, Sunday is 0
	// domStar and dowStar record a field written starting with "*". As in
	// Vixie cron, when both day fields are restricted a day matches if
	// either matches, and otherwise both must match.
	domStar, dowStar bool
}

var cronMacros = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
	"@hourly": "0 * * * *",
}

var monthNames = map[string]int{
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
	"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}

var cronDayNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// parseCron parses `FIELDS LENGTH`, where FIELDS is five cron fields, a
// macro such as @daily, or either of them in double quotes.
func (w *Window) parseCron(body string) error {
	body = strings.TrimSpace(body)
	var expr, rest string
	switch {
	case strings.HasPrefix(body, `"`):
		end := strings.IndexByte(body[1:], '"')
		if end < 0 {
			return fmt.Errorf("cron expression %q has no closing quote", body)
		}
		expr, rest = body[1:end+1], strings.TrimSpace(body[end+2:])
	case strings.HasPrefix(body, "@"):
		expr, rest, _ = strings.Cut(body, " ")
	default:
		fields := strings.Fields(body)
		if len(fields) != 6 {
			return fmt.Errorf("cron window %q: write five cron fields and a length, such as \"cron 0 2 * * 2 2h\"", body)
		}
		expr, rest = strings.Join(fields[:5], " "), fields[5]
	}
	if rest == "" || strings.Contains(rest, " ") {
		return fmt.Errorf("cron window %q: write one length after the cron fields, such as 2h", body)
	}
	length, err := parseLength(rest)
	if err != nil {
		return err
	}
	cs, err := parseCronExpr(expr)
	if err != nil {
		return err
	}
	w.cron, w.length = cs, int64(length/time.Second)
	return nil
}

// parseLength parses a window length: a Go duration, where "d" may also
// be used for 24-hour days ("1d12h").
func parseLength(s string) (time.Duration, error) {
	text := s
	var days int64
	if i := strings.IndexByte(text, 'd'); i >= 0 {
		n, err := strconv.ParseInt(text[:i], 10, 64)
		if err != nil || n < 0 || n > 7 {
			return 0, fmt.Errorf("length %q: write a duration such as 2h, 90m or 1d12h", s)
		}
		days, text = n, text[i+1:]
	}
	var d time.Duration
	if text != "" {
		var err error
		if d, err = time.ParseDuration(text); err != nil {
			return 0, fmt.Errorf("length %q: write a duration such as 2h, 90m or 1d12h", s)
		}
	}
	d += time.Duration(days) * 24 * time.Hour
	switch {
	case d < time.Minute:
		return 0, fmt.Errorf("length %q is shorter than one minute", s)
	case d > MaxWindowLength:
		return 0, fmt.Errorf("length %q is longer than the maximum of 7 days: split the window", s)
	case d%time.Second != 0:
		return 0, fmt.Errorf("length %q: use whole seconds", s)
	}
	return d, nil
}

func parseCronExpr(expr string) (cronSchedule, error) {
	if m, ok := cronMacros[strings.ToLower(expr)]; ok {
		expr = m
	}
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return cronSchedule{}, fmt.Errorf("cron expression %q: write five fields (minute hour day-of-month month day-of-week)", expr)
	}
	var cs cronSchedule
	var err error
	if cs.minute, err = parseCronField(fields[0], 0, 59, nil, "minute"); err != nil {
		return cronSchedule{}, err
	}
	if cs.hour, err = parseCronField(fields[1], 0, 23, nil, "hour"); err != nil {
		return cronSchedule{}, err
	}
	if cs.dom, err = parseCronField(fields[2], 1, 31, nil, "day of month"); err != nil {
		return cronSchedule{}, err
	}
	if cs.month, err = parseCronField(fields[3], 1, 12, monthNames, "month"); err != nil {
		return cronSchedule{}, err
	}
	if cs.dow, err = parseCronField(fields[4], 0, 7, cronDayNames, "day of week"); err != nil {
		return cronSchedule{}, err
	}
	if cs.dow&(1<<7) != 0 {
		cs.dow = cs.dow&^(1<<7) | 1 // 7 is Sunday too
	}
	cs.domStar = strings.HasPrefix(fields[2], "*")
	cs.dowStar = strings.HasPrefix(fields[4], "*")
	return cs, nil
}

// parseCronField parses a comma list of "*", "N", "N-M", each optionally
// followed by "/STEP", or "N/STEP" meaning N to the maximum.
func parseCronField(field string, lo, hi int, names map[string]int, what string) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(field, ",") {
		rangeText, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > hi {
				return 0, fmt.Errorf("cron %s field %q: step %q must be a number from 1 to %d", what, field, stepText, hi)
			}
			step = n
		}
		first, last := lo, hi
		if rangeText != "*" {
			a, b, isRange := strings.Cut(rangeText, "-")
			var err error
			if first, err = cronValue(a, lo, hi, names, what, field); err != nil {
				return 0, err
			}
			last = first
			if isRange {
				if last, err = cronValue(b, lo, hi, names, what, field); err != nil {
					return 0, err
				}
			} else if hasStep {
				last = hi
			}
			if last < first {
				return 0, fmt.Errorf("cron %s field %q: range %q runs backwards", what, field, rangeText)
			}
		}
		for v := first; v <= last; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

func cronValue(s string, lo, hi int, names map[string]int, what, field string) (int, error) {
	if v, ok := names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("cron %s field %q: %q must be a number from %d to %d", what, field, s, lo, hi)
	}
	return v, nil
}

// matchesDay reports whether the cron schedule fires on the civil date.
func (cs *cronSchedule) matchesDay(month time.Month, day int, wd time.Weekday) bool {
	if cs.month&(1<<uint(month)) == 0 {
		return false
	}
	domOK := cs.dom&(1<<uint(day)) != 0
	dowOK := cs.dow&(1<<uint(wd)) != 0
	if !cs.domStar && !cs.dowStar {
		return domOK || dowOK
	}
	return domOK && dowOK
}

// startsOnDay appends, in order, the seconds after midnight at which the
// schedule fires on a matching day.
func (cs *cronSchedule) startsOnDay(dst []int64) []int64 {
	for hours := cs.hour; hours != 0; hours &= hours - 1 {
		h := int64(bits.TrailingZeros64(hours))
		for mins := cs.minute; mins != 0; mins &= mins - 1 {
			dst = append(dst, h*3600+int64(bits.TrailingZeros64(mins))*60)
		}
	}
	return dst
}
