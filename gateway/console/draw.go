package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Bars and the timeline are SVG shapes with percentages in attributes,
// so the strict CSP (no inline styles) holds and pages render without
// scripts.

// Segment is one coloured part of a progress bar, in percent of its width.
type Segment struct {
	X     float64 `json:"x"`
	W     float64 `json:"w"`
	Class string  `json:"class"`
	N     int     `json:"n"`
	Label string  `json:"label"`
}

// segments splits a wave into updated, installed, offered, failed,
// removed and waiting parts, in that order from the left.
func segments(w WaveProgress) []Segment {
	parts := []struct {
		n            int
		class, label string
	}{
		{w.Updated, "updated", "updated"},
		{w.Installed, "installed", "installed, awaiting check-in"},
		{w.Offered, "offered", "offered"},
		{w.Failed, "failed", "failed"},
		{w.Removed, "removed", "left the group"},
		{w.Waiting, "waiting", "waiting"},
	}
	out := make([]Segment, 0, len(parts))
	x := 0.0
	for _, p := range parts {
		wd := 0.0
		if w.Devices > 0 {
			wd = float64(p.n) * 100 / float64(w.Devices)
		}
		out = append(out, Segment{X: x, W: wd, Class: p.class, N: p.n, Label: fmt.Sprintf("%d %s", p.n, p.label)})
		x += wd
	}
	return out
}

func waveLabel(w WaveProgress) string {
	if w.Devices == 0 {
		return "no devices"
	}
	return fmt.Sprintf("%d of %d updated (%d%%)", w.Updated, w.Devices, w.Done())
}

type timelineData struct {
	Windows
	Days   []dayMark
	Rows   []timelineRow
	NowX   float64
	ShowNw bool
	Zone   string
}

type dayMark struct {
	X       float64
	Label   string
	Weekend bool
}

type timelineRow struct {
	GroupWindows
	Bars []timelineBar
}

type timelineBar struct {
	X, W  float64
	Class string
	Title string
}

func timeline(w Windows, now time.Time) timelineData {
	loc := w.Location
	if loc == nil {
		loc = time.Local
	}
	span := w.To.Sub(w.From)
	zone := loc.String()
	if zone == "Local" {
		zone = w.From.In(loc).Format("MST")
	}
	td := timelineData{Windows: w, Zone: zone}
	if span <= 0 {
		return td
	}
	pos := func(t time.Time) float64 {
		p := float64(t.Sub(w.From)) * 100 / float64(span)
		return min(max(p, 0), 100)
	}
	for d := w.From.In(loc); d.Before(w.To); d = time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc) {
		td.Days = append(td.Days, dayMark{X: pos(d), Label: d.Format("Mon 2 Jan"), Weekend: d.Weekday() == time.Saturday || d.Weekday() == time.Sunday})
	}
	if !now.Before(w.From) && now.Before(w.To) {
		td.NowX, td.ShowNw = pos(now), true
	}
	for _, g := range w.Groups {
		row := timelineRow{GroupWindows: g}
		if g.AnyTime {
			row.Bars = append(row.Bars, timelineBar{X: 0, W: 100, Class: "anytime", Title: "no windows: installs may start at any time outside blackouts"})
		}
		for _, p := range g.Periods {
			x0, x1 := pos(p.Start), pos(p.End)
			if x1 <= x0 {
				continue
			}
			class := "window"
			if p.Blackout {
				class = "blackout"
			}
			title := fmt.Sprintf("%s %s – %s", p.Label, p.Start.In(loc).Format("Mon 15:04"), p.End.In(loc).Format("Mon 15:04 MST"))
			row.Bars = append(row.Bars, timelineBar{X: x0, W: max(x1-x0, 0.3), Class: class, Title: strings.TrimSpace(title)})
		}
		td.Rows = append(td.Rows, row)
	}
	return td
}

var funcs = template.FuncMap{
	"segments":  segments,
	"waveLabel": waveLabel,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04:05 MST")
	},
	"ago":   ago,
	"until": func(now, t time.Time) string { return relative(t.Sub(now)) },
	"bytes": humanBytes,
	"pct": func(a, b int64) int64 {
		if b <= 0 {
			return 0
		}
		return min(a*100/b, 100)
	},
	"f": func(v float64) string { return fmt.Sprintf("%.3f%%", v) },
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return relative(d)
	},
	"join":  strings.Join,
	"short": func(s string, n int) string { return shorten(s, n) },
	"add":   func(a, b int) int { return a + b },
	"stateClass": func(s string) string {
		switch s {
		case "present", "active", "running", "completed", "connected", "affected-none", "not_affected", "fixed":
			return "ok"
		case "stale", "departed", "halted", "paused", "pending", "reconnecting", "under_investigation", "unknown":
			return "warn"
		case "retired", "cancelled", "failed", "affected", "offline":
			return "bad"
		}
		return "neutral"
	},
	"can": func(sess *session, role string) bool {
		r, err := ParseRole(role)
		return err == nil && sess != nil && sess.actor.Role.Allows(r)
	},
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + relative(-d)
	}
	return relative(d) + " ago"
}

func relative(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
