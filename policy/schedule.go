package policy

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Blackout is a period in which no install may start, even inside a
// window, parsed by ParseBlackout.
type Blackout struct {
	spec       string
	loc        *time.Location
	start, end int64 // instants
}

// ParseBlackout parses a blackout spec:
//
//	2026-12-24 Europe/Berlin                      one whole day
//	2026-12-24..2026-12-26 Europe/Berlin          whole days, inclusive
//	2026-12-24 18:00-2026-12-26 08:00 UTC         from a time to a time
//
// A day runs from midnight to the next midnight in the given IANA zone.
// Where a daylight-saving change skips midnight, the day starts at the
// first instant after the skipped time.
func ParseBlackout(spec string) (Blackout, error) {
	norm := strings.Join(strings.Fields(spec), " ")
	if norm == "" {
		return Blackout{}, fmt.Errorf("parsing blackout %q: empty: write one such as \"2026-12-24 Europe/Berlin\"", spec)
	}
	body, loc, err := splitZone(norm)
	if err != nil {
		return Blackout{}, fmt.Errorf("parsing blackout %q: %w", spec, err)
	}
	start, end, err := parseDateRange(body, false)
	if err != nil {
		return Blackout{}, fmt.Errorf("parsing blackout %q: %w", spec, err)
	}
	b := Blackout{spec: norm, loc: loc, start: resolveWall(start, loc), end: resolveWall(end, loc)}
	if b.end <= b.start {
		return Blackout{}, fmt.Errorf("parsing blackout %q: it ends before it starts: put the end after the start", spec)
	}
	return b, nil
}

// String returns the blackout's spec as it was written, trimmed.
func (b Blackout) String() string { return b.spec }

// Start and End return the blackout's instants, start inclusive and end
// exclusive.
func (b Blackout) Start() time.Time { return time.Unix(b.start, 0).In(b.loc) }

// End returns the instant the blackout ends (exclusive).
func (b Blackout) End() time.Time { return time.Unix(b.end, 0).In(b.loc) }

// Schedule combines maintenance windows and blackouts: installs may
// start while any window is open and no blackout is in effect. A
// schedule without windows is always open apart from its blackouts. A
// Schedule is immutable and safe for concurrent use.
type Schedule struct {
	windows   []Window
	blackouts []Blackout // sorted by start
	cache     atomic.Pointer[pieceCache]
}

// Horizons. The search for the next opening stops after searchHorizon,
// which covers cron schedules that fire only on 29 February, even across
// a century year that is not a leap year. An open period is followed for
// at most closeHorizon, longer than the longest window, so its reported
// closing time is exact unless overlapping windows keep it open longer.
const (
	searchHorizon = 9 * 366 * secondsPerDay
	closeHorizon  = 8 * secondsPerDay
	cachedPieces  = 8
)

// NewSchedule returns the schedule of windows minus blackouts.
func NewSchedule(windows []Window, blackouts []Blackout) *Schedule {
	s := &Schedule{windows: append([]Window(nil), windows...), blackouts: append([]Blackout(nil), blackouts...)}
	sort.Slice(s.blackouts, func(i, j int) bool { return s.blackouts[i].start < s.blackouts[j].start })
	return s
}

// Windows returns the schedule's windows.
func (s *Schedule) Windows() []Window { return append([]Window(nil), s.windows...) }

// Blackouts returns the schedule's blackouts, sorted by start.
func (s *Schedule) Blackouts() []Blackout { return append([]Blackout(nil), s.blackouts...) }

// Period is a span of time in which installs may start, start inclusive
// and end exclusive.
type Period struct {
	Start, End time.Time
	// Window is the window whose occurrence starts the period, or nil for
	// a schedule without windows.
	Window *Window
	// Capped is true when the period may last beyond End: overlapping
	// windows were followed only up to 8 days.
	Capped bool
}

// WindowStatus is the state of a schedule at one instant.
type WindowStatus struct {
	// Open reports whether an install may start at the instant.
	Open bool
	// Current is the open period containing the instant, when Open.
	Current Period
	// Next is the next period after the instant, when one exists
	// within the search horizon of about nine years: when Open, the one
	// after Current.
	Next    Period
	HasNext bool
	// Blackout is the blackout in effect at the instant, if any.
	Blackout *Blackout
	// Expired is true when the schedule never opens again and at least
	// one of its windows is a one-time window that has passed, and Last is
	// the one that closed last.
	Expired bool
	Last    *Window
}

