package exposure

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/cache/sbom"
)

// Justifications that the evaluator derives itself, in OpenVEX's
// vocabulary. Justifications from VEX statements are passed through as the
// statement wrote them.
const (
	// JustificationComponentNotPresent: no component of the release is a
	// package that the advisory names.
	JustificationComponentNotPresent = "component_not_present"
	// JustificationVulnerableCodeNotPresent: the release contains the
	// package, but in a version outside every affected range.
	JustificationVulnerableCodeNotPresent = "vulnerable_code_not_present"
)

// Evaluator answers exposure questions from an index and an advisory
// store. It is safe for concurrent use.
type Evaluator struct {
	index      *Index
	advisories *advisory.Store
}

// NewEvaluator returns an evaluator over the index and the store.
func NewEvaluator(index *Index, advisories *advisory.Store) *Evaluator {
	return &Evaluator{index: index, advisories: advisories}
}

// ComponentFinding is the status of one component of a release for one
// vulnerability.
type ComponentFinding struct {
	Name    string          `json:"name"`
	Version string          `json:"version,omitempty"`
	PURL    string          `json:"purl,omitempty"`
	Package sbom.PackageKey `json:"package,omitzero"`
	Status  advisory.Status `json:"status"`
	// Justification is set for not affected: from a VEX statement, or
	// vulnerable_code_not_present for a version outside the OSV ranges.
	Justification string `json:"justification,omitempty"`
	// Detail explains the status: the OSV evaluation's reason or the VEX
	// statement's impact statement.
	Detail string `json:"detail,omitempty"`
	// Source is "osv:ID" or "vex:DOCUMENT" for what decided the status.
	Source string `json:"source"`
	// FixedIn is the version that fixes an affected component, or that a
	// fixed one has reached, where the OSV record names one.
	FixedIn string `json:"fixed_in,omitempty"`
	// Statement is the time of the deciding VEX statement.
	Statement time.Time `json:"statement_time,omitzero"`
}

// releaseFinding is the outcome for one release.
type releaseFinding struct {
	status        advisory.Status
	justification string
	detail        string
	source        string
	components    []ComponentFinding
}

// vexHit is a statement that applies to a release (comp < 0) or to one of
// its components.
type vexHit struct {
	st     advisory.Statement
	status advisory.Status
}

// evaluateGroup computes the status of every release that any record or
// statement of the group touches, or of release only when it is not nil.
// Releases missing from the result are not affected (component not
// present). The caller holds ix.mu for reading.
func (e *Evaluator) evaluateGroup(g advisory.Group, only *release) map[*release]*releaseFinding {
	ix := e.index
	osv := map[*release]map[int32]ComponentFinding{}
	type verdictKey struct {
		rec     string
		pkg     sbom.PackageKey
		distro  string
		version string
	}
	cache := map[verdictKey]advisory.Verdict{}
	for _, rec := range g.Records {
		for _, key := range rec.Packages() {
			for _, p := range ix.byPackage[key] {
				if only != nil && p.rel != only {
					continue
				}
				c := &p.rel.doc.Components[p.comp]
				vk := verdictKey{rec.ID, key, c.Identity.Distro, c.Version}
				v, seen := cache[vk]
				if !seen {
					var ok bool
					v, ok = rec.EvaluatePackage(key, c.Identity.Distro, c.Version)
					if !ok {
						v.Status = ""
					}
					cache[vk] = v
				}
				if v.Status == "" {
					continue
				}
				f := ComponentFinding{
					Name: c.Name, Version: c.Version, PURL: c.PURL, Package: c.Package,
					Status: v.Status, Detail: v.Reason, Source: "osv:" + rec.ID, FixedIn: v.FixedIn,
				}
				if v.Status == advisory.StatusNotAffected {
					f.Justification = JustificationVulnerableCodeNotPresent
				}
				m := osv[p.rel]
				if m == nil {
					m = map[int32]ComponentFinding{}
					osv[p.rel] = m
				}
				if old, ok := m[p.comp]; !ok || f.Status.Rank() > old.Status.Rank() {
					m[p.comp] = f
				}
			}
		}
	}

	// Statements are sorted oldest first, so a later hit overwrites.
	whole := map[*release]vexHit{}
	parts := map[*release]map[int32]vexHit{}
	for _, st := range g.Statements {
		e.applyStatement(st, whole, parts)
	}
	if only != nil {
		// Statements are few, so they are matched fleet-wide and filtered.
		for r := range whole {
			if r != only {
				delete(whole, r)
			}
		}
		for r := range parts {
			if r != only {
				delete(parts, r)
			}
		}
	}

	out := map[*release]*releaseFinding{}
	touched := map[*release]struct{}{}
	for r := range osv {
		touched[r] = struct{}{}
	}
	for r := range whole {
		touched[r] = struct{}{}
	}
	for r := range parts {
		touched[r] = struct{}{}
	}
	for r := range touched {
		out[r] = combine(r, osv[r], whole[r], parts[r])
	}
	return out
}

