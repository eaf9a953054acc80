package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/gateway"
)

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "backup")
	if p.tty {
		t.Fatal("a bytes.Buffer was taken for a terminal")
	}
	const total = 1000
	for done := int64(0); done <= total; done += 10 {
		p.update(done, total, "blob")
	}
	p.finish("wrote x")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	// One line per tenth (0% to 100%) and the summary; no carriage
	// returns or bar characters in a log.
	if len(lines) != 12 {
		t.Errorf("got %d lines, want 12:\n%s", len(lines), buf.String())
	}
	if strings.ContainsAny(buf.String(), "\r#") {
		t.Errorf("plain output holds terminal drawing:\n%q", buf.String())
	}
	if !strings.Contains(lines[5], " 50% ") || !strings.HasPrefix(lines[11], "backup: wrote x in ") {
		t.Errorf("unexpected lines %q and %q", lines[5], lines[11])
	}
}

func TestProgressCountsFiles(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "importing advisories").counting("files")
	p.update(1, 3, "a.json")
	if line := strings.TrimSpace(buf.String()); !strings.Contains(line, " 33% 1 of 3 files (a.json)") {
		t.Errorf("got %q, want the share and counts of files", line)
	}
	if strings.Contains(buf.String(), " B") {
		t.Errorf("a count of files is shown as bytes: %q", buf.String())
	}
}

func TestProgressBarFitsWidth(t *testing.T) {
	p := &progress{label: "restore", width: 60}
	for _, done := range []int64{0, 512, 1 << 20} {
		s := p.bar(done, 1<<20, "database")
		if len(s) != 59 {
			t.Errorf("bar at %d is %d wide, want 59: %q", done, len(s), s)
		}
	}
	if s := p.bar(1<<20, 1<<20, "x"); !strings.Contains(s, "100%") || strings.Contains(s, "-]") {
		t.Errorf("full bar %q", s)
	}
}

func TestPrintStatusOneScreen(t *testing.T) {
	now := time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)
	st := gateway.Status{
		Site: "site-7f3a", TunnelState: "connected", TunnelTransport: "quic", TunnelConnections: 1, TunnelConnected: true,
		Mirror:  cache.Status{TimestampVersion: 12, Targets: 4, LastRefresh: now.Add(-3 * time.Minute), TimestampExpires: now.Add(30 * time.Hour)},
		Devices: 20, DevicesByState: map[string]int{"active": 18, "stale": 2}, AuditHead: 1234, ActiveRollouts: 1,
		Alerts: []gateway.StatusAlert{{Level: "warning", Message: "Rollout R1 is halted"}}, Time: now,
	}
	var buf bytes.Buffer
	if err := printStatus(&buf, st); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"site site-7f3a", "connected over quic", "version 12, 4 targets, refreshed 3m0s ago, expires in 30h0m0s", "20 (active 18, stale 2)", "1234 records", "warning  Rollout R1 is halted"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 24 {
		t.Errorf("status is %d lines, want one screen (at most 24)", n)
	}
}