// piece is an allowed period in Unix seconds, with the index of the
// window that starts it (-1 for a schedule without windows).
type piece struct {
	start, end int64
	window     int
	capped     bool
}

// pieceCache holds the allowed periods that end after from. Periods do
// not depend on the query time, so the list stays valid for every
// instant in [from, until).
type pieceCache struct {
	from, until int64
	pieces      []piece
	complete    bool // no further periods exist within the horizon
}

// Status returns the schedule's state at t.
func (s *Schedule) Status(t time.Time) WindowStatus {
	sec := t.Unix()
	ps, _ := s.piecesAt(sec)
	var st WindowStatus
	i := 0
	for i < len(ps) && ps[i].end <= sec {
		i++
	}
	if i < len(ps) && ps[i].start <= sec {
		st.Open, st.Current = true, s.period(ps[i])
		i++
	}
	if i < len(ps) {
		st.HasNext, st.Next = true, s.period(ps[i])
	}
	for k := range s.blackouts {
		if b := &s.blackouts[k]; b.start <= sec && sec < b.end {
			st.Blackout = b
			break
		}
	}
	if !st.Open && !st.HasNext {
		for k := range s.windows {
			w := &s.windows[k]
			if w.kind == kindOnce && w.onceExists && w.onceEnd <= sec {
				if st.Last == nil || w.onceEnd > st.Last.onceEnd {
					st.Last = w
				}
			}
		}
		st.Expired = st.Last != nil
	}
	return st
}

// NextFit returns the earliest period, open at or after t, in which an
// install of duration d can start and finish: its Start is t when the
// install fits now. ok is false when none exists within the horizon.
func (s *Schedule) NextFit(t time.Time, d time.Duration) (p Period, ok bool) {
	sec := t.Unix()
	need := int64((d + time.Second - 1) / time.Second)
	ps, complete := s.piecesAt(sec)
	for {
		for _, pc := range ps {
			if pc.end <= sec {
				continue
			}
			start := max(pc.start, sec)
			if pc.capped || start+need <= pc.end {
				p = s.period(pc)
				p.Start = time.Unix(start, 0).In(p.Start.Location())
				return p, true
			}
		}
		if complete || len(ps) == 0 {
			return Period{}, false
		}
		next := ps[len(ps)-1].end
		if next-sec > searchHorizon {
			return Period{}, false
		}
		// Search on without replacing the cache, which serves the
		// periods around t to other callers.
		c := s.compute(next)
		ps, complete = c.pieces, c.complete
	}
}

func (s *Schedule) period(pc piece) Period {
	loc := time.UTC
	var w *Window
	if pc.window >= 0 {
		w = &s.windows[pc.window]
		loc = w.loc
	}
	return Period{Start: time.Unix(pc.start, 0).In(loc), End: time.Unix(pc.end, 0).In(loc), Window: w, Capped: pc.capped}
}

// piecesAt returns the allowed periods ending after sec, from the cache
// when it covers sec.
func (s *Schedule) piecesAt(sec int64) ([]piece, bool) {
	if c := s.cache.Load(); c != nil && c.from <= sec && sec < c.until {
		return c.pieces, c.complete
	}
	c := s.compute(sec)
	s.cache.Store(c)
	return c.pieces, c.complete
}

func (s *Schedule) compute(from int64) *pieceCache {
	c := &pieceCache{from: from}
	g := newPieceGen(s, from)
	for len(c.pieces) < cachedPieces {
		pc, ok := g.next()
		if !ok {
			c.complete = true
			break
		}
		c.pieces = append(c.pieces, pc)
		if pc.capped {
			break
		}
	}
	n := len(c.pieces)
	switch {
	case n > 0 && c.pieces[n-1].capped:
		// Periods after a capped one are unknown until it is recomputed.
		c.until = c.pieces[n-1].end
	case c.complete:
		c.until = from + searchHorizon
	default:
		// Keep two periods ahead, so Status always has the next one.
		c.until = c.pieces[n-2].end
	}
	return c
}

// pieceGen yields the allowed periods that end after from, in order: the
// union of the windows' occurrences minus the blackouts.
type pieceGen struct {
	s       *Schedule
	from    int64
	cursors []*winCursor
	pending []piece
	always  bool // the schedule has no windows
	done    bool
}

