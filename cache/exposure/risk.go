package exposure

import (
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/cache/advisory"
)

// RiskOptions tunes Risk.
type RiskOptions struct {
	// Candidates maps a device id to the releases (TUF target paths) it may
	// move to, in order of preference, as entitlement policy decides. For a
	// device without an entry, the candidates are the indexed releases
	// whose SBOM subject has the same name as its current one and a higher
	// version, lowest version first. At most maxCandidates (64) are
	// considered per device.
	Candidates map[string][]string
	// Limit caps the number of devices listed; 0 lists all.
	Limit int
}

// OpenVulnerability is a vulnerability that is open on a device.
type OpenVulnerability struct {
	Vulnerability string          `json:"vulnerability"`
	IDs           []string        `json:"ids"`
	Severity      string          `json:"severity,omitempty"`
	Score         float64         `json:"cvss_score,omitempty"`
	Status        advisory.Status `json:"status"`
	// FixedIn is the component version that fixes it, where the advisory
	// names one.
	FixedIn string `json:"fixed_in,omitempty"`
	// FixRelease is the first candidate release in the cache whose SBOM
	// shows it fixed or not affected, or empty when none does.
	FixRelease string `json:"fix_release,omitempty"`
}

// DeviceRisk is one device's open vulnerabilities.
type DeviceRisk struct {
	Device  string `json:"device"`
	Release string `json:"release"`
	// Affected and UnderInvestigation count open vulnerabilities; Unknown
	// counts vulnerabilities whose status cannot be determined.
	Affected           int    `json:"affected"`
	UnderInvestigation int    `json:"under_investigation"`
	Unknown            int    `json:"unknown"`
	MaxSeverity        string `json:"max_severity,omitempty"`
	// Vulnerabilities lists the open ones, most severe first.
	Vulnerabilities []OpenVulnerability `json:"vulnerabilities,omitempty"`
	// RecommendedRelease is the candidate release that closes the most open
	// vulnerabilities, and RecommendedFixes how many it closes.
	RecommendedRelease string `json:"recommended_release,omitempty"`
	RecommendedFixes   int    `json:"recommended_fixes,omitempty"`
}

// RiskReport ranks devices by open vulnerabilities.
type RiskReport struct {
	// Vulnerabilities is the number of vulnerability groups evaluated.
	Vulnerabilities int `json:"vulnerabilities"`
	// Devices are ranked by affected count, then highest severity, then
	// under-investigation count, then device id. Devices with nothing open
	// are left out.
	Devices []DeviceRisk `json:"devices"`
}

type openFinding struct {
	group   int
	status  advisory.Status
	fixedIn string
}

// maxCandidates bounds how many candidate releases Risk checks per device,
// nearest first.
// NOTE: a fleet with more than 64 newer releases of one product only has
// the first 64 considered as fix releases.
const maxCandidates = 64

// Risk evaluates every vulnerability in the advisory store against every
// device.
func (e *Evaluator) Risk(opts RiskOptions) RiskReport {
	groups := e.advisories.Groups()
	ratings := make([]struct {
		label string
		score float64
	}, len(groups))
	for i, g := range groups {
		ratings[i].label, ratings[i].score = g.Rating()
	}
	ix := e.index
	ix.mu.RLock()
	defer ix.mu.RUnlock()

	findings := make([]map[*release]*releaseFinding, len(groups))
	open := map[*release][]openFinding{}
	unknown := map[*release]int{}
	for i, g := range groups {
		findings[i] = e.evaluateGroup(g, nil)
		for r, f := range findings[i] {
			switch f.status {
			case advisory.StatusAffected, advisory.StatusUnderInvestigation:
				of := openFinding{group: i, status: f.status}
				for _, c := range f.components {
					if c.Status == advisory.StatusAffected && c.FixedIn != "" {
						of.fixedIn = c.FixedIn
						break
					}
				}
				open[r] = append(open[r], of)
			case advisory.StatusUnknown:
				unknown[r]++
			}
		}
	}
	for _, list := range open {
		slices.SortFunc(list, func(a, b openFinding) int { return a.group - b.group })
	}
	rc := &riskContext{groups: groups, findings: findings, products: ix.productOrder()}
	for i := range ratings {
		rc.labels = append(rc.labels, ratings[i].label)
		rc.scores = append(rc.scores, ratings[i].score)
	}

	// Devices on the same release with the fallback candidates share one
	// computation.
	shared := map[*release]DeviceRisk{}
	rep := RiskReport{Vulnerabilities: len(groups)}
	for _, d := range ix.devicesLocked() {
		target := ix.devices[d]
		r := ix.releases[target]
		if r == nil {
			// Without an SBOM nothing can be ruled out.
			if len(groups) > 0 {
				rep.Devices = append(rep.Devices, DeviceRisk{Device: d, Release: target, Unknown: len(groups)})
			}
			continue
		}
		var dr DeviceRisk
		if list, ok := opts.Candidates[d]; ok {
			var candidates []*release
			for _, t := range list {
				if c := ix.releases[t]; c != nil && c != r && len(candidates) < maxCandidates {
					candidates = append(candidates, c)
				}
			}
			dr = rc.deviceRisk(r, open[r], candidates)
		} else {
			var ok bool
			if dr, ok = shared[r]; !ok {
				dr = rc.deviceRisk(r, open[r], rc.newer(r))
				shared[r] = dr
			}
		}
		dr.Device, dr.Release, dr.Unknown = d, target, unknown[r]
		if dr.Affected+dr.UnderInvestigation+dr.Unknown > 0 {
			rep.Devices = append(rep.Devices, dr)
		}
	}
	slices.SortFunc(rep.Devices, func(a, b DeviceRisk) int {
		switch {
		case a.Affected != b.Affected:
			return b.Affected - a.Affected
		case advisory.SeverityRank(a.MaxSeverity) != advisory.SeverityRank(b.MaxSeverity):
			return advisory.SeverityRank(b.MaxSeverity) - advisory.SeverityRank(a.MaxSeverity)
		case a.UnderInvestigation != b.UnderInvestigation:
			return b.UnderInvestigation - a.UnderInvestigation
		}
		return strings.Compare(a.Device, b.Device)
	})
	if opts.Limit > 0 && len(rep.Devices) > opts.Limit {
		rep.Devices = rep.Devices[:opts.Limit]
	}
	return rep
}

