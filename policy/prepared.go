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

	// Messages that depend on the release and one device field, built
	// once per distinct value of that field.
	msgs [messageKinds]messageCache
}

type messageKind uint8

const (
	msgModel    messageKind = iota // keyed by model
	msgHardware                    // keyed by hardware revision
	msgUpgrade                     // keyed by installed version
	msgRollback
	msgDowngrade
	msgNotApproved // keyed by group name
	messageKinds
)

// maxCachedMessages bounds each message cache. Past it, messages are
// built per decision.
const maxCachedMessages = 1024

// messageCache maps one device value to a message. Reads take no lock,
// because writers replace the whole map.
type messageCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]string]
}

func (c *messageCache) get(key string, build func() string) string {
	if m := c.m.Load(); m != nil {
		if msg, ok := (*m)[key]; ok {
			return msg
		}
	}
	msg := build()
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCachedMessages {
		return msg
	}
	next := make(map[string]string, 8)
	if old != nil {
		next = maps.Clone(*old)
	}
	next[key] = msg
	c.m.Store(&next)
	return msg
}

// message returns the message of kind for the device value a.
func (pr *preparedRelease) message(kind messageKind, a string) string {
	return pr.msgs[kind].get(a, func() string { return pr.buildMessage(kind, a) })
}

func (pr *preparedRelease) buildMessage(kind messageKind, a string) string {
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
	case msgNotApproved:
		if a == "" {
			return "not approved: release " + r.Target + " awaits approval"
		}
		return "not approved: release " + r.Target + " awaits approval for group " + a
	}
	return ""
}

// unmet returns "" when installed meets the requirement, or else the
// reason, caching both by installed version.
func (req *preparedRequirement) unmet(installed string) string {
	return req.results.get(installed, func() string {
		if v, _ := ParseVersion(installed); req.c.Check(v) {
			return ""
		}
		return "component " + req.name + " " + installed + " is installed, the release requires " + req.expr
	})
}

type preparedRequirement struct {
	name, expr string
	c          Constraint
	err        error
	results    *messageCache // by installed version
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
		pr.reqs = append(pr.reqs, preparedRequirement{name: name, expr: expr, c: c, err: err, results: &messageCache{}})
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
