// Package exposure owns the component index and the answers built on it:
// which components each cached release contains (from its SBOM), which
// release each device runs, and from those and the advisory store, each
// device's status for a vulnerability and the fleet reports that hospital
// IT reads (components, license findings, exposure, outdated releases,
// end of support, risk ranking), each writable as JSON and CSV.
//
// The index lives in memory. The gateway rebuilds it at start from the
// cached SBOM files and the inventory, and updates it as releases are
// cached and devices check in; it persists nothing itself.
package exposure

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache/sbom"
)

// ErrUnknownDevice is returned for a device the index does not contain.
var ErrUnknownDevice = errors.New("device not in the index")

// ErrUnknownRelease is returned for a release whose SBOM the index does
// not hold.
var ErrUnknownRelease = errors.New("release not in the index")

// release is one cached release and its parsed SBOM.
type release struct {
	target string
	doc    *sbom.Document
	// unkeyed counts components without a package key (no valid purl), which
	// OSV records cannot name.
	unkeyed int
}

// posting links a component to the release that contains it.
type posting struct {
	rel  *release
	comp int32 // index into rel.doc.Components
}

// Index links components to the releases that contain them and releases
// to the devices that run them. It is safe for concurrent use; queries
// hold a read lock for their duration, so updates wait for them.
type Index struct {
	log *slog.Logger

	mu        sync.RWMutex
	releases  map[string]*release
	byPackage map[sbom.PackageKey][]posting
	byCPE     map[string][]posting // "vendor:product", lowercased
	subjects  map[string][]*release
	devices   map[string]string              // device id to release target, "" when unknown
	onRelease map[string]map[string]struct{} // release target to device ids
	// components is the number of components summed over releases.
	components int
	gen        uint64

	releaseGauge   prometheus.Gauge
	componentGauge prometheus.Gauge
	deviceGauge    prometheus.Gauge
}

// NewIndex returns an empty index. reg may be nil.
func NewIndex(logger *slog.Logger, reg prometheus.Registerer) (*Index, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ix := &Index{
		log:       logger,
		releases:  map[string]*release{},
		byPackage: map[sbom.PackageKey][]posting{},
		byCPE:     map[string][]posting{},
		subjects:  map[string][]*release{},
		devices:   map[string]string{},
		onRelease: map[string]map[string]struct{}{},
		releaseGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_sbom_index_releases", Help: "Releases whose SBOM the component index holds.",
		}),
		componentGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_sbom_index_components", Help: "Component entries in the index, summed over releases.",
		}),
		deviceGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_sbom_index_devices", Help: "Devices whose running release the index has been told.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{ix.releaseGauge, ix.componentGauge, ix.deviceGauge} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering index metrics: %w", err)
			}
		}
	}
	return ix, nil
}

// ParseDeviceID splits a device id "MANUFACTURER/SERIAL" at its first
// slash. Both parts must be non-empty and free of spaces and control
// characters.
func ParseDeviceID(id string) (manufacturer, serial string, err error) {
	manufacturer, serial, ok := strings.Cut(id, "/")
	if !ok || manufacturer == "" || serial == "" {
		return "", "", fmt.Errorf("invalid device id %q: want MANUFACTURER/SERIAL", id)
	}
	if strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", "", fmt.Errorf("invalid device id %q: contains a space or control character", id)
	}
	return manufacturer, serial, nil
}

