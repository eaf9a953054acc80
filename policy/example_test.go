package policy_test

import (
	"fmt"
	"time"

	"github.com/wardgate/wardgate/policy"
)

func ExampleEvaluator_Decide() {
	cfg := policy.Config{Groups: []policy.Group{
		{Name: "icu", Departments: []string{"ICU"}, Windows: []string{"Tue 02:00-04:00 Europe/Berlin"}},
	}}
	clock := policy.FixedClock{T: time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)}
	e, err := policy.NewEvaluator(cfg, clock)
	if err != nil {
		fmt.Println(err)
		return
	}
	device := policy.Device{
		Manufacturer: "Acme", Serial: "SN1", Model: "IP-300", HardwareRevision: "A",
		Version: "3.1.0", Department: "ICU", Site: "site-1",
	}
	release := policy.Release{
		Target: "infusion-pump/3.2.0/image.bin", Product: "infusion-pump", Version: "3.2.0", Channel: "stable",
		Models: []string{"IP-300"}, HardwareRevisions: []string{"B", "C"}, InstallDuration: 20 * time.Minute,
	}
	d := e.Decide(device, release)
	fmt.Println(d.Offer, d.Reasons[0].Code)
	fmt.Println(d.Reasons[0].Message)
	fmt.Println(d.Reasons[1].Message)
	// Output:
	// false hardware-unsupported
	// hardware revision A is not supported (supported: B, C)
	// window opens Tue 2026-03-17 02:00 Europe/Berlin (in 6d11h): Tue 02:00-04:00 Europe/Berlin (group icu)
}

func ExampleRollout_Apply() {
	start := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	r, err := policy.NewRollout("icu-3.2.0", "infusion-pump/3.2.0/image.bin", "3.2.0", "icu",
		[]string{"Acme/SN1", "Acme/SN2", "Acme/SN3"}, policy.Plan{Waves: []policy.WaveSize{{Count: 1}}}, start)
	if err != nil {
		fmt.Println(err)
		return
	}
	r, transitions := r.Apply(policy.Event{Kind: policy.EventStart, At: start})
	fmt.Println(r.State, len(transitions), "transitions")
	for key, d := range r.Devices {
		if d.State == policy.DeviceOffered {
			r, transitions = r.Apply(policy.Event{Kind: policy.EventCheckIn, At: start.Add(time.Hour), Device: key, Version: "3.2.0"})
		}
	}
	fmt.Println(r.State, "wave", r.Wave+1, "of", r.Waves, len(transitions), "transitions")
	// Output:
	// running 2 transitions
	// running wave 2 of 2 3 transitions
}
