package advisory

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// OSV is one vulnerability record in the OSV schema (1.x).
type OSV struct {
	SchemaVersion string    `json:"schema_version,omitempty"`
	ID            string    `json:"id"`
	Modified      time.Time `json:"modified"`
	Published     time.Time `json:"published,omitzero"`
	// Withdrawn is set when the record was withdrawn; such a record no
	// longer affects anything.
	Withdrawn time.Time  `json:"withdrawn,omitzero"`
	Aliases   []string   `json:"aliases,omitempty"`
	Related   []string   `json:"related,omitempty"`
	Upstream  []string   `json:"upstream,omitempty"`
	Summary   string     `json:"summary,omitempty"`
	Details   string     `json:"details,omitempty"`
	Severity  []Severity `json:"severity,omitempty"`
	Affected  []Affected `json:"affected,omitempty"`
	// DatabaseSeverity is database_specific.severity where the database
	// states one (GitHub writes "LOW" to "CRITICAL").
	DatabaseSeverity string `json:"database_severity,omitempty"`

	// raw is the record's JSON as received, which the store persists.
	raw json.RawMessage
}

// Severity is one OSV severity score, such as a CVSS vector.
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Affected is one entry of an OSV record's affected list.
type Affected struct {
	Package  Package    `json:"package"`
	Severity []Severity `json:"severity,omitempty"`
	Ranges   []Range    `json:"ranges,omitempty"`
	Versions []string   `json:"versions,omitempty"`
}

// Package names the affected package.
type Package struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	PURL      string `json:"purl,omitempty"`
}

// Range is one affected range: a timeline of events under an ordering.
type Range struct {
	// Type is "SEMVER", "ECOSYSTEM" or "GIT".
	Type   string  `json:"type"`
	Repo   string  `json:"repo,omitempty"`
	Events []Event `json:"events"`
	// Invalid is the reason the range breaks the schema's rules (an event with
	// no or several fields, no introduced event, both fixed and
	// last_affected). An invalid range evaluates to unknown.
	Invalid string `json:"invalid,omitempty"`
}

// Event is one range event; exactly one field is set in a valid event.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// Warning is a problem in an advisory document that did not stop the rest
// of it from being read.
type Warning struct {
	// Location is the place in the document of the problem, such as
	// "GHSA-xxxx affected[1].ranges[0]".
	Location string `json:"location,omitempty"`
	Message  string `json:"message"`
}

func (w Warning) String() string {
	if w.Location == "" {
		return w.Message
	}
	return w.Location + ": " + w.Message
}

// osvJSON is the wire form; times are parsed by hand so that one bad
// timestamp does not lose the record.
type osvJSON struct {
	SchemaVersion    string          `json:"schema_version"`
	ID               string          `json:"id"`
	Modified         string          `json:"modified"`
	Published        string          `json:"published"`
	Withdrawn        string          `json:"withdrawn"`
	Aliases          []string        `json:"aliases"`
	Related          []string        `json:"related"`
	Upstream         []string        `json:"upstream"`
	Summary          string          `json:"summary"`
	Details          string          `json:"details"`
	Severity         []Severity      `json:"severity"`
	Affected         []affectedJSON  `json:"affected"`
	DatabaseSpecific json.RawMessage `json:"database_specific"`
}

type affectedJSON struct {
	Package  Package     `json:"package"`
	Severity []Severity  `json:"severity"`
	Ranges   []rangeJSON `json:"ranges"`
	Versions []string    `json:"versions"`
}

type rangeJSON struct {
	Type   string                       `json:"type"`
	Repo   string                       `json:"repo"`
	Events []map[string]json.RawMessage `json:"events"`
}

