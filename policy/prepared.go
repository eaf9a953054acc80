package policy

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// preparedRelease holds what Decide derives from a release alone, so that
// deciding one release for thousands of devices parses and formats it
// once.
type preparedRelease struct {
	src        Release // the release this was prepared from, to detect changed metadata
	version    Version
	versionErr bool
	models     string // Models joined for messages
	hardware   string
	reqs       []preparedRequirement // sorted by component name

	// Messages that depend on the release and one or two device fields,
	// built once per distinct value.
	mu   sync.Mutex
	msgs atomic.Pointer[map[messageKey]string]
}

type messageKey struct {
	kind messageKind
	a, b string
}

type messageKind uint8

const (
	msgModel messageKind = iota
	msgHardware
	msgUpgrade
	msgRollback
	msgDowngrade
	msgUnmet
	msgPrerequisite // "" when the installed version b of component a meets the requirement
	msgNotApproved
)

// maxMessagesPerRelease bounds each release's message cache. Past it,
// messages are built per decision.
const maxMessagesPerRelease = 1024

// message returns the message of kind for device values a and b.
func (pr *preparedRelease) message(kind messageKind, a, b string) string {
	key := messageKey{kind, a, b}
	if m := pr.msgs.Load(); m != nil {
		if msg, ok := (*m)[key]; ok {
			return msg
		}
	}
	msg := pr.buildMessage(kind, a, b)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	old := pr.msgs.Load()
	if old != nil && len(*old) >= maxMessagesPerRelease {
		return msg
	}
	next := make(map[messageKey]string, 8)
	if old != nil {
		next = maps.Clone(*old)
	}
	next[key] = msg
	pr.msgs.Store(&next)
	return msg
}

func (pr *preparedRelease) buildMessage(kind messageKind, a, b string) string {
	r := &pr.src
	switch kind {
	case msgModel:
		return "model " + a + " is not supported by this release (supported: " + pr.models + ")"
	case msgHardware:
		return "hardware revision " + a + " is not supported (supported: " + pr.hardware + ")"
	case msgUpgrade:
		return "upgrade from " + a + " to " + r.Version
	case msgRollback:
		return "rollback from " + a + " to " + r.Version + " is allowed by the release"
	case msgDowngrade:
		return "installed version " + a + " is newer than " + r.Version + " and the release is not marked as an allowed rollback"
	case msgUnmet:
		return "component " + a + " " + b + " is installed, the release requires " + r.Requires[a]
	case msgPrerequisite:
		for i := range pr.reqs {
			if req := &pr.reqs[i]; req.name == a && req.err == nil {
				if v, _ := ParseVersion(b); req.c.Check(v) {
					return ""
				}
			}
		}
		return pr.buildMessage(msgUnmet, a, b)
	case msgNotApproved:
		if a == "" {
			return "not approved: release " + r.Target + " awaits approval"
		}
		return "not approved: release " + r.Target + " awaits approval for group " + a
	}
	return ""
}

type preparedRequirement struct {
	name, expr string
	c          Constraint
	err        error
}

// maxPreparedReleases bounds the cache, because a gateway caches far fewer
// releases than this.
const maxPreparedReleases = 4096

// prepare returns the prepared form of r from the cache, preparing and
// caching it when r is new or its metadata changed.
func (e *Evaluator) prepare(r *Release) *preparedRelease {
	if m := e.prepared.Load(); m != nil {
		if pr, ok := (*m)[r.Target]; ok && sameRelease(&pr.src, r) {
			return pr
		}
	}
	pr := e.newPrepared(*r)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.prepared.Load()
	next := map[string]*preparedRelease{}
	if old != nil {
		if len(*old) >= maxPreparedReleases {
			return pr
		}
		next = maps.Clone(*old)
	}
	next[r.Target] = pr
	e.prepared.Store(&next)
	return pr
}

func (e *Evaluator) newPrepared(r Release) *preparedRelease {
	pr := &preparedRelease{
		src:      cloneRelease(r),
		models:   strings.Join(r.Models, ", "),
		hardware: strings.Join(r.HardwareRevisions, ", "),
	}
	v, err := ParseVersion(r.Version)
	pr.version, pr.versionErr = v, err != nil
	for name, expr := range r.Requires {
		c, err := e.constraint(expr)
		pr.reqs = append(pr.reqs, preparedRequirement{name: name, expr: expr, c: c, err: err})
	}
	slices.SortFunc(pr.reqs, func(a, b preparedRequirement) int { return strings.Compare(a.name, b.name) })
	return pr
}

func cloneRelease(r Release) Release {
	r.Models = slices.Clone(r.Models)
	r.HardwareRevisions = slices.Clone(r.HardwareRevisions)
	r.Requires = maps.Clone(r.Requires)
	return r
}

func sameRelease(a, b *Release) bool {
	return a.Target == b.Target && a.Product == b.Product && a.Version == b.Version && a.Channel == b.Channel &&
		a.AllowRollback == b.AllowRollback && a.SecurityFix == b.SecurityFix && a.InstallDuration == b.InstallDuration &&
		slices.Equal(a.Models, b.Models) && slices.Equal(a.HardwareRevisions, b.HardwareRevisions) && maps.Equal(a.Requires, b.Requires)
}