// AddRelease indexes the SBOM of a release, identified by its TUF target
// path. Adding a release that is already indexed replaces its SBOM.
// Excluded components (CycloneDX scope "excluded") are kept in the
// document but not indexed.
func (ix *Index) AddRelease(target string, doc *sbom.Document) error {
	if strings.TrimSpace(target) == "" {
		return errors.New("adding release: target path is empty")
	}
	if doc == nil {
		return fmt.Errorf("adding release %q: SBOM document is nil", target)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.releases[target]; ok {
		ix.unindexLocked(old)
	}
	r := &release{target: target, doc: doc}
	ix.releases[target] = r
	ix.components += len(doc.Components)
	for i := range doc.Components {
		c := &doc.Components[i]
		if c.Excluded {
			continue
		}
		p := posting{rel: r, comp: int32(i)}
		if c.Package.Name != "" {
			ix.byPackage[c.Package] = append(ix.byPackage[c.Package], p)
		} else {
			r.unkeyed++
		}
		if k := cpeKey(c.CPE); k != "" {
			ix.byCPE[k] = append(ix.byCPE[k], p)
		}
	}
	for _, k := range subjectKeys(doc) {
		ix.subjects[k] = append(ix.subjects[k], r)
	}
	ix.changedLocked()
	return nil
}

// AddReleaseSBOM parses an SBOM and indexes it for the release; the
// parse warnings are returned for the caller to log.
func (ix *Index) AddReleaseSBOM(target string, data []byte) ([]sbom.Warning, error) {
	doc, warnings, err := sbom.Parse(data)
	if err != nil {
		return warnings, fmt.Errorf("parsing SBOM of release %q: %w", target, err)
	}
	return warnings, ix.AddRelease(target, doc)
}

// RemoveRelease drops a release's SBOM from the index; devices that run it
// stay assigned to it (their status becomes unknown). It reports whether
// the release was indexed.
func (ix *Index) RemoveRelease(target string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r, ok := ix.releases[target]
	if !ok {
		return false
	}
	ix.unindexLocked(r)
	delete(ix.releases, target)
	ix.changedLocked()
	return true
}

func (ix *Index) unindexLocked(r *release) {
	ix.components -= len(r.doc.Components)
	drop := func(list []posting) []posting {
		return slices.DeleteFunc(list, func(p posting) bool { return p.rel == r })
	}
	for i := range r.doc.Components {
		c := &r.doc.Components[i]
		if c.Package.Name != "" {
			if l := drop(ix.byPackage[c.Package]); len(l) > 0 {
				ix.byPackage[c.Package] = l
			} else {
				delete(ix.byPackage, c.Package)
			}
		}
		if k := cpeKey(c.CPE); k != "" {
			if l := drop(ix.byCPE[k]); len(l) > 0 {
				ix.byCPE[k] = l
			} else {
				delete(ix.byCPE, k)
			}
		}
	}
	for _, k := range subjectKeys(r.doc) {
		l := slices.DeleteFunc(ix.subjects[k], func(x *release) bool { return x == r })
		if len(l) > 0 {
			ix.subjects[k] = l
		} else {
			delete(ix.subjects, k)
		}
	}
}

// SetDeviceRelease records the release (TUF target path) that a device
// runs. An empty target records the device with an unknown release. The
// release need not be indexed yet.
func (ix *Index) SetDeviceRelease(deviceID, target string) error {
	if _, _, err := ParseDeviceID(deviceID); err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.setDeviceLocked(deviceID, target)
	ix.changedLocked()
	return nil
}

func (ix *Index) setDeviceLocked(deviceID, target string) {
	if old, ok := ix.devices[deviceID]; ok {
		if set := ix.onRelease[old]; set != nil {
			delete(set, deviceID)
			if len(set) == 0 {
				delete(ix.onRelease, old)
			}
		}
	}
	ix.devices[deviceID] = target
	if ix.onRelease[target] == nil {
		ix.onRelease[target] = map[string]struct{}{}
	}
	ix.onRelease[target][deviceID] = struct{}{}
}

// SetDevices replaces every device assignment with the given snapshot of
// device id to release target, as the gateway does at start from its
// inventory. An invalid device id rejects the whole snapshot.
func (ix *Index) SetDevices(snapshot map[string]string) error {
	for id := range snapshot {
		if _, _, err := ParseDeviceID(id); err != nil {
			return fmt.Errorf("setting devices: %w", err)
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.devices = make(map[string]string, len(snapshot))
	ix.onRelease = map[string]map[string]struct{}{}
	for id, target := range snapshot {
		ix.setDeviceLocked(id, target)
	}
	ix.changedLocked()
	return nil
}

// RemoveDevice removes a device and reports whether the index contained it.
func (ix *Index) RemoveDevice(deviceID string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	target, ok := ix.devices[deviceID]
	if !ok {
		return false
	}
	delete(ix.devices, deviceID)
	if set := ix.onRelease[target]; set != nil {
		delete(set, deviceID)
		if len(set) == 0 {
			delete(ix.onRelease, target)
		}
	}
	ix.changedLocked()
	return true
}

func (ix *Index) changedLocked() {
	ix.gen++
	ix.releaseGauge.Set(float64(len(ix.releases)))
	ix.componentGauge.Set(float64(ix.components))
	ix.deviceGauge.Set(float64(len(ix.devices)))
}

// Generation returns a number that changes with every update, so callers
// can cache results computed from the index.
func (ix *Index) Generation() uint64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.gen
}

// Release returns the SBOM indexed for a release. The document is shared
// and must not be modified.
func (ix *Index) Release(target string) (*sbom.Document, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.releases[target]
	if !ok {
		return nil, false
	}
	return r.doc, true
}

// Releases returns the indexed release targets, sorted.
func (ix *Index) Releases() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]string, 0, len(ix.releases))
	for t := range ix.releases {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// DeviceRelease returns the release a device runs ("" when unknown) and
// whether the device is in the index.
func (ix *Index) DeviceRelease(deviceID string) (string, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	t, ok := ix.devices[deviceID]
	return t, ok
}

// Devices returns every device id in the index, sorted.
func (ix *Index) Devices() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.devicesLocked()
}

