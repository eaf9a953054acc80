package advisory

import (
	"fmt"
	"math"
	"strings"
)

// Severity labels, from the CVSS v3 qualitative rating scale.
const (
	SeverityNone     = "NONE"
	SeverityLow      = "LOW"
	SeverityMedium   = "MEDIUM"
	SeverityHigh     = "HIGH"
	SeverityCritical = "CRITICAL"
)

// SeverityRank orders labels for sorting: CRITICAL 4 down to NONE 0; an
// unknown label ranks -1.
func SeverityRank(label string) int {
	switch strings.ToUpper(label) {
	case SeverityCritical:
		return 4
	case SeverityHigh:
		return 3
	case SeverityMedium, "MODERATE":
		return 2
	case SeverityLow:
		return 1
	case SeverityNone:
		return 0
	}
	return -1
}

// Rating returns the record's severity label and its highest CVSS v3 base
// score (0 when it has none). The database's own label wins where the
// record has one; otherwise the label follows from the score.
func (o *OSV) Rating() (label string, score float64) {
	for _, list := range append([][]Severity{o.Severity}, affectedSeverities(o)...) {
		for _, s := range list {
			if s.Type != "CVSS_V3" {
				continue
			}
			if v, err := CVSS3BaseScore(s.Score); err == nil && v > score {
				score = v
			}
		}
	}
	switch {
	case o.DatabaseSeverity != "":
		label = o.DatabaseSeverity
		if label == "MODERATE" {
			label = SeverityMedium
		}
	case score >= 9:
		label = SeverityCritical
	case score >= 7:
		label = SeverityHigh
	case score >= 4:
		label = SeverityMedium
	case score > 0:
		label = SeverityLow
	}
	return label, score
}

func affectedSeverities(o *OSV) [][]Severity {
	var out [][]Severity
	for _, a := range o.Affected {
		out = append(out, a.Severity)
	}
	return out
}

var cvssWeights = map[string]map[string]float64{
	"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
	"AC": {"L": 0.77, "H": 0.44},
	"UI": {"N": 0.85, "R": 0.62},
	"C":  {"H": 0.56, "L": 0.22, "N": 0},
	"I":  {"H": 0.56, "L": 0.22, "N": 0},
	"A":  {"H": 0.56, "L": 0.22, "N": 0},
}

// CVSS3BaseScore computes the base score of a CVSS v3.0 or v3.1 vector
// ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H") with the formulas and
// rounding of the CVSS v3.1 specification, section 7.
func CVSS3BaseScore(vector string) (float64, error) {
	parts := strings.Split(strings.TrimSpace(vector), "/")
	if len(parts) == 0 || !strings.HasPrefix(parts[0], "CVSS:3.") {
		return 0, fmt.Errorf("CVSS vector %q does not start with CVSS:3.x", vector)
	}
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			return 0, fmt.Errorf("CVSS vector %q has a malformed metric %q", vector, p)
		}
		m[k] = v
	}
	scope := m["S"]
	if scope != "U" && scope != "C" {
		return 0, fmt.Errorf("CVSS vector %q has no valid scope (S:U or S:C)", vector)
	}
	w := map[string]float64{}
	for metric, table := range cvssWeights {
		v, ok := table[m[metric]]
		if !ok {
			return 0, fmt.Errorf("CVSS vector %q has no valid %s metric", vector, metric)
		}
		w[metric] = v
	}
	var pr float64
	switch m["PR"] {
	case "N":
		pr = 0.85
	case "L":
		pr = 0.62
		if scope == "C" {
			pr = 0.68
		}
	case "H":
		pr = 0.27
		if scope == "C" {
			pr = 0.5
		}
	default:
		return 0, fmt.Errorf("CVSS vector %q has no valid PR metric", vector)
	}
	iss := 1 - (1-w["C"])*(1-w["I"])*(1-w["A"])
	impact := 6.42 * iss
	if scope == "C" {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	}
	exploitability := 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
	if impact <= 0 {
		return 0, nil
	}
	if scope == "U" {
		return roundUp(math.Min(impact+exploitability, 10)), nil
	}
	return roundUp(math.Min(1.08*(impact+exploitability), 10)), nil
}

// roundUp is CVSS v3.1's Roundup: the smallest one-decimal number not
// below x, computed on integers to avoid floating-point artefacts.
func roundUp(x float64) float64 {
	n := int64(math.Round(x * 100000))
	if n%10000 == 0 {
		return float64(n) / 100000
	}
	return float64(n/10000+1) / 10
}
