package policy

import "time"

// FixedClock is a Clock that always returns T, for tests and for
// `wardgate explain --at`.
type FixedClock struct {
	T         time.Time
	Untrusted bool
}

// Now returns c.T.
func (c FixedClock) Now() time.Time { return c.T }

// Trusted reports !c.Untrusted.
func (c FixedClock) Trusted() bool { return !c.Untrusted }

// untrustedClock replaces a nil Clock. It returns the system time
// but never claims to be trusted, so windows stay closed.
type untrustedClock struct{}

func (untrustedClock) Now() time.Time { return time.Now() }
func (untrustedClock) Trusted() bool  { return false }
