package policy

import (
	"time"
)

// Wall-clock arithmetic. A wall time is a local date and time of day
// written as seconds since 1970-01-01 00:00 as if the zone were UTC, and an
// instant is Unix seconds.

const secondsPerDay = 86400

// wallDay returns the wall time of midnight on the given civil date.
func wallDay(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
}

// wallOf returns the wall time that instant t shows in loc.
func wallOf(t int64, loc *time.Location) int64 {
	_, off := time.Unix(t, 0).In(loc).Zone()
	return t + int64(off)
}

func offsetAt(t int64, loc *time.Location) int64 {
	_, off := time.Unix(t, 0).In(loc).Zone()
	return int64(off)
}

// resolveWall maps a wall time in loc to an instant:
//
//   - a wall time that occurs once maps to that instant.
//   - a wall time that occurs twice, because the clock was set back,
//     maps to its first (earlier) occurrence.
//   - a wall time that does not occur, because the clock was set
//     forward, maps to the instant the clock jumped, which is the first
//     instant after the skipped wall times.
//
// The mapping never decreases as the wall time increases, so windows keep
// their order.
func resolveWall(w int64, loc *time.Location) int64 {
	before := offsetAt(w-secondsPerDay, loc)
	after := offsetAt(w+secondsPerDay, loc)
	best, found := int64(0), false
	for _, off := range [...]int64{before, after, offsetAt(w-before, loc), offsetAt(w-after, loc)} {
		t := w - off
		if offsetAt(t, loc) != off {
			continue
		}
		if !found || t < best {
			best, found = t, true
		}
	}
	if found {
		return best
	}
	// The wall time falls in a gap. Read with the offset in force before
	// the gap, it names an instant just after the jump, and the zone period
	// holding that instant starts at the jump.
	start, _ := time.Unix(w-before, 0).In(loc).ZoneBounds()
	if start.IsZero() {
		return w - before
	}
	return start.Unix()
}

// occurrence maps a wall-clock range [w, w+length) in loc to the instant
// interval it covers. The interval starts at resolveWall(w) and ends at
// resolveWall(w+length), but never lasts longer than length, so a
// window around a clock set back is not widened. It returns ok=false
// when nothing of the range exists, as for a window inside a skipped
// hour.
func occurrence(w, length int64, loc *time.Location) (start, end int64, ok bool) {
	start = resolveWall(w, loc)
	end = min(resolveWall(w+length, loc), start+length)
	return start, end, end > start
}