// riskContext holds what Risk computed once for all devices.
type riskContext struct {
	groups   []advisory.Group
	labels   []string
	scores   []float64
	findings []map[*release]*releaseFinding
	products map[string][]*release
}

// fixes reports whether release c closes group i: it is neither affected
// nor under investigation there.
func (rc *riskContext) fixes(i int, c *release) bool {
	f, ok := rc.findings[i][c]
	if !ok {
		return true
	}
	return f.status == advisory.StatusFixed || f.status == advisory.StatusNotAffected
}

// newer returns up to maxCandidates releases of r's product (same subject
// name) with a higher subject version, lowest first.
func (rc *riskContext) newer(r *release) []*release {
	s := r.doc.Subject
	if s == nil || s.Name == "" || s.Version == "" {
		return nil
	}
	list := rc.products[strings.ToLower(s.Name)]
	i, _ := slices.BinarySearchFunc(list, s.Version, func(c *release, v string) int {
		return compareReleaseVersions(c.doc.Subject.Version, v)
	})
	for i < len(list) && compareReleaseVersions(list[i].doc.Subject.Version, s.Version) <= 0 {
		i++
	}
	end := min(len(list), i+maxCandidates)
	return list[i:end]
}

func (rc *riskContext) deviceRisk(r *release, open []openFinding, candidates []*release) DeviceRisk {
	var dr DeviceRisk
	fixCount := make([]int, len(candidates))
	for _, of := range open {
		g := rc.groups[of.group]
		ov := OpenVulnerability{
			Vulnerability: g.ID, IDs: g.IDs, Severity: rc.labels[of.group], Score: rc.scores[of.group],
			Status: of.status, FixedIn: of.fixedIn,
		}
		for k, c := range candidates {
			if rc.fixes(of.group, c) {
				if ov.FixRelease == "" {
					ov.FixRelease = c.target
				}
				fixCount[k]++
			}
		}
		if of.status == advisory.StatusAffected {
			dr.Affected++
		} else {
			dr.UnderInvestigation++
		}
		if advisory.SeverityRank(ov.Severity) > advisory.SeverityRank(dr.MaxSeverity) {
			dr.MaxSeverity = ov.Severity
		}
		dr.Vulnerabilities = append(dr.Vulnerabilities, ov)
	}
	for k, n := range fixCount {
		if n > dr.RecommendedFixes {
			dr.RecommendedRelease, dr.RecommendedFixes = candidates[k].target, n
		}
	}
	slices.SortFunc(dr.Vulnerabilities, func(a, b OpenVulnerability) int {
		if ra, rb := advisory.SeverityRank(a.Severity), advisory.SeverityRank(b.Severity); ra != rb {
			return rb - ra
		}
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Vulnerability, b.Vulnerability)
	})
	return dr
}

// productOrder groups the releases that have a subject name and version
// by lowercased subject name, each list sorted by version, lowest first.
// The caller holds ix.mu for reading.
func (ix *Index) productOrder() map[string][]*release {
	out := map[string][]*release{}
	for _, r := range ix.releases {
		s := r.doc.Subject
		if s == nil || s.Name == "" || s.Version == "" {
			continue
		}
		k := strings.ToLower(s.Name)
		out[k] = append(out[k], r)
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b *release) int {
			if c := compareReleaseVersions(a.doc.Subject.Version, b.doc.Subject.Version); c != 0 {
				return c
			}
			return strings.Compare(a.target, b.target)
		})
	}
	return out
}

// WriteJSON writes the risk report as JSON.
func (r RiskReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per open vulnerability of each listed device,
// or one row for a device whose only problems are unknowns.
func (r RiskReport) WriteCSV(w io.Writer) error {
	header := []string{"rank", "device", "release", "affected", "under_investigation", "unknown", "max_severity",
		"recommended_release", "vulnerability", "ids", "severity", "cvss_score", "status", "fixed_in", "fix_release"}
	var rows [][]string
	for i, d := range r.Devices {
		base := []string{strconv.Itoa(i + 1), d.Device, d.Release, strconv.Itoa(d.Affected), strconv.Itoa(d.UnderInvestigation),
			strconv.Itoa(d.Unknown), d.MaxSeverity, d.RecommendedRelease}
		if len(d.Vulnerabilities) == 0 {
			rows = append(rows, append(base, "", "", "", "", "", "", ""))
			continue
		}
		for _, v := range d.Vulnerabilities {
			rows = append(rows, append(append([]string(nil), base...), v.Vulnerability, strings.Join(v.IDs, " "), v.Severity,
				scoreCell(v.Score), string(v.Status), v.FixedIn, v.FixRelease))
		}
	}
	return writeCSV(w, header, rows)
}
