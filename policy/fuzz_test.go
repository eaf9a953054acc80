package policy

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

var fuzzNow = time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{
		"Tue 02:00-04:00 Europe/Berlin", "Mon-Fri 22:00-02:00 America/New_York", "Mon,Wed,Sat 01:30-03:00 UTC",
		"daily 03:00-04:00 Australia/Sydney", "Sat 22:00-Mon 06:00 Europe/Berlin", "Sun 02:00-02:30 Australia/Lord_Howe",
		"cron 0 2 * * 2 2h Europe/Berlin", `cron "30 1 1-7 * SUN" 90m UTC`, "cron @daily 1d12h UTC", "cron */15 0-6/2 29 2 1-5 15m UTC",
		"2026-03-14 02:00-06:00 Europe/Berlin", "2026-03-14 22:00 - 2026-03-16 06:00 UTC", "Tue 24:00-02:00 UTC", "", "cron", "-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		w, err := ParseWindow(spec)
		if err != nil {
			if !strings.Contains(err.Error(), "parsing window") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		if w.length <= 0 || w.length > int64(MaxWindowLength/time.Second) {
			t.Fatalf("%q: got length %ds, want 1s to 7 days", spec, w.length)
		}
		if _, err := ParseWindow(w.String()); err != nil {
			t.Fatalf("%q parses, but its String %q does not: %v", spec, w.String(), err)
		}
		s := NewSchedule([]Window{w}, nil)
		st := s.Status(fuzzNow)
		if st.Open && (fuzzNow.Before(st.Current.Start) || !fuzzNow.Before(st.Current.End)) {
			t.Fatalf("%q: open, but the current period %s-%s does not contain now", spec, st.Current.Start, st.Current.End)
		}
		if st.HasNext && !st.Next.Start.After(fuzzNow) {
			t.Fatalf("%q: next opening %s is not after now", spec, st.Next.Start)
		}
		if st.HasNext && !NewSchedule([]Window{w}, nil).Status(st.Next.Start).Open {
			t.Fatalf("%q: closed at its next opening %s", spec, st.Next.Start)
		}
	})
}

func FuzzParseBlackout(f *testing.F) {
	for _, s := range []string{"2026-12-24 Europe/Berlin", "2026-12-24..2026-12-26 Europe/Berlin", "2026-12-24 18:00-2026-12-26 08:00 UTC", "2026-09-06 America/Santiago", ".. UTC", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		b, err := ParseBlackout(spec)
		if err != nil {
			return
		}
		if !b.End().After(b.Start()) {
			t.Fatalf("%q: blackout %s-%s is empty", spec, b.Start(), b.End())
		}
		s := NewSchedule(nil, []Blackout{b})
		if s.Status(b.Start()).Open || !s.Status(b.End()).Open {
			t.Fatalf("%q: schedule does not close exactly for the blackout", spec)
		}
	})
}

func FuzzParseEntitlements(f *testing.F) {
	pub, priv := testKey(f)
	f.Add(signedDocument(f, priv))
	f.Add(unsignedDocument(f))
	f.Add([]byte(`{"signed":{"type":"wardgate-entitlements","version":1,"expires":"2027-01-01T00:00:00Z","entitlements":[{"id":"a","site":"*","products":["p"],"versions":"^1.2 || ~0.4","grace":"1d2h"}]},"signatures":[]}`))
	f.Add([]byte(`{"signed":{},"signatures":[{"keyid":"00","sig":""}]}`))
	f.Add([]byte(`[]`))
	device, release := baseDevice(), baseRelease()
	rv, _ := ParseVersion(release.Version)
	f.Fuzz(func(t *testing.T, data []byte) {
		ents, err := ParseEntitlements(data)
		if err != nil {
			return
		}
		_ = ents.Verify([]ed25519.PublicKey{pub}, false)
		_ = ents.check(&device, &release, rv, fuzzNow)
		// A parsed document survives a re-encode and re-parse.
		again, err := SignEntitlements(ents.Document(), priv)
		if err != nil {
			t.Fatalf("re-encoding a parsed document: %v", err)
		}
		back, err := ParseEntitlements(again)
		if err != nil {
			t.Fatalf("re-parsing a re-encoded document: %v", err)
		}
		if err := back.Verify([]ed25519.PublicKey{pub}, true); err != nil {
			t.Fatalf("verifying a freshly signed document: %v", err)
		}
	})
}

func FuzzVersionsAndConstraints(f *testing.F) {
	for _, s := range [][2]string{{"1.2.3", ">=1.2.0, <2"}, {"v3.2", "^3.1"}, {"1.0.0-rc.1", "~1.0"}, {"R12b", "R12a || R13"}, {"2024.06 build 7", "*"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, version, constraint string) {
		c := CompareVersions(version, constraint)
		if back := CompareVersions(constraint, version); back != -c {
			t.Fatalf("CompareVersions(%q, %q) = %d but reversed = %d", version, constraint, c, back)
		}
		if CompareVersions(version, version) != 0 {
			t.Fatalf("CompareVersions(%q, itself) is not 0", version)
		}
		if cons, err := ParseConstraint(constraint); err == nil {
			if v, err := ParseVersion(version); err == nil {
				_ = cons.Check(v)
			}
		}
	})
}
