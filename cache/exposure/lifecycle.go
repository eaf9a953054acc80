package exposure

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/cache/advisory/version"
	"github.com/wardgate/wardgate/cache/sbom"
)

// OutdatedDevice is a device that runs an older release than the newest
// it is entitled to.
type OutdatedDevice struct {
	Device  string `json:"device"`
	Current string `json:"current"`
	// CurrentVersion and NewestVersion are the versions of the SBOM
	// subjects, where the index holds those SBOMs.
	CurrentVersion string `json:"current_version,omitempty"`
	Newest         string `json:"newest"`
	NewestVersion  string `json:"newest_version,omitempty"`
	// NewestCached reports whether the index holds the newest release's SBOM.
	NewestCached bool `json:"newest_cached"`
}

// OutdatedReport lists devices that are behind their newest entitled
// release.
type OutdatedReport struct {
	Devices []OutdatedDevice `json:"devices"`
	// UpToDate counts devices that run their newest entitled release, or a
	// release whose SBOM subject version is not older than it.
	UpToDate int `json:"up_to_date"`
	// Unknown counts entitled devices whose current release is not known.
	Unknown int `json:"unknown"`
	// NotEntitled counts devices that the input names no release for.
	NotEntitled int `json:"not_entitled"`
}

// Outdated compares each device's release with newest, the newest release
// (TUF target path) each device is entitled to, which entitlement policy
// computes. A device is outdated when it runs another release, unless both
// SBOMs are indexed with subject versions and the current one is not
// older.
func (ix *Index) Outdated(newest map[string]string) OutdatedReport {
	var rep OutdatedReport
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, d := range ix.devicesLocked() {
		want, ok := newest[d]
		if !ok || want == "" {
			rep.NotEntitled++
			continue
		}
		cur := ix.devices[d]
		switch {
		case cur == "":
			rep.Unknown++
			continue
		case cur == want:
			rep.UpToDate++
			continue
		}
		od := OutdatedDevice{Device: d, Current: cur, Newest: want}
		if r := ix.releases[cur]; r != nil && r.doc.Subject != nil {
			od.CurrentVersion = r.doc.Subject.Version
		}
		if r := ix.releases[want]; r != nil {
			od.NewestCached = true
			if r.doc.Subject != nil {
				od.NewestVersion = r.doc.Subject.Version
			}
		}
		if od.CurrentVersion != "" && od.NewestVersion != "" && compareReleaseVersions(od.CurrentVersion, od.NewestVersion) >= 0 {
			rep.UpToDate++
			continue
		}
		rep.Devices = append(rep.Devices, od)
	}
	return rep
}

// compareReleaseVersions orders product versions of unknown scheme: SemVer
// when both parse as SemVer, otherwise Maven's order, which sorts numbers
// numerically and accepts any string.
func compareReleaseVersions(a, b string) int {
	if version.SemVer.Valid(a) && version.SemVer.Valid(b) {
		c, _ := version.SemVer.Compare(a, b)
		return c
	}
	c, err := version.Maven.Compare(a, b)
	if err != nil {
		return strings.Compare(a, b)
	}
	return c
}

// WriteJSON writes the outdated report as JSON.
func (r OutdatedReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per outdated device.
func (r OutdatedReport) WriteCSV(w io.Writer) error {
	header := []string{"device", "current", "current_version", "newest", "newest_version", "newest_cached"}
	var rows [][]string
	for _, d := range r.Devices {
		rows = append(rows, []string{d.Device, d.Current, d.CurrentVersion, d.Newest, d.NewestVersion, strconv.FormatBool(d.NewestCached)})
	}
	return writeCSV(w, header, rows)
}

// EndOfSupportFinding is a component past its end of support in one
// release.
type EndOfSupportFinding struct {
	Release     string `json:"release"`
	DeviceCount int    `json:"device_count"`
	// Devices lists the devices that run the release, sorted.
	Devices   []string     `json:"devices"`
	Component string       `json:"component"`
	Version   string       `json:"version,omitempty"`
	PURL      string       `json:"purl,omitempty"`
	Support   sbom.Support `json:"support"`
}

// EndOfSupportReport lists components past their end of support as their
// SBOMs state it.
type EndOfSupportReport struct {
	At       time.Time             `json:"at"`
	Findings []EndOfSupportFinding `json:"findings"`
}

// EndOfSupport returns every indexed component that is out of support at
// now: its end-of-support date has passed, or its SBOM states in words that
// support has ended.
func (ix *Index) EndOfSupport(now time.Time) EndOfSupportReport {
	rep := EndOfSupportReport{At: now.UTC()}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	targets := make([]string, 0, len(ix.releases))
	for t := range ix.releases {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	for _, t := range targets {
		r := ix.releases[t]
		var devices []string
		for i := range r.doc.Components {
			c := &r.doc.Components[i]
			if c.Excluded || !c.Support.PastEnd(now) {
				continue
			}
			if devices == nil {
				devices = sortedKeys(ix.onRelease[t])
			}
			rep.Findings = append(rep.Findings, EndOfSupportFinding{
				Release: t, DeviceCount: len(devices), Devices: devices,
				Component: c.Name, Version: c.Version, PURL: c.PURL, Support: c.Support,
			})
		}
	}
	return rep
}

// WriteJSON writes the end-of-support report as JSON.
func (r EndOfSupportReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per finding.
func (r EndOfSupportReport) WriteCSV(w io.Writer) error {
	header := []string{"release", "device_count", "devices", "component", "version", "purl", "end_of_support", "support_text", "support_level"}
	var rows [][]string
	for _, f := range r.Findings {
		rows = append(rows, []string{f.Release, strconv.Itoa(f.DeviceCount), strings.Join(f.Devices, " "), f.Component, f.Version, f.PURL,
			timeCell(f.Support.EndOfSupport), f.Support.Text, f.Support.Level})
	}
	return writeCSV(w, header, rows)
}