func newPieceGen(s *Schedule, from int64) *pieceGen {
	g := &pieceGen{s: s, from: from, always: len(s.windows) == 0}
	for i := range s.windows {
		g.cursors = append(g.cursors, newWinCursor(&s.windows[i], i, from))
	}
	return g
}

func (g *pieceGen) next() (piece, bool) {
	for len(g.pending) == 0 {
		m, ok := g.merged()
		if !ok {
			return piece{}, false
		}
		g.subtractBlackouts(m)
	}
	pc := g.pending[0]
	g.pending = g.pending[1:]
	return pc, true
}

// merged returns the next union of overlapping or touching occurrences.
func (g *pieceGen) merged() (piece, bool) {
	if g.done {
		return piece{}, false
	}
	if g.always {
		g.done = true
		return piece{start: g.from, end: g.from + searchHorizon, window: -1, capped: true}, true
	}
	first := g.minCursor(func(h piece) bool { return h.end > g.from })
	if first == nil {
		g.done = true
		return piece{}, false
	}
	m := first.head
	first.advance()
	limit := max(m.start, g.from) + closeHorizon
	for {
		c := g.minCursor(func(h piece) bool { return h.end > g.from })
		if c == nil || c.head.start > m.end {
			return m, true
		}
		m.end = max(m.end, c.head.end)
		c.advance()
		if m.end > limit {
			m.end, m.capped = limit, true
			return m, true
		}
	}
}

// minCursor skips heads that keep fails and returns the cursor with the
// earliest head, or nil when every cursor is exhausted.
func (g *pieceGen) minCursor(keep func(piece) bool) *winCursor {
	var best *winCursor
	for _, c := range g.cursors {
		for c.ok && !keep(c.head) {
			c.advance()
		}
		if c.ok && (best == nil || c.head.start < best.head.start) {
			best = c
		}
	}
	return best
}

func (g *pieceGen) subtractBlackouts(m piece) {
	cur := m.start
	for i := range g.s.blackouts {
		b := &g.s.blackouts[i]
		if b.end <= cur || b.start >= m.end {
			continue
		}
		if cur < b.start {
			g.emit(piece{start: cur, end: b.start, window: m.window})
		}
		cur = max(cur, b.end)
	}
	if cur < m.end {
		g.emit(piece{start: cur, end: m.end, window: m.window, capped: m.capped})
	}
}

func (g *pieceGen) emit(pc piece) {
	if pc.end > g.from {
		g.pending = append(g.pending, pc)
	}
}

// winCursor yields one window's occurrences in order of start.
type winCursor struct {
	w        *Window
	index    int
	day      int64 // wall midnight of the next day to expand
	lastDay  int64
	buf      []piece
	starts   []int64
	head     piece
	ok       bool
	finished bool
}

func newWinCursor(w *Window, index int, from int64) *winCursor {
	c := &winCursor{w: w, index: index}
	switch w.kind {
	case kindOnce:
		if w.onceExists {
			c.buf = []piece{{start: w.onceStart, end: w.onceEnd, window: index}}
		}
		c.finished = true
	default:
		wall := wallOf(from, w.loc)
		back := (w.length+secondsPerDay-1)/secondsPerDay + 1
		c.day = floorDiv(wall, secondsPerDay)*secondsPerDay - back*secondsPerDay
		c.lastDay = wall + searchHorizon
	}
	c.advance()
	return c
}

func (c *winCursor) advance() {
	for len(c.buf) == 0 {
		if c.finished || c.day > c.lastDay {
			c.ok = false
			return
		}
		c.expandDay()
	}
	c.head, c.buf, c.ok = c.buf[0], c.buf[1:], true
}

// expandDay adds the occurrences that start on wall day c.day.
func (c *winCursor) expandDay() {
	w := c.w
	day := c.day
	c.day += secondsPerDay
	wd := time.Weekday(floorMod(floorDiv(day, secondsPerDay)+4, 7)) // 1970-01-01 was a Thursday
	c.starts = c.starts[:0]
	switch w.kind {
	case kindWeekly:
		if w.days[wd] {
			c.starts = append(c.starts, w.start)
		}
	case kindCron:
		_, month, dom := time.Unix(day, 0).UTC().Date()
		if w.cron.matchesDay(month, dom, wd) {
			c.starts = w.cron.startsOnDay(c.starts)
		}
	}
	for _, st := range c.starts {
		if s, e, ok := occurrence(day+st, w.length, w.loc); ok {
			c.buf = append(c.buf, piece{start: s, end: e, window: c.index})
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
