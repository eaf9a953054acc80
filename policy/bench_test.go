package policy

import (
	"crypto/ed25519"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// benchFleet builds a site of devices and a catalogue of releases that
// exercise every check: groups with weekly, cron and one-time windows,
// blackouts, a signed entitlements document, approval rules and a
// running rollout.
func benchFleet(b *testing.B, now time.Time, devices, releases int) (*Evaluator, []Device, []Release) {
	b.Helper()
	pub, priv := testKey(b)
	models := []string{"IP-300", "IP-310", "IP-320", "MON-9", "MON-10", "VENT-2", "VENT-3", "SYR-1", "SYR-2", "ECG-5"}
	products := map[string]string{"IP": "infusion-pump", "MO": "monitor", "VE": "ventilator", "SY": "syringe-pump", "EC": "ecg"}
	departments := []string{"ICU", "OR", "ER", "Cardiology", "Oncology", "Pediatrics"}
	cfg := Config{
		Groups: []Group{
			{Name: "or-override", Devices: []string{"Acme/SN-00007", "Acme/SN-00042"}, Windows: []string{"2026-03-14 02:00-06:00 Europe/Berlin"}},
			{Name: "icu", Departments: []string{"ICU"}, Windows: []string{"Tue 02:00-04:00 Europe/Berlin", "Sat 22:00-Sun 04:00 Europe/Berlin"}},
			{Name: "or", Departments: []string{"OR"}, Windows: []string{"cron 0 1 * * 1-5 3h Europe/Berlin"}},
			{Name: "er", Departments: []string{"ER"}, Windows: []string{"daily 03:00-04:30 Europe/Berlin"}},
			{Name: "ventilators", DeviceClasses: []string{"ventilator"}, Windows: []string{"Sun 01:00-05:00 Europe/Berlin"}, Blackouts: []string{"2026-04-03..2026-04-06 Europe/Berlin"}},
			{Name: "site", Blackouts: []string{"2026-12-22..2026-12-26 Europe/Berlin", "2026-12-31 Europe/Berlin"}},
		},
		EntitlementKeys: []ed25519.PublicKey{pub},
		ApprovalRules: []ApprovalRule{
			{Name: "security fixes", SecurityFixesOnly: true},
			{Name: "stable for the wards", Groups: []string{"icu", "er", "ventilators", "site"}, Channels: []string{"stable"}},
		},
	}
	e, err := NewEvaluator(cfg, FixedClock{T: now})
	if err != nil {
		b.Fatal(err)
	}
	doc := EntitlementsDocument{Version: 1, Manufacturer: "Acme Medical", Issued: now.Add(-24 * time.Hour), Expires: now.Add(365 * 24 * time.Hour)}
	for i, p := range []string{"infusion-pump", "monitor", "ventilator", "syringe-pump"} {
		doc.Entitlements = append(doc.Entitlements, Entitlement{
			ID: fmt.Sprintf("C-%d", 1000+i), Site: "site-1", Products: []string{p}, Channels: []string{"stable", "lts"},
			Versions: ">=1.0.0, <9", NotAfter: now.Add(200 * 24 * time.Hour), Grace: "30d",
		})
	}
	data, err := SignEntitlements(doc, priv)
	if err != nil {
		b.Fatal(err)
	}
	ents, err := ParseEntitlements(data)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.SetEntitlements(ents); err != nil {
		b.Fatal(err)
	}
	e.SetApprovals([]Approval{{Target: "infusion-pump/3.4.0/image.bin", Group: "or", By: "token:it-7", At: now}})

	fleet := make([]Device, devices)
	for i := range fleet {
		model := models[i%len(models)]
		fleet[i] = Device{
			Manufacturer: "Acme", Serial: fmt.Sprintf("SN-%05d", i), Model: model, HardwareRevision: string(rune('A' + i%4)),
			Version:    fmt.Sprintf("%d.%d.%d", 2+i%3, i%5, i%7),
			Components: map[string]string{"bootloader": fmt.Sprintf("2.%d.0", i%4), "radio": fmt.Sprintf("1.%d", i%3)},
			VLAN:       fmt.Sprint(100 + i%8), Department: departments[i%len(departments)], DeviceClass: products[model[:2]],
			Site: "site-1", InClinicalUse: i%11 == 0,
		}
	}
	catalogue := make([]Release, releases)
	for i := range catalogue {
		model := models[i%len(models)]
		product := products[model[:2]]
		version := fmt.Sprintf("%d.%d.0", 2+i%4, i%6)
		channel := []string{"stable", "stable", "lts", "beta"}[i%4]
		catalogue[i] = Release{
			Target: fmt.Sprintf("%s/%s/%s.bin", product, version, model), Product: product, Version: version, Channel: channel,
			Models: []string{model, models[(i+1)%len(models)]}, HardwareRevisions: []string{"B", "C", "D"},
			Requires:    map[string]string{"bootloader": ">=2.1.0, <3", "radio": "^1.1"},
			SecurityFix: i%9 == 0, AllowRollback: i%13 == 0, InstallDuration: time.Duration(10+i%50) * time.Minute,
		}
	}
	// A rollout of the first release to the ICU, with its canary wave open.
	var icu []string
	for _, d := range fleet {
		if d.Department == "ICU" {
			icu = append(icu, d.Key())
		}
	}
	ro, err := NewRollout("icu-1", catalogue[0].Target, catalogue[0].Version, "icu", icu, Plan{}, now)
	if err != nil {
		b.Fatal(err)
	}
	ro, _ = ro.Apply(Event{Kind: EventStart, At: now})
	e.PutRollout(ro)
	return e, fleet, catalogue
}

// steppingClock advances by step on every reading, like a real clock
// seen by a busy gateway, so results cached for one second expire.
type steppingClock struct {
	t    time.Time
	step time.Duration
}

func (c *steppingClock) Now() time.Time { c.t = c.t.Add(c.step); return c.t }
func (c *steppingClock) Trusted() bool  { return true }

// processCPU returns the CPU time this process has used, so the figures
// stay meaningful when other work shares the machine.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchmarkFleet(b *testing.B, now time.Time, step time.Duration) {
	e, fleet, catalogue := benchFleet(b, now, 10000, 50)
	if step > 0 {
		e.clock = &steppingClock{t: now, step: step}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	offers := 0
	for b.Loop() {
		offers = 0
		for i := range fleet {
			for j := range catalogue {
				if e.Decide(fleet[i], catalogue[j]).Offer {
					offers++
				}
			}
		}
	}
	decisions := float64(b.N) * float64(len(fleet)*len(catalogue))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/decisions, "ns/decision")
	b.ReportMetric(float64(processCPU(b)-cpu)/decisions, "cpu-ns/decision")
	b.ReportMetric(float64(offers), "offers")
}

