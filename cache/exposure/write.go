package exposure

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is implemented by every report of this package.
type Report interface {
	// WriteJSON writes the report as one indented JSON document.
	WriteJSON(w io.Writer) error
	// WriteCSV writes the report as CSV with a header row, one row per
	// entry of the report's main list.
	WriteCSV(w io.Writer) error
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON report: %w", err)
	}
	return nil
}

func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("writing CSV report: %w", err)
	}
	for _, r := range rows {
		for i, cell := range r {
			r[i] = csvSafe(cell)
		}
		if err := cw.Write(r); err != nil {
			return fmt.Errorf("writing CSV report: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing CSV report: %w", err)
	}
	return nil
}

// csvSafe prefixes cells that a spreadsheet would run as a formula with a
// single quote. SBOM text comes from manufacturers and must not execute on
// hospital IT's machines.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func timeCell(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func scoreCell(f float64) string {
	if f == 0 {
		return ""
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

// WriteJSON writes the device status as JSON.
func (s DeviceStatus) WriteJSON(w io.Writer) error { return writeJSON(w, s) }

// WriteCSV writes one row per component finding, or one row for the
// device when no component is involved.
func (s DeviceStatus) WriteCSV(w io.Writer) error {
	return writeCSV(w, deviceStatusHeader, deviceStatusRows(s))
}

var deviceStatusHeader = []string{
	"device", "release", "vulnerability", "ids", "status", "justification", "detail", "source",
	"component", "component_version", "component_purl", "component_status", "fixed_in",
}

func deviceStatusRows(s DeviceStatus) [][]string {
	base := []string{s.Device, s.Release, s.Vulnerability, strings.Join(s.IDs, " "), string(s.Status), s.Justification, s.Detail, s.Source}
	if len(s.Components) == 0 {
		return [][]string{append(base, "", "", "", "", "")}
	}
	var rows [][]string
	for _, c := range s.Components {
		row := append(append([]string(nil), base...), c.Name, c.Version, c.PURL, string(c.Status), c.FixedIn)
		rows = append(rows, row)
	}
	return rows
}

// WriteJSON writes the exposure report as JSON.
func (r ExposureReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per listed device and component finding.
func (r ExposureReport) WriteCSV(w io.Writer) error {
	var rows [][]string
	for _, d := range r.Devices {
		rows = append(rows, deviceStatusRows(d)...)
	}
	return writeCSV(w, deviceStatusHeader, rows)
}
