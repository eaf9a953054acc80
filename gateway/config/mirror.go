package config

import (
	"fmt"
	"time"
)

// Mirror configures the TUF mirror: how long superseded metadata and
// targets stay servable, when the expiry alert fires, what devices may
// still download after upstream metadata expired, and how upstream fills
// of targets give up.
type Mirror struct {
	// Grace is how long older consistent metadata versions and targets
	// that a newer state dropped stay servable to devices mid-update.
	Grace Duration `toml:"grace"`
	// ExpiryWarning is how long before the earliest trusted expiry the
	// gateway raises its alert (metric, log, status).
	ExpiryWarning Duration `toml:"expiry_warning"`
	// ExpiredDownloadGrace is how long after that expiry releases of the
	// last verified state stay downloadable; "0s" stops them at once.
	ExpiredDownloadGrace Duration `toml:"expired_download_grace"`
	// StallTimeout abandons an upstream target body that stays below the
	// minimum rate for this long; the fill then resumes with Range.
	StallTimeout Duration `toml:"stall_timeout"`
	// FillAttempts bounds the upstream requests of one target fill.
	FillAttempts int `toml:"fill_attempts"`
}

func (m Mirror) validate() error {
	checks := []struct {
		key string
		v   Duration
		min time.Duration
	}{
		{"mirror.grace", m.Grace, time.Minute},
		{"mirror.expiry_warning", m.ExpiryWarning, time.Minute},
		{"mirror.expired_download_grace", m.ExpiredDownloadGrace, 0},
		{"mirror.stall_timeout", m.StallTimeout, time.Second},
	}
	for _, c := range checks {
		if time.Duration(c.v) < c.min {
			return fmt.Errorf("%s %s is below %s: raise it", c.key, time.Duration(c.v), c.min)
		}
	}
	if m.FillAttempts < 1 || m.FillAttempts > 100 {
		return fmt.Errorf("mirror.fill_attempts %d must be between 1 and 100", m.FillAttempts)
	}
	return nil
}
