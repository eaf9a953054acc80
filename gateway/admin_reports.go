package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/cache/exposure"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/policy"
)

// maxAdvisoryImport bounds one imported advisory file.
const maxAdvisoryImport = 16 << 20

// reportRoutes adds the policy explanation, SBOM and advisory import
// calls of the admin API.
func (g *Gateway) reportRoutes(h func(string, Role, func(http.ResponseWriter, *http.Request, TokenInfo))) {
	h("GET /v1/explain", RoleViewer, g.apiExplain)
	h("GET /v1/sbom", RoleViewer, g.apiSBOM)
	h("GET /v1/licenses", RoleViewer, g.apiLicenses)
	h("POST /v1/advisories", RoleOperator, g.apiAdvisoryImport)
}

// ExplainResult is the answer of GET /v1/explain.
type ExplainResult struct {
	Decision policy.Decision `json:"decision"`
	Text     string          `json:"text"`
}

// apiExplain decides one release for one device now:
// GET /v1/explain?device=MANUFACTURER/SERIAL&release=TARGET.
func (g *Gateway) apiExplain(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	dev, err := g.lookupDevice(r, r.URL.Query().Get("device"))
	if err != nil {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	target := r.URL.Query().Get("release")
	t, ok := g.mirror.Target(target)
	if !ok || !t.HasMeta || t.Meta.Kind != cache.KindRelease {
		writeError(w, http.StatusNotFound, "release %q is not in the cache: see GET /v1/releases for the cached releases", target)
		return
	}
	dec := g.policy.Decide(policyDevice(dev, g.siteID), policyRelease(t))
	writeJSON(w, http.StatusOK, ExplainResult{Decision: dec, Text: policy.Explain(dec)})
}

// lookupDevice parses "MANUFACTURER/SERIAL" and reads the device.
func (g *Gateway) lookupDevice(r *http.Request, id string) (discovery.Device, error) {
	manufacturer, serial, ok := strings.Cut(id, "/")
	if !ok || manufacturer == "" || serial == "" {
		return discovery.Device{}, fmt.Errorf("device %q must be MANUFACTURER/SERIAL", id)
	}
	dev, err := g.inventory.Get(r.Context(), manufacturer, serial)
	if err != nil {
		return discovery.Device{}, fmt.Errorf("device %q: %w", id, err)
	}
	return dev, nil
}

func (g *Gateway) fleet(w http.ResponseWriter, r *http.Request) (*fleetExposure, bool) {
	f, ok := g.admin.exposure.(*fleetExposure)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "SBOM reports are unavailable on this gateway: see its log")
		return nil, false
	}
	if err := f.refresh(r.Context()); err != nil {
		writeError(w, http.StatusInternalServerError, "updating the component index failed: %v", err)
		return nil, false
	}
	return f, true
}

// writeReport writes rep as JSON, or as CSV with ?format=csv.
func writeReport(w http.ResponseWriter, r *http.Request, rep exposure.Report) {
	switch r.URL.Query().Get("format") {
	case "", "json":
		w.Header().Set("Content-Type", "application/json")
		_ = rep.WriteJSON(w)
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		_ = rep.WriteCSV(w)
	default:
		writeError(w, http.StatusBadRequest, "format %q must be json or csv", r.URL.Query().Get("format"))
	}
}

// apiSBOM lists the components of a device (?device=) or of a cached
// release (?release=).
func (g *Gateway) apiSBOM(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	f, ok := g.fleet(w, r)
	if !ok {
		return
	}
	var (
		rep exposure.ComponentsReport
		err error
	)
	if release := r.URL.Query().Get("release"); release != "" {
		rep, err = f.idx.ReleaseComponents(release)
		if errors.Is(err, exposure.ErrUnknownRelease) {
			err = g.whyNoSBOM(release)
		}
	} else {
		var dev discovery.Device
		if dev, err = g.lookupDevice(r, r.URL.Query().Get("device")); err == nil {
			rep, err = f.idx.DeviceComponents(indexID(dev))
			// The index escapes ids; the report names the device plainly.
			rep.Device = dev.Manufacturer + "/" + dev.Serial
		}
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, exposure.ErrUnknownDevice) || errors.Is(err, exposure.ErrUnknownRelease) || errors.Is(err, discovery.ErrNotFound) {
			status = http.StatusNotFound
		}
		writeError(w, status, "%v", err)
		return
	}
	writeReport(w, r, rep)
}

// whyNoSBOM returns the reason the exposure index has no SBOM for the
// release at target, wrapping exposure.ErrUnknownRelease.
func (g *Gateway) whyNoSBOM(target string) error {
	files, err := g.mirror.ReleaseFiles(target)
	if err != nil {
		return fmt.Errorf("release %q is not a target of the verified TUF metadata; check the path: %w", target, exposure.ErrUnknownRelease)
	}
	if t := files[0]; !t.HasMeta || t.Meta.SBOM == "" {
		return fmt.Errorf("release %q names no SBOM in its signed metadata, so the gateway has none for it: %w", target, exposure.ErrUnknownRelease)
	}
	return fmt.Errorf("the SBOM %q of release %q is not cached and indexed yet; it is fetched with the release: %w", files[0].Meta.SBOM, target, exposure.ErrUnknownRelease)
}

// apiLicenses evaluates every cached release's licenses against the
// configured allow and deny lists.
func (g *Gateway) apiLicenses(w http.ResponseWriter, r *http.Request, _ TokenInfo) {
	f, ok := g.fleet(w, r)
	if !ok {
		return
	}
	writeReport(w, r, f.idx.Licenses(exposure.LicensePolicy{Allow: g.cfg.Licenses.Allow, Deny: g.cfg.Licenses.Deny}))
}

// apiAdvisoryImport stores an OSV, CycloneDX VEX or OpenVEX document that
// hospital IT imports; the body is the file.
func (g *Gateway) apiAdvisoryImport(w http.ResponseWriter, r *http.Request, tok TokenInfo) {
	store := g.Advisories()
	if store == nil {
		writeError(w, http.StatusServiceUnavailable, "the advisory store is unavailable on this gateway: see its log")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdvisoryImport))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "advisory file over %d MiB: split it", maxAdvisoryImport>>20)
		return
	}
	name := r.URL.Query().Get("name")
	res, err := store.Add(r.Context(), data, advisory.Source{Origin: "import", Name: name})
	if err != nil {
		writeError(w, http.StatusBadRequest, "advisory %q not imported: %v", name, err)
		return
	}
	g.recordAudit(r.Context(), audit.Record{Actor: actorOf(tok), Action: "advisory.import", Subject: name, Details: map[string]string{
		"kind": string(res.Kind), "added": fmt.Sprint(len(res.Added)), "replaced": fmt.Sprint(len(res.Replaced)), "digest": res.Digest,
	}})
	writeJSON(w, http.StatusOK, res)
}
