package policy

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"time"
)

// Plan describes how a rollout proceeds. The zero Plan is a canary wave of 10%
// of the group (at least one device), then the rest. It halts at the
// first failure, and a device that does not check in on the new version
// within DefaultDeviceTimeout fails.
type Plan struct {
	// Waves are the sizes of the waves before the final one, which takes
	// every device left. Empty means one canary wave of 10%.
	Waves []WaveSize `json:"waves,omitempty"`
	// FailureThreshold halts the rollout when this many devices have
	// failed since it started or last resumed, and 0 means 1.
	FailureThreshold int `json:"failure_threshold,omitempty"`
	// FailurePercent, when set (1-100), also halts the rollout when at
	// least this percentage of the devices offered so far have failed.
	FailurePercent int `json:"failure_percent,omitempty"`
	// DeviceTimeout is how long an offered device has to check in
	// running the new version before it counts as failed, and 0 means
	// DefaultDeviceTimeout.
	DeviceTimeout time.Duration `json:"device_timeout,omitempty"`
}

// WaveSize is the size of one wave: either a device count or a
// percentage of the group's devices at start.
type WaveSize struct {
	Count   int `json:"count,omitempty"`
	Percent int `json:"percent,omitempty"`
}

// DefaultDeviceTimeout gives a device on a weekly maintenance window one
// full week plus a day to install and check in.
const DefaultDeviceTimeout = 8 * 24 * time.Hour

func (p Plan) validate() error {
	for i, w := range p.Waves {
		switch {
		case w.Count < 0 || w.Percent < 0:
			return fmt.Errorf("wave %d: sizes may not be negative", i+1)
		case (w.Count > 0) == (w.Percent > 0):
			return fmt.Errorf("wave %d: set either a count or a percentage", i+1)
		case w.Percent > 100:
			return fmt.Errorf("wave %d: percentage %d is over 100", i+1, w.Percent)
		}
	}
	switch {
	case p.FailureThreshold < 0:
		return fmt.Errorf("failure threshold %d is negative: use 0 for the default of 1", p.FailureThreshold)
	case p.FailurePercent < 0 || p.FailurePercent > 100:
		return fmt.Errorf("failure percentage %d is outside 0-100", p.FailurePercent)
	case p.DeviceTimeout < 0:
		return fmt.Errorf("device timeout %s is negative", p.DeviceTimeout)
	}
	return nil
}

func (p Plan) waves() []WaveSize {
	if len(p.Waves) == 0 {
		return []WaveSize{{Percent: 10}}
	}
	return p.Waves
}

func (p Plan) threshold() int {
	if p.FailureThreshold <= 0 {
		return 1
	}
	return p.FailureThreshold
}

func (p Plan) timeout() time.Duration {
	if p.DeviceTimeout <= 0 {
		return DefaultDeviceTimeout
	}
	return p.DeviceTimeout
}

// assignWaves splits members into waves, in an order fixed by a hash of
// the rollout id and device key, so canaries are spread over the group
// and the same inputs always give the same waves. It returns each
// device's wave and the number of waves.
func assignWaves(id string, members []string, p Plan) (map[string]int, int) {
	order := append([]string(nil), members...)
	rank := make(map[string][32]byte, len(order))
	for _, m := range order {
		rank[m] = sha256.Sum256([]byte(id + "\x00" + m))
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := rank[order[i]], rank[order[j]]
		if a != b {
			return string(a[:]) < string(b[:])
		}
		return order[i] < order[j]
	})
	n := len(order)
	out := make(map[string]int, n)
	next, wave := 0, 0
	for _, w := range p.waves() {
		if next >= n {
			break
		}
		size := w.Count
		if w.Percent > 0 {
			size = max(1, (n*w.Percent+99)/100)
		}
		end := min(n, next+size)
		for ; next < end; next++ {
			out[order[next]] = wave
		}
		wave++
	}
	if next < n {
		for ; next < n; next++ {
			out[order[next]] = wave
		}
		wave++
	}
	return out, max(wave, 1)
}