// BenchmarkDecideFleetClosed decides 10,000 devices x 50 releases at a
// time when most windows are closed, so most decisions search for the
// next opening.
func BenchmarkDecideFleetClosed(b *testing.B) {
	benchmarkFleet(b, time.Date(2026, 3, 11, 14, 0, 0, 0, time.UTC), 0)
}

// BenchmarkDecideFleetClock decides the same fleet with a clock that
// advances one millisecond per decision, so about 500 seconds pass per
// run and cached window results expire every second.
func BenchmarkDecideFleetClock(b *testing.B) {
	benchmarkFleet(b, time.Date(2026, 3, 11, 14, 0, 0, 0, time.UTC), time.Millisecond)
}

// BenchmarkDecideFleetOpen decides the same fleet on a Tuesday at 02:30
// Berlin, when the ICU window is open.
func BenchmarkDecideFleetOpen(b *testing.B) {
	benchmarkFleet(b, time.Date(2026, 3, 10, 1, 30, 0, 0, time.UTC), 0)
}

// BenchmarkDecideParallel measures one decision under concurrent use.
func BenchmarkDecideParallel(b *testing.B) {
	e, fleet, catalogue := benchFleet(b, time.Date(2026, 3, 11, 14, 0, 0, 0, time.UTC), 1000, 50)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Decide(fleet[i%len(fleet)], catalogue[i%len(catalogue)])
			i++
		}
	})
}

func BenchmarkScheduleStatus(b *testing.B) {
	w, err := ParseWindow("Tue 02:00-04:00 Europe/Berlin")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 3, 11, 14, 0, 0, 0, time.UTC)
	b.Run("cached", func(b *testing.B) {
		s := NewSchedule([]Window{w}, nil)
		for b.Loop() {
			s.Status(now)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			NewSchedule([]Window{w}, nil).Status(now)
		}
	})
}
