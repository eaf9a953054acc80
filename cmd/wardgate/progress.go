package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows a long operation's advance: a redrawn bar on a
// terminal, and on anything else (a log, a pipe, journald) a plain line
// at each tenth of the work and at most every few seconds.
type progress struct {
	w     io.Writer
	tty   bool
	width int
	label string
	noun  string // unit of a counted amount, such as "files"; empty for bytes

	mu       sync.Mutex
	lastDraw time.Time
	lastStep int64
	started  time.Time
	done     bool
}

// newProgress writes to w; w is a terminal when it is an *os.File for
// one.
func newProgress(w io.Writer, label string) *progress {
	p := &progress{w: w, label: label, width: 80, started: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 40 {
			p.width = cols
		}
	}
	return p
}

// counting makes p report counts of noun ("files") instead of bytes.
func (p *progress) counting(noun string) *progress {
	p.noun = noun
	return p
}

// amount formats done of total (total 0: unknown) with sep between
// them: sizes, or counts followed by p.noun.
func (p *progress) amount(done, total int64, sep string) string {
	switch {
	case p.noun == "" && total <= 0:
		return sizeText(done)
	case p.noun == "":
		return sizeText(done) + sep + sizeText(total)
	case total <= 0:
		return fmt.Sprintf("%d %s", done, p.noun)
	}
	return fmt.Sprintf("%d%s%d %s", done, sep, total, p.noun)
}

// update reports done of total bytes, or of the counted noun (total 0:
// unknown), while working on item.
func (p *progress) update(done, total int64, item string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.tty {
		if now.Sub(p.lastDraw) < 100*time.Millisecond && done < total {
			return
		}
		p.lastDraw = now
		fmt.Fprint(p.w, "\r"+p.bar(done, total, item))
		return
	}
	step := int64(-1)
	if total > 0 {
		step = done * 10 / total
	}
	if step == p.lastStep && now.Sub(p.lastDraw) < 5*time.Second {
		return
	}
	p.lastStep, p.lastDraw = step, now
	fmt.Fprintln(p.w, p.line(done, total, item))
}

func (p *progress) line(done, total int64, item string) string {
	if total <= 0 {
		return fmt.Sprintf("%s: %s (%s)", p.label, p.amount(done, 0, ""), item)
	}
	return fmt.Sprintf("%s: %3d%% %s (%s)", p.label, done*100/total, p.amount(done, total, " of "), item)
}

func (p *progress) bar(done, total int64, item string) string {
	pct := 0
	if total > 0 {
		pct = int(min(done*100/total, 100))
	}
	info := fmt.Sprintf(" %3d%% %s %s", pct, p.amount(done, total, "/"), item)
	label := p.label + " "
	n := max(p.width-len(label)-len(info)-3, 10)
	filled := n * pct / 100
	s := label + "[" + strings.Repeat("#", filled) + strings.Repeat("-", n-filled) + "]" + info
	if len(s) > p.width-1 {
		s = s[:p.width-1]
	}
	return s + strings.Repeat(" ", max(p.width-1-len(s), 0))
}

// finish ends the output with a summary line.
func (p *progress) finish(summary string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	if p.tty {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.width-1)+"\r")
	}
	fmt.Fprintf(p.w, "%s: %s in %s\n", p.label, summary, time.Since(p.started).Round(100*time.Millisecond))
}

func sizeText(n int64) string {
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

// countingWriter reports the bytes written through it.
type countingWriter struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.fn != nil {
		c.fn(c.n)
	}
	return n, err
}