// parseOSVRecord reads one OSV record from its JSON object.
func parseOSVRecord(raw json.RawMessage, warn func(location, format string, args ...any)) (*OSV, error) {
	var in osvJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("reading OSV record: %w", err)
	}
	in.ID = strings.TrimSpace(in.ID)
	if in.ID == "" {
		return nil, errors.New("OSV record has no id")
	}
	rec := &OSV{
		SchemaVersion: in.SchemaVersion,
		ID:            in.ID,
		Aliases:       cleanIDs(in.Aliases),
		Related:       cleanIDs(in.Related),
		Upstream:      cleanIDs(in.Upstream),
		Summary:       in.Summary,
		Details:       in.Details,
		Severity:      in.Severity,
		raw:           append(json.RawMessage(nil), raw...),
	}
	parseTime := func(field, value string) time.Time {
		if value == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, value)
		if err != nil {
			warn(in.ID, "%s %q is not an RFC 3339 time; it is ignored", field, value)
			return time.Time{}
		}
		return t.UTC()
	}
	rec.Modified = parseTime("modified", in.Modified)
	if in.Modified == "" {
		warn(in.ID, "record has no modified time, which the OSV schema requires")
	}
	rec.Published = parseTime("published", in.Published)
	rec.Withdrawn = parseTime("withdrawn", in.Withdrawn)
	if len(in.DatabaseSpecific) > 0 {
		var ds struct {
			Severity any `json:"severity"`
		}
		if json.Unmarshal(in.DatabaseSpecific, &ds) == nil {
			if s, ok := ds.Severity.(string); ok {
				rec.DatabaseSeverity = strings.ToUpper(s)
			}
		}
	}
	for i, a := range in.Affected {
		loc := fmt.Sprintf("%s affected[%d]", in.ID, i)
		out := Affected{Package: a.Package, Severity: a.Severity, Versions: a.Versions}
		if out.Package.Name == "" || out.Package.Ecosystem == "" {
			if out.Package.PURL == "" {
				warn(loc, "package has no ecosystem and name and no purl; the entry matches nothing")
			}
		}
		for j, r := range a.Ranges {
			out.Ranges = append(out.Ranges, parseRange(r, fmt.Sprintf("%s.ranges[%d]", loc, j), warn))
		}
		rec.Affected = append(rec.Affected, out)
	}
	return rec, nil
}

func parseRange(r rangeJSON, loc string, warn func(location, format string, args ...any)) Range {
	out := Range{Type: strings.ToUpper(strings.TrimSpace(r.Type)), Repo: r.Repo}
	introduced, fixed, lastAffected := false, false, false
	for k, e := range r.Events {
		if len(e) != 1 {
			out.Invalid = fmt.Sprintf("event %d has %d fields; each event must have exactly one", k, len(e))
			continue
		}
		for name, rawValue := range e {
			var value string
			if err := json.Unmarshal(rawValue, &value); err != nil {
				out.Invalid = fmt.Sprintf("event %d field %q is not a string", k, name)
				continue
			}
			switch name {
			case "introduced":
				introduced = true
				out.Events = append(out.Events, Event{Introduced: value})
			case "fixed":
				fixed = true
				out.Events = append(out.Events, Event{Fixed: value})
			case "last_affected":
				lastAffected = true
				out.Events = append(out.Events, Event{LastAffected: value})
			case "limit":
				out.Events = append(out.Events, Event{Limit: value})
			default:
				out.Invalid = fmt.Sprintf("event %d has unknown field %q", k, name)
			}
		}
	}
	switch {
	case out.Invalid != "":
	case !introduced:
		out.Invalid = "range has no introduced event"
	case fixed && lastAffected:
		out.Invalid = "range has both fixed and last_affected events"
	}
	if out.Invalid != "" {
		warn(loc, "%s; the range evaluates to unknown", out.Invalid)
	}
	return out
}

// cleanIDs trims ids and drops empty ones.
func cleanIDs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// IDs returns the record's id followed by its aliases.
func (o *OSV) IDs() []string {
	return append([]string{o.ID}, o.Aliases...)
}