// combine merges the OSV findings of a release's components with the VEX
// statements about the release and its components. For each component,
// the latest statement that covers it wins over the OSV evaluation.
func combine(r *release, osv map[int32]ComponentFinding, whole vexHit, parts map[int32]vexHit) *releaseFinding {
	hasWhole := whole.st.Vulnerability != ""
	comps := map[int32]ComponentFinding{}
	for i, f := range osv {
		comps[i] = f
	}
	for i := range parts {
		if _, ok := comps[i]; !ok {
			c := &r.doc.Components[i]
			comps[i] = ComponentFinding{Name: c.Name, Version: c.Version, PURL: c.PURL, Package: c.Package}
		}
	}
	idx := make([]int32, 0, len(comps))
	for i := range comps {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	rf := &releaseFinding{}
	for _, i := range idx {
		f := comps[i]
		hit, ok := parts[i]
		if hasWhole && (!ok || whole.st.Later(hit.st)) {
			hit, ok = whole, true
		}
		if ok {
			f = applyHit(f, hit)
		}
		rf.components = append(rf.components, f)
	}
	if len(rf.components) == 0 && hasWhole {
		f := applyHit(ComponentFinding{}, whole)
		rf.status, rf.justification, rf.detail, rf.source = f.Status, f.Justification, f.Detail, f.Source
		return rf
	}
	// The release takes its most urgent component's status; ties keep the
	// first component in document order.
	best := -1
	for k, f := range rf.components {
		if best < 0 || f.Status.Rank() > rf.components[best].Status.Rank() {
			best = k
		}
	}
	f := rf.components[best]
	rf.status, rf.justification, rf.detail, rf.source = f.Status, f.Justification, f.Detail, f.Source
	if f.Name != "" && strings.HasPrefix(f.Source, "osv:") {
		// The OSV reason speaks of a version; name the component it is of.
		rf.detail = fmt.Sprintf("%s %s: %s", f.Name, f.Version, f.Detail)
	}
	return rf
}

func applyHit(f ComponentFinding, hit vexHit) ComponentFinding {
	f.Status = hit.status
	f.Justification = hit.st.Justification
	f.Detail = hit.st.Detail
	if f.Detail == "" && hit.st.Action != "" {
		f.Detail = hit.st.Action
	}
	f.Source = "vex:" + hit.st.Document
	f.Statement = hit.st.Timestamp
	if f.Status != advisory.StatusAffected && f.Status != advisory.StatusFixed {
		f.FixedIn = ""
	}
	return f
}

// hitStatus is the statement's status, narrowed by a CycloneDX version
// rule that matched.
func hitStatus(st advisory.Statement, rule advisory.Status) advisory.Status {
	switch rule {
	case advisory.StatusNotAffected, advisory.StatusUnknown:
		return rule
	case advisory.StatusAffected:
		if st.Status == advisory.StatusNotAffected {
			return advisory.StatusAffected
		}
	}
	return st.Status
}

// applyStatement records which releases and components a statement covers.
func (e *Evaluator) applyStatement(st advisory.Statement, whole map[*release]vexHit, parts map[*release]map[int32]vexHit) {
	ix := e.index
	setPart := func(r *release, comp int32, status advisory.Status) {
		m := parts[r]
		if m == nil {
			m = map[int32]vexHit{}
			parts[r] = m
		}
		m[comp] = vexHit{st: st, status: status}
	}
	var scoped *release
	if st.Release != "" {
		scoped = ix.releases[st.Release]
		if scoped == nil {
			return
		}
	}
	opts := advisory.MatchOptions{Refs: scoped != nil}
	for _, prod := range st.Products {
		matchedAny := false
		// The product may be a release: its SBOM's subject or serial number,
		// or its target path.
		for _, r := range ix.subjectCandidates(prod) {
			if scoped != nil && r != scoped {
				continue
			}
			ok, rule := matchSubject(prod, r, opts)
			if !ok {
				continue
			}
			matchedAny = true
			if len(prod.Subcomponents) == 0 {
				if prod.BOMRef != "" && (r.doc.Subject == nil || prod.BOMRef != r.doc.Subject.Ref) {
					// A BOM-Link to one component of the release.
					for i := range r.doc.Components {
						if r.doc.Components[i].Ref == prod.BOMRef {
							setPart(r, int32(i), hitStatus(st, rule))
						}
					}
					continue
				}
				whole[r] = vexHit{st: st, status: hitStatus(st, rule)}
				continue
			}
			for _, sub := range prod.Subcomponents {
				for i := range r.doc.Components {
					if ok, subRule := sub.Match(&r.doc.Components[i], opts); ok {
						setPart(r, int32(i), hitStatus(st, firstRule(subRule, rule)))
					}
				}
			}
		}
		if matchedAny {
			continue
		}
		// Otherwise the product is a package inside releases.
		for _, p := range ix.componentCandidates(prod, scoped) {
			if ok, rule := prod.Match(&p.rel.doc.Components[p.comp], opts); ok {
				matchedAny = true
				setPart(p.rel, p.comp, hitStatus(st, rule))
			}
		}
		if !matchedAny && scoped != nil && len(prod.Subcomponents) == 0 {
			// A statement published for one release, about a product that
			// names nothing in that release's SBOM, is about the release.
			whole[scoped] = vexHit{st: st, status: st.Status}
		}
	}
}

func firstRule(a, b advisory.Status) advisory.Status {
	if a != "" {
		return a
	}
	return b
}

// matchSubject reports whether a product names a release as a whole.
func matchSubject(prod advisory.Product, r *release, opts advisory.MatchOptions) (bool, advisory.Status) {
	if prod.Ref != "" && prod.Ref == r.target {
		return true, ""
	}
	if prod.Serial != "" {
		return prod.Serial == r.doc.SerialNumber, ""
	}
	if r.doc.Subject == nil {
		return false, ""
	}
	return prod.Match(r.doc.Subject, opts)
}

// subjectCandidates returns the releases whose subject might match the
// product, found through the subject keys; the caller confirms each with
// matchSubject.
func (ix *Index) subjectCandidates(prod advisory.Product) []*release {
	var keys []string
	if prod.Serial != "" {
		keys = append(keys, "serial:"+prod.Serial)
	}
	if prod.Ref != "" {
		if r, ok := ix.releases[prod.Ref]; ok {
			return []*release{r}
		}
	}
	if prod.PURL != "" {
		if id, err := sbom.ParsePURL(prod.PURL); err == nil {
			keys = append(keys, purlSubjectKey(id.Type, id.Namespace, id.Name))
		}
	}
	if k := cpeKey(prod.CPE); k != "" {
		keys = append(keys, "cpe:"+k)
	}
	if prod.PURL == "" && prod.CPE == "" && prod.Name != "" {
		keys = append(keys, "name:"+strings.ToLower(prod.Name))
	}
	var out []*release
	for _, k := range keys {
		for _, r := range ix.subjects[k] {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// componentCandidates returns postings of components that might match the
// product: through its purl's package key or its CPE, or every component
// of the scoped release. Products known only by name or hash match
// components of a scoped release only, because scanning every component
// of every release for them would make one statement cost as much as the
// whole index.
func (ix *Index) componentCandidates(prod advisory.Product, scoped *release) []posting {
	if scoped != nil {
		out := make([]posting, len(scoped.doc.Components))
		for i := range out {
			out[i] = posting{rel: scoped, comp: int32(i)}
		}
		return out
	}
	var out []posting
	if prod.PURL != "" {
		if id, err := sbom.ParsePURL(prod.PURL); err == nil {
			out = append(out, ix.byPackage[id.Key()]...)
		}
	}
	if k := cpeKey(prod.CPE); k != "" {
		out = append(out, ix.byCPE[k]...)
	}
	return out
}