func (ix *Index) devicesLocked() []string {
	out := make([]string, 0, len(ix.devices))
	for d := range ix.devices {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// DevicesOn returns the devices that run a release, sorted.
func (ix *Index) DevicesOn(target string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return sortedKeys(ix.onRelease[target])
}

// ComponentRef is one component of one release.
type ComponentRef struct {
	Release   string         `json:"release"`
	Component sbom.Component `json:"component"`
}

// ReleasesWith returns every indexed component with the package key, in
// any version, with its release.
func (ix *Index) ReleasesWith(key sbom.PackageKey) []ComponentRef {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []ComponentRef
	for _, p := range ix.byPackage[key] {
		out = append(out, ComponentRef{Release: p.rel.target, Component: p.rel.doc.Components[p.comp]})
	}
	slices.SortFunc(out, func(a, b ComponentRef) int { return strings.Compare(a.Release, b.Release) })
	return out
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// cpeKey is the lowercased "vendor:product" of a CPE, or "" when it does
// not parse.
func cpeKey(s string) string {
	if s == "" {
		return ""
	}
	c, err := sbom.ParseCPE(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(c.Vendor + ":" + c.Product)
}

// subjectKeys are the keys under which a release is found by what its SBOM
// describes: the subject's purl package, CPE and name, and the document's
// serial number.
func subjectKeys(doc *sbom.Document) []string {
	var keys []string
	if doc.SerialNumber != "" {
		keys = append(keys, "serial:"+doc.SerialNumber)
	}
	s := doc.Subject
	if s == nil {
		return keys
	}
	if s.Identity.Source == sbom.FromPURL {
		keys = append(keys, purlSubjectKey(s.Identity.Type, s.Identity.Namespace, s.Identity.Name))
	}
	if k := cpeKey(s.CPE); k != "" {
		keys = append(keys, "cpe:"+k)
	}
	if s.Name != "" {
		keys = append(keys, "name:"+strings.ToLower(s.Name))
	}
	return keys
}

func purlSubjectKey(typ, namespace, name string) string {
	return "purl:" + strings.ToLower(typ+"/"+namespace+"/"+name)
}
