package policy

import (
	"sync"
)

// Config is the hospital's policy configuration. The zero value is usable
// and gives the defaults described in the package documentation.
type Config struct {
}

// Evaluator decides, for a device and a release, whether the release may
// be offered now. It is safe for concurrent use.
type Evaluator struct {
	cfg   Config
	clock Clock

	constraints sync.Map // constraint text -> constraintEntry
}

type constraintEntry struct {
	c   Constraint
	err error
}

// NewEvaluator validates cfg and returns an evaluator that reads time
// from clock. It returns an error naming the first invalid setting.
func NewEvaluator(cfg Config, clock Clock) (*Evaluator, error) {
	if clock == nil {
		clock = untrustedClock{}
	}
	return &Evaluator{cfg: cfg, clock: clock}, nil
}

// constraint parses expr once and caches the result, because a release's
// requirements are evaluated for every device.
func (e *Evaluator) constraint(expr string) (Constraint, error) {
	if v, ok := e.constraints.Load(expr); ok {
		ce := v.(constraintEntry)
		return ce.c, ce.err
	}
	c, err := ParseConstraint(expr)
	e.constraints.Store(expr, constraintEntry{c, err})
	return c, err
}

// Decide evaluates d against r at the clock's current time.
func (e *Evaluator) Decide(d Device, r Release) Decision {
	now := e.clock.Now()
	dec := Decision{Device: d.Key(), Target: r.Target, At: now}
	var rs reasons
	e.checkCompatibility(&rs, d, r)
	dec.Reasons = rs.ordered()
	dec.Offer = !rs.blocked()
	dec.Download = dec.Offer
	return dec
}

// reasons collects blocking and passing reasons separately so that
// blocking ones come first in the decision.
type reasons struct {
	blocks []Reason
	passes []Reason
}

func (rs *reasons) block(code, msg string) {
	rs.blocks = append(rs.blocks, Reason{Code: code, Message: msg, Blocking: true})
}

func (rs *reasons) pass(code, msg string) {
	rs.passes = append(rs.passes, Reason{Code: code, Message: msg})
}

func (rs *reasons) blocked() bool { return len(rs.blocks) > 0 }

func (rs *reasons) ordered() []Reason {
	out := make([]Reason, 0, len(rs.blocks)+len(rs.passes))
	out = append(out, rs.blocks...)
	return append(out, rs.passes...)
}
