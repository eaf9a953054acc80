package exposure

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/cache/sbom"
)

// ComponentsReport lists the components of one device's release.
type ComponentsReport struct {
	Device  string `json:"device,omitempty"`
	Release string `json:"release"`
	// Format and SpecVersion describe the SBOM the components come from.
	Format      sbom.Format      `json:"format"`
	SpecVersion string           `json:"spec_version"`
	Subject     *sbom.Component  `json:"subject,omitempty"`
	Components  []sbom.Component `json:"components"`
}

// DeviceComponents returns the components of the release a device runs.
// It returns an error wrapping ErrUnknownDevice or ErrUnknownRelease when
// the device or its release SBOM is not in the index.
func (ix *Index) DeviceComponents(deviceID string) (ComponentsReport, error) {
	ix.mu.RLock()
	target, ok := ix.devices[deviceID]
	ix.mu.RUnlock()
	if !ok {
		return ComponentsReport{}, fmt.Errorf("components of %q: %w", deviceID, ErrUnknownDevice)
	}
	if target == "" {
		return ComponentsReport{}, fmt.Errorf("components of %q: the device's release is not known: %w", deviceID, ErrUnknownRelease)
	}
	rep, err := ix.ReleaseComponents(target)
	if err != nil {
		return ComponentsReport{}, fmt.Errorf("components of %q: %w", deviceID, err)
	}
	rep.Device = deviceID
	return rep, nil
}

// ReleaseComponents returns the components of a release's SBOM.
func (ix *Index) ReleaseComponents(target string) (ComponentsReport, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.releases[target]
	if !ok {
		return ComponentsReport{}, fmt.Errorf("release %q: %w", target, ErrUnknownRelease)
	}
	return ComponentsReport{
		Release:     target,
		Format:      r.doc.Format,
		SpecVersion: r.doc.SpecVersion,
		Subject:     r.doc.Subject,
		Components:  r.doc.Components,
	}, nil
}

// WriteJSON writes the components report as JSON.
func (r ComponentsReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteCSV writes one row per component.
func (r ComponentsReport) WriteCSV(w io.Writer) error {
	header := []string{"device", "release", "name", "version", "type", "ecosystem", "namespace", "package",
		"purl", "cpe", "identity_source", "supplier", "licenses", "end_of_support", "support_text", "support_level", "support_ended", "excluded"}
	rows := make([][]string, 0, len(r.Components))
	for _, c := range r.Components {
		var lic []string
		for _, l := range c.Licenses {
			lic = append(lic, l.Written)
		}
		rows = append(rows, []string{
			r.Device, r.Release, c.Name, c.Version, c.Type, c.Identity.Ecosystem, c.Identity.Namespace, c.Package.Name,
			c.PURL, c.CPE, string(c.Identity.Source), c.Supplier, strings.Join(lic, "; "),
			timeCell(c.Support.EndOfSupport), c.Support.Text, c.Support.Level, strconv.FormatBool(c.Support.Ended),
			strconv.FormatBool(c.Excluded),
		})
	}
	return writeCSV(w, header, rows)
}
