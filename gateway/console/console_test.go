package console

import (
	"strings"
	"testing"
	"time"
)

func TestSafeNext(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/console/devices?state=stale", "/console/devices?state=stale"},
		{"", "/console/"},
		{"https://evil.example/console/", "/console/"},
		{"//evil.example/console/", "/console/"},
		{"/console/\\evil", "/console/"},
		{"/metrics", "/console/"},
	}
	for _, tc := range cases {
		if got := safeNext(tc.in); got != tc.want {
			t.Errorf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSessionsExpireAndEnd(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, func() time.Time { return now })
	id, _ := s.create(Actor{TokenID: "aaa", Name: "a", Role: RoleViewer})
	other, _ := s.create(Actor{TokenID: "bbb", Name: "b", Role: RoleAdmin})
	if _, ok := s.get(id); !ok {
		t.Fatal("new session not found")
	}
	now = now.Add(time.Hour)
	if _, ok := s.get(id); ok {
		t.Error("session still valid at the end of its lifetime")
	}
	now = now.Add(-30 * time.Minute)
	s.dropToken("bbb")
	if _, ok := s.get(other); ok {
		t.Error("session of a revoked token still valid")
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		have, need Role
		want       bool
	}{
		{RoleViewer, RoleViewer, true},
		{RoleViewer, RoleApprover, false},
		{RoleOperator, RoleApprover, false},
		{RoleApprover, RoleOperator, true},
		{RoleAdmin, RoleApprover, true},
	}
	for _, tc := range cases {
		if got := tc.have.Allows(tc.need); got != tc.want {
			t.Errorf("%s allows %s = %t, want %t", tc.have, tc.need, got, tc.want)
		}
	}
	if _, err := ParseRole("root"); err == nil || !strings.Contains(err.Error(), "viewer, operator, approver or admin") {
		t.Errorf("ParseRole(root) = %v, want an error listing the roles", err)
	}
}

func TestSegmentsCoverTheWave(t *testing.T) {
	w := WaveProgress{Devices: 8, Updated: 3, Installed: 1, Offered: 2, Failed: 1, Waiting: 1}
	segs := segments(w)
	total := 0.0
	for _, s := range segs {
		total += s.W
	}
	if total < 99.99 || total > 100.01 {
		t.Errorf("segments cover %v%% of the bar, want 100%%", total)
	}
	if segs[0].Class != "updated" || segs[0].W != 37.5 {
		t.Errorf("first segment %+v, want updated at 37.5%%", segs[0])
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"2026-03-01", "2026-03-01T08:30", "2026-03-01T08:30:00Z", "yesterday", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen(s, time.UTC)
		if err == nil && strings.TrimSpace(s) != "" && got.IsZero() && !strings.HasPrefix(strings.TrimSpace(s), "0001-01-01") {
			t.Fatalf("parseWhen(%q) = zero time without an error", s)
		}
	})
}
