package gateway

import (
	"testing"
	"time"
)

func TestFailLimiterOnePerMinute(t *testing.T) {
	var l failLimiter
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	steps := []struct {
		name    string
		remote  string
		at      time.Duration
		want    bool
		skipped int
	}{
		{"first failure", "10.0.0.1:5000", 0, true, 0},
		{"same host, other port", "10.0.0.1:5001", time.Second, false, 0},
		{"again within the minute", "10.0.0.1:5002", 30 * time.Second, false, 0},
		{"other host", "10.0.0.2:5000", 31 * time.Second, true, 0},
		{"after a minute", "10.0.0.1:5003", 61 * time.Second, true, 2},
	}
	for _, st := range steps {
		ok, skipped := l.allow(st.remote, t0.Add(st.at))
		if ok != st.want || skipped != st.skipped {
			t.Errorf("%s: allow = %t, %d; want %t, %d", st.name, ok, skipped, st.want, st.skipped)
		}
	}
}
