package policy

import (
	"slices"
	"time"
)

// entitlementResult is the outcome of checking one device and release
// against an entitlements document.
type entitlementResult struct {
	entitled bool
	code     string
	message  string
}

// entitlement failure stages, in the order rules are checked. A rule
// that fails later matched more of the request, so its failure explains
// the refusal best.
const (
	failSite = iota
	failProduct
	failModel
	failSerial
	failChannel
	failVersion
	failTime
	matched
)

// check decides whether d may receive r at now under the document.
func (e *Entitlements) check(d *Device, r *Release, rv Version, now time.Time) entitlementResult {
	if !now.Before(e.doc.Expires) {
		return entitlementResult{code: CodeEntitlementsInvalid,
			message: "not entitled: the entitlements document (version " + itoa(e.doc.Version) + ") expired " + dateText(e.doc.Expires) + "; the gateway needs a fresh one from the manufacturer"}
	}
	best, bestStage := -1, -1
	for i := range e.rules {
		stage := e.rules[i].stage(d, r, rv, now)
		if stage == matched {
			return e.rules[i].grant(now)
		}
		if stage > bestStage {
			best, bestStage = i, stage
		}
	}
	res := entitlementResult{code: CodeNotEntitled}
	var rule *entitlementRule
	if best >= 0 {
		rule = &e.rules[best]
	}
	switch {
	case bestStage <= failSite:
		res.message = "not entitled: site " + d.Site + " has no entitlement"
		if e.doc.Manufacturer != "" {
			res.message += " from " + e.doc.Manufacturer
		}
	case bestStage == failProduct:
		res.message = "not entitled: site " + d.Site + " is not entitled to product " + r.Product
	case bestStage == failModel:
		res.message = "not entitled: model " + d.Model + " is not covered by contract " + rule.ID
	case bestStage == failSerial:
		res.message = "not entitled: serial " + d.Serial + " is not covered by contract " + rule.ID
	case bestStage == failChannel:
		res.message = "not entitled: channel " + r.Channel + " is not covered by contract " + rule.ID
	case bestStage == failVersion:
		res.message = "not entitled: version " + r.Version + " is outside contract " + rule.ID + "'s range " + rule.Versions
	case !rule.NotBefore.IsZero() && now.Before(rule.NotBefore):
		res.message = "not entitled: contract " + rule.ID + " starts " + dateText(rule.NotBefore)
	case rule.grace > 0:
		res.message = "not entitled: contract " + rule.ID + " ended " + dateText(rule.NotAfter) + " and its grace period ended " + dateText(rule.NotAfter.Add(rule.grace))
	default:
		res.message = "not entitled: contract " + rule.ID + " ended " + dateText(rule.NotAfter)
	}
	return res
}

func (r *entitlementRule) stage(d *Device, rel *Release, rv Version, now time.Time) int {
	switch {
	case r.Site != "*" && r.Site != d.Site:
		return failSite
	case !slices.Contains(r.Products, rel.Product):
		return failProduct
	case len(r.Models) > 0 && !slices.Contains(r.Models, d.Model):
		return failModel
	case len(r.Serials) > 0 && !slices.Contains(r.Serials, d.Serial):
		return failSerial
	case len(r.Channels) > 0 && !slices.Contains(r.Channels, rel.Channel):
		return failChannel
	case r.Versions != "" && !r.versions.Check(rv):
		return failVersion
	case !r.NotBefore.IsZero() && now.Before(r.NotBefore):
		return failTime
	case !r.NotAfter.IsZero() && !now.Before(r.NotAfter.Add(r.grace)):
		return failTime
	}
	return matched
}

func (r *entitlementRule) grant(now time.Time) entitlementResult {
	if !r.NotAfter.IsZero() && !now.Before(r.NotAfter) {
		return entitlementResult{entitled: true, code: CodeEntitledGrace, message: r.graceMsg}
	}
	return entitlementResult{entitled: true, code: CodeEntitled, message: r.grantMsg}
}

// prepareMessages builds the messages for a granted entitlement once,
// because every decision for an entitled device repeats them.
func (r *entitlementRule) prepareMessages() {
	r.grantMsg = "entitled by contract " + r.ID
	if !r.NotAfter.IsZero() {
		r.grantMsg += " until " + dateText(r.NotAfter)
		r.graceMsg = "entitled in grace period: contract " + r.ID + " ended " + dateText(r.NotAfter) + "; updates stop " + dateText(r.NotAfter.Add(r.grace)) + " unless it is renewed"
	}
}

// dateText formats t as a UTC date, with the time of day when it is not
// midnight.
func dateText(t time.Time) string {
	t = t.UTC()
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 {
		return t.Format("2006-01-02")
	}
	return t.Format("2006-01-02 15:04 UTC")
}
