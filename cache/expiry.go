package cache

import (
	"errors"
	"fmt"
	"time"
)

// Freshness states of the mirror; see the package documentation.
const (
	FreshnessNone     = "none"
	FreshnessFresh    = "fresh"
	FreshnessExpiring = "expiring"
	FreshnessExpired  = "expired"
)

// ErrExpired is returned by OfferAllowed and DownloadAllowed while the
// trusted metadata has expired; the message says since when and why.
var ErrExpired = errors.New("upstream TUF metadata has expired")

// earliest returns the first-expiring trusted role.
func earliest(exp []roleExpiry) (roleExpiry, bool) {
	var first roleExpiry
	for i, e := range exp {
		if i == 0 || e.Expires.Before(first.Expires) {
			first = e
		}
	}
	return first, len(exp) > 0
}

// applyFreshness fills the freshness fields of st for the time now.
func (m *Mirror) applyFreshness(st *Status, exp []roleExpiry, now time.Time) {
	first, ok := earliest(exp)
	st.OffersAllowed = true
	st.OfferBlockedReason = ""
	st.DownloadsUntil = time.Time{}
	if !ok {
		st.Freshness = FreshnessNone
		st.OffersAllowed = false
		st.OfferBlockedReason = "the gateway has no verified TUF state yet"
		return
	}
	st.Expires, st.ExpiringRole = first.Expires, first.Role
	switch {
	case !now.Before(first.Expires):
		st.Freshness = FreshnessExpired
		st.OffersAllowed = false
		st.OfferBlockedReason = fmt.Sprintf("the manufacturer's signed %s metadata expired at %s and the gateway could not refresh it; "+
			"no new release is offered until a refresh succeeds", first.Role, first.Expires.UTC().Format(time.RFC3339))
		if m.opts.ExpiredDownloadGrace > 0 {
			st.DownloadsUntil = first.Expires.Add(m.opts.ExpiredDownloadGrace)
		}
		st.Alert = st.OfferBlockedReason
		if st.LastError != "" {
			st.Alert += " (last refresh error: " + st.LastError + ")"
		}
	case now.After(first.Expires.Add(-m.opts.ExpiryWarning)):
		st.Freshness = FreshnessExpiring
		st.Alert = fmt.Sprintf("the manufacturer's signed %s metadata expires at %s, in %s, and has not been refreshed",
			first.Role, first.Expires.UTC().Format(time.RFC3339), first.Expires.Sub(now).Round(time.Second))
		if st.LastError != "" {
			st.Alert += " (last refresh error: " + st.LastError + ")"
		}
	default:
		st.Freshness = FreshnessFresh
	}
}

// OfferAllowed returns nil while releases may be offered to devices, and
// an error wrapping ErrExpired with the reason while the trusted metadata
// has expired (or no verified state exists yet).
func (m *Mirror) OfferAllowed() error {
	st := m.Status()
	if st.OffersAllowed {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrExpired, st.OfferBlockedReason)
}

// DownloadAllowed returns nil while t may be downloaded through the device
// API. While the metadata has expired, releases of the last verified state
// stay downloadable for ExpiredDownloadGrace after the expiry, so installs
// offered before it can finish; after that the error says why.
func (m *Mirror) DownloadAllowed(t Target) error {
	st := m.Status()
	if st.Freshness != FreshnessExpired {
		return nil
	}
	if now := m.opts.Now(); now.Before(st.DownloadsUntil) {
		return nil
	}
	return fmt.Errorf("%w: %s; downloads of %s stopped at the end of the %s grace period",
		ErrExpired, st.OfferBlockedReason, t.Path, m.opts.ExpiredDownloadGrace)
}

// checkFreshness updates the alert gauge and logs a change of freshness.
func (m *Mirror) checkFreshness() {
	st := m.Status()
	alert := 0.0
	if st.Freshness == FreshnessExpiring || st.Freshness == FreshnessExpired {
		alert = 1
	}
	m.metrics.alert.Set(alert)
	now := m.opts.Now()
	m.mu.Lock()
	changed := m.alerted != st.Freshness
	remind := now.Sub(m.alertedAt) >= alertReminder
	if changed || remind {
		m.alerted, m.alertedAt = st.Freshness, now
	}
	m.mu.Unlock()
	switch {
	case st.Freshness == FreshnessExpired && (changed || remind):
		m.log.Error("TUF metadata expired: new offers stopped", "role", st.ExpiringRole, "expired", st.Expires, "downloads_until", st.DownloadsUntil, "last_error", st.LastError)
	case st.Freshness == FreshnessExpiring && (changed || remind):
		m.log.Warn("TUF metadata expires soon and has not been refreshed", "role", st.ExpiringRole, "expires", st.Expires, "last_error", st.LastError)
	case changed && st.Freshness == FreshnessFresh:
		m.log.Info("TUF metadata fresh", "expires", st.Expires)
	}
}

// alertReminder is how often an expiring or expired state is logged
// again while it lasts.
const alertReminder = time.Hour
