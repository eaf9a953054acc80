package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/wire"
	"github.com/wardgate/wardgate/policy"
)

// maxCheckInBody bounds a check-in body; a device's component list fits
// in far less.
const maxCheckInBody = 64 << 10

// deviceRoutes is the device API. Every route requires a verified device
// client certificate; the TLS layer rejects connections without one.
func (g *Gateway) deviceRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/checkin", g.handleCheckIn)
	mux.HandleFunc("GET /v1/blobs/sha256/{hash}", g.handleBlob)
	mux.HandleFunc("HEAD /v1/blobs/sha256/{hash}", g.handleBlob)
	mux.HandleFunc("POST /v1/status", g.handleStatus)
	mux.Handle("POST /v1/telemetry", g.telemetry.handler())
	mux.HandleFunc("GET /tuf/", g.handleMirror)
	mux.HandleFunc("HEAD /tuf/", g.handleMirror)
	return jsonUnmatched(mux)
}

// deviceIdentity is who a client certificate says the device is: the
// organisation is the manufacturer and the common name the serial.
type deviceIdentity struct{ Manufacturer, Serial string }

func (d deviceIdentity) key() string { return d.Manufacturer + "/" + d.Serial }

func identify(r *http.Request) (deviceIdentity, error) {
	c := peerCert(r)
	if c == nil {
		return deviceIdentity{}, errors.New("no client certificate")
	}
	if len(c.Subject.Organization) == 0 || c.Subject.CommonName == "" {
		return deviceIdentity{}, errors.New("client certificate lacks the manufacturer (O) or serial (CN)")
	}
	return deviceIdentity{Manufacturer: c.Subject.Organization[0], Serial: c.Subject.CommonName}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, wire.Error{Error: fmt.Sprintf(format, args...)})
}

func (g *Gateway) handleCheckIn(w http.ResponseWriter, r *http.Request) {
	id, err := identify(r)
	if err != nil {
		writeError(w, http.StatusForbidden, "%v", err)
		return
	}
	var req wire.CheckInRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCheckInBody))
	dec.DisallowUnknownFields()
	if err := decodeOne(dec, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid check-in body: %v", err)
		return
	}
	if err := validateCheckIn(req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid check-in: %v", err)
		return
	}
	addr, iface := remoteAddr(r)
	dev, events, err := g.inventory.CheckIn(r.Context(), discovery.CheckIn{
		Manufacturer:     id.Manufacturer,
		Serial:           id.Serial,
		Model:            req.Model,
		HardwareRevision: req.HardwareRevision,
		Version:          req.Version,
		DeviceClass:      req.DeviceClass,
		Components:       req.Components,
		Address:          addr,
		Interface:        iface,
		InClinicalUse:    req.InClinicalUse,
		InMaintenance:    req.InMaintenance,
	})
	if err != nil {
		g.log.Warn("check-in rejected", "device", id.key(), "err", err)
		writeError(w, http.StatusBadRequest, "check-in rejected: %v", err)
		return
	}
	actor := "device:" + id.key()
	for _, ev := range events {
		g.recordAudit(r.Context(), audit.Record{Actor: actor, Action: "device." + ev.Kind, Subject: id.key(), Details: ev.Details})
	}
	g.recordAudit(r.Context(), audit.Record{Actor: actor, Action: "device.checkin", Subject: id.key(), Details: map[string]string{
		"model": req.Model, "hardware_revision": req.HardwareRevision, "version": req.Version,
	}})
	g.confirmInstalls(r.Context(), id, req.Version)
	g.rolloutCheckIn(r.Context(), id.key(), req.Version)
	resp := g.offers(r.Context(), policyDevice(dev, g.siteID))
	resp.Device = id.key()
	writeJSON(w, http.StatusOK, resp)
}

// offers decides every cached release for the device and audits the
// decisions that changed since the device's last check-in.
func (g *Gateway) offers(ctx context.Context, d policy.Device) wire.CheckInResponse {
	resp := wire.CheckInResponse{Offers: []wire.Offer{}, Withheld: []wire.Withheld{}}
	// While the manufacturer's metadata has expired nothing new is
	// offered, and nothing is audited. The reason names the expiry and
	// what fixes it.
	expired := g.mirror.OfferAllowed()
	var decided []offerDecision
	for _, t := range g.mirror.Targets() {
		if !t.HasMeta || t.Meta.Kind != cache.KindRelease {
			continue
		}
		if expired != nil {
			resp.Withheld = append(resp.Withheld, wire.Withheld{Target: t.Path, Version: t.Meta.Version, Reasons: []wire.Reason{{Code: "metadata-expired", Message: expired.Error()}}})
			continue
		}
		dec := g.policy.Decide(d, policyRelease(t))
		if dec.Offer {
			resp.Offers = append(resp.Offers, g.offerFor(t, dec))
			decided = append(decided, offerDecision{target: t.Path, key: "offer\x00" + t.Meta.Version,
				record: audit.Record{Actor: "gateway", Action: "release.offer", Subject: d.Key(), Details: map[string]string{"target": t.Path, "version": t.Meta.Version}}})
			continue
		}
		wh := wire.Withheld{Target: t.Path, Version: t.Meta.Version}
		key := "withhold\x00" + t.Meta.Version
		for _, r := range dec.Blocking() {
			wh.Reasons = append(wh.Reasons, wire.Reason{Code: r.Code, Message: r.Message})
			key += "\x00" + r.Code
		}
		resp.Withheld = append(resp.Withheld, wh)
		details := map[string]string{"target": t.Path, "version": t.Meta.Version}
		if len(wh.Reasons) > 0 {
			details["reason"] = wh.Reasons[0].Code
			details["message"] = wh.Reasons[0].Message
		}
		decided = append(decided, offerDecision{target: t.Path, key: key,
			record: audit.Record{Actor: "gateway", Action: "release.withhold", Subject: d.Key(), Details: details}})
	}
	if expired == nil {
		g.auditOffers(ctx, d.Key(), decided)
	}
	return resp
}

// offerDecision is the decision of one check-in for one release: key
// identifies the decision and record is its audit record.
type offerDecision struct {
	target string
	key    string
	record audit.Record
}

// offerAudit is the last audited offer decision of each device for each
// cached release. A decision is identified by offer or withhold, the
// release version and the codes of the blocking reasons, but not their
// messages, because a closed window's message counts down to the
// opening and would change at every check-in.
//
// It is kept in memory only, so the first check-in of each device after
// the gateway starts audits every cached release again. A device's entry
// holds one hash per release that was cached at its last check-in. The
// inventory never deletes a device (retired ones stay), so an entry is
// kept until the gateway stops.
type offerAudit struct {
	seed maphash.Seed

	mu       sync.Mutex
	byDevice map[string]map[string]uint64 // device key, then target path, to the hash of the decision key
}

func newOfferAudit() *offerAudit {
	return &offerAudit{seed: maphash.MakeSeed(), byDevice: map[string]map[string]uint64{}}
}

// changed stores the decisions of a check-in of device and returns those
// that differ from its previous check-in's, or that it had none for.
func (a *offerAudit) changed(device string, decided []offerDecision) []offerDecision {
	hashes := make(map[string]uint64, len(decided))
	for _, d := range decided {
		hashes[d.target] = maphash.String(a.seed, d.key)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.byDevice[device]
	a.byDevice[device] = hashes
	var out []offerDecision
	for _, d := range decided {
		if h, ok := prev[d.target]; !ok || h != hashes[d.target] {
			out = append(out, d)
		}
	}
	return out
}

// forget removes the device's decision for target, so that its next
// check-in audits that decision again.
func (a *offerAudit) forget(device, target string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byDevice[device], target)
}

// auditOffers records the decisions of a check-in that changed since the
// device's previous check-in. A record that fails to be written is tried
// again at the next check-in.
func (g *Gateway) auditOffers(ctx context.Context, device string, decided []offerDecision) {
	for _, d := range g.admin.offerAudit.changed(device, decided) {
		if err := g.audit.Record(ctx, d.record); err != nil {
			g.log.Error("audit record lost", "action", d.record.Action, "subject", device, "target", d.target, "err", err)
			g.admin.offerAudit.forget(device, d.target)
		}
	}
}

func (g *Gateway) offerFor(t cache.Target, dec policy.Decision) wire.Offer {
	o := wire.Offer{
		Target:  t.Path,
		Version: t.Meta.Version,
		URL:     "/v1/blobs/sha256/" + t.SHA256(),
		Length:  t.Length,
		Hashes:  t.Hashes,
		SBOM:    t.Meta.SBOM,
	}
	if sb, ok := g.mirror.Target(t.Meta.SBOM); ok && t.Meta.SBOM != "" {
		o.SBOMURL = "/v1/blobs/sha256/" + sb.SHA256()
	}
	if !dec.ClosesAt.IsZero() {
		o.InstallBy = dec.ClosesAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	return o
}

// handleBlob serves a cached blob to a device. A release image is served
// only to a device that policy lets download it; other files (SBOMs) go
// to any authenticated device.
func (g *Gateway) handleBlob(w http.ResponseWriter, r *http.Request) {
	id, err := identify(r)
	if err != nil {
		writeError(w, http.StatusForbidden, "%v", err)
		return
	}
	hash := strings.ToLower(r.PathValue("hash"))
	if !isSHA256Hex(hash) {
		writeError(w, http.StatusBadRequest, "invalid blob name: want the 64 lowercase hex digits of a SHA-256")
		return
	}
	candidates := g.mirror.TargetsBySHA256(hash)
	if len(candidates) == 0 {
		writeError(w, http.StatusNotFound, "no cached target has SHA-256 %s", hash)
		return
	}
	// Identical bytes may be published under several targets; the device
	// may download them if policy lets it take any one of those.
	var denied downloadDenial
	for _, t := range candidates {
		if denied = g.authorizeDownload(r, id, t); denied.status == 0 {
			g.serveDownload(w, r, id, t)
			return
		}
	}
	denied.write(w)
}

// downloadDenial is why a device may not download a target; a zero
// status means it may.
type downloadDenial struct {
	status     int
	retryAfter int
	msg        string
}

func (d downloadDenial) write(w http.ResponseWriter) {
	if d.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(d.retryAfter))
	}
	writeError(w, d.status, "%s", d.msg)
}

// authorizeDownload applies policy to a download of t by the device: a
// release image goes only to a device that policy lets download it now,
// on either the content-addressed path or the TUF mirror path. Other
// files (SBOMs, advisories) go to any authenticated device.
func (g *Gateway) authorizeDownload(r *http.Request, id deviceIdentity, t cache.Target) downloadDenial {
	if !t.HasMeta || t.Meta.Kind != cache.KindRelease {
		return downloadDenial{}
	}
	dev, err := g.inventory.Get(r.Context(), id.Manufacturer, id.Serial)
	if err != nil {
		return downloadDenial{status: http.StatusForbidden, msg: fmt.Sprintf("device %s has not checked in: check in before downloading", id.key())}
	}
	dec := g.policy.Decide(policyDevice(dev, g.siteID), policyRelease(t))
	if !dec.Download {
		reason := "not allowed"
		if b := dec.Blocking(); len(b) > 0 {
			reason = b[0].Message
		}
		return downloadDenial{status: http.StatusForbidden, msg: fmt.Sprintf("download of %s refused: %s", t.Path, reason)}
	}
	if err := g.mirror.DownloadAllowed(t); err != nil {
		return downloadDenial{status: http.StatusServiceUnavailable, retryAfter: cache.RetryAfterSeconds(5 * time.Minute), msg: fmt.Sprintf("download of %s paused: %v", t.Path, err)}
	}
	return downloadDenial{}
}

func (g *Gateway) serveDownload(w http.ResponseWriter, r *http.Request, id deviceIdentity, t cache.Target) {
	w = g.auditDownload(w, r, id, t)
	// An uncached target is pulled through: this device and any other
	// asking for it follow one upstream fetch.
	g.mirror.ServeTargetBlob(w, r, t)
}

// auditDownload returns w wrapped so that the device's download of t is
// recorded when the response's status is chosen. It is recorded when the
// response carries the blob's first byte: a 200 to a GET (also when a
// Range was ignored), or a 206 whose ranges include byte 0, as a download
// in chunks or a TUF client starts. Resumes, later chunks and 304, 412,
// 416 or 503 responses are not recorded.
func (g *Gateway) auditDownload(w http.ResponseWriter, r *http.Request, id deviceIdentity, t cache.Target) http.ResponseWriter {
	if r.Method != http.MethodGet {
		return w
	}
	cache.NormalizeRange(r, t.Length)
	return &downloadAudit{ResponseWriter: w, fromStart: cache.RangeIncludesFirstByte(r, t.Length), record: func() {
		g.recordAudit(r.Context(), audit.Record{Actor: "device:" + id.key(), Action: "download", Subject: id.key(), Details: map[string]string{"target": t.Path}})
	}}
}

// downloadAudit is the ResponseWriter of an audited download. It keeps
// io.ReaderFrom, so a committed blob still goes out by sendfile.
type downloadAudit struct {
	http.ResponseWriter
	fromStart bool // a 206 response includes byte 0
	record    func()
	decided   bool
}

func (d *downloadAudit) WriteHeader(status int) {
	if !d.decided {
		d.decided = true
		if status == http.StatusOK || status == http.StatusPartialContent && d.fromStart {
			d.record()
		}
	}
	d.ResponseWriter.WriteHeader(status)
}

func (d *downloadAudit) Write(b []byte) (int, error) {
	if !d.decided {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(b)
}

func (d *downloadAudit) ReadFrom(src io.Reader) (int64, error) {
	if !d.decided {
		d.WriteHeader(http.StatusOK)
	}
	if rf, ok := d.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(d.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (d *downloadAudit) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (g *Gateway) handleMirror(w http.ResponseWriter, r *http.Request) {
	id, err := identify(r)
	if err != nil {
		writeError(w, http.StatusForbidden, "%v", err)
		return
	}
	// The escaped path is split by hand and each part decoded once,
	// because TUF clients escape role and target names differently.
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/tuf/")
	repo, file, ok := strings.Cut(rest, "/")
	if !ok || repo != g.cfg.Upstream.Repository {
		writeError(w, http.StatusNotFound, "no TUF repository %q on this gateway; it mirrors %q", repo, g.cfg.Upstream.Repository)
		return
	}
	switch {
	case strings.HasPrefix(file, "metadata/"):
		g.mirror.ServeMetadata(w, r, strings.TrimPrefix(file, "metadata/"))
	case strings.HasPrefix(file, "targets/"):
		name := strings.TrimPrefix(file, "targets/")
		t, ok := g.mirror.ResolveTarget(name)
		if !ok {
			writeError(w, http.StatusNotFound, "no target %s in the mirror", name)
			return
		}
		if denied := g.authorizeDownload(r, id, t); denied.status != 0 {
			denied.write(w)
			return
		}
		g.mirror.ServeTarget(g.auditDownload(w, r, id, t), r, name)
	default:
		writeError(w, http.StatusNotFound, "no %s under /tuf/%s/: use metadata/ or targets/", file, repo)
	}
}

// decodeOne decodes exactly one JSON value and rejects anything after it.
func decodeOne(dec *json.Decoder, v any) error {
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validateCheckIn rejects a check-in that lacks what policy needs, so an
// empty body cannot blank the device's stored record.
func validateCheckIn(req wire.CheckInRequest) error {
	for _, f := range []struct{ name, value string }{
		{"model", req.Model}, {"hardware_revision", req.HardwareRevision}, {"version", req.Version},
	} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%s is missing: every check-in reports model, hardware_revision and version", f.name)
		}
	}
	return nil
}

var installStates = map[string]bool{"downloading": true, "downloaded": true, "installing": true, "installed": true, "failed": true}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	id, err := identify(r)
	if err != nil {
		writeError(w, http.StatusForbidden, "%v", err)
		return
	}
	var rep wire.StatusReport
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := decodeOne(dec, &rep); err != nil {
		writeError(w, http.StatusBadRequest, "invalid status body: %v", err)
		return
	}
	if rep.Target == "" {
		writeError(w, http.StatusBadRequest, "invalid status body: target is missing")
		return
	}
	if !printable(rep.Detail) || len(rep.Detail) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid status body: detail must be at most 1024 printable characters")
		return
	}
	if !installStates[rep.State] {
		writeError(w, http.StatusBadRequest, "invalid state %q: use downloading, downloaded, installing, installed or failed", rep.State)
		return
	}
	t, ok := g.mirror.Target(rep.Target)
	if !ok {
		writeError(w, http.StatusNotFound, "target %q is not in the cache", rep.Target)
		return
	}
	g.recordAudit(r.Context(), audit.Record{Actor: "device:" + id.key(), Action: "install." + rep.State, Subject: id.key(), Details: map[string]string{"target": rep.Target, "detail": rep.Detail}})
	switch rep.State {
	case "installed":
		if err := g.markPending(r.Context(), id, t); err != nil {
			writeError(w, http.StatusInternalServerError, "recording install failed: %v", err)
			return
		}
		g.rolloutInstall(r.Context(), id.key(), t.Path, true, rep.Detail)
	case "failed":
		g.outbox.enqueue(r.Context(), installResult{Site: g.siteID, Target: t.Path, Version: t.Meta.Version, Model: "", Outcome: "failed", Detail: rep.Detail}, id.key()+"/"+t.Path+"/failed")
		g.rolloutInstall(r.Context(), id.key(), t.Path, false, rep.Detail)
	}
	w.WriteHeader(http.StatusNoContent)
}

// remoteAddr returns the request's source address and the name of the
// interface its listener is bound to, when known.
func remoteAddr(r *http.Request) (netip.Addr, string) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a, ""
	}
	return ap.Addr().Unmap(), ""
}

func policyDevice(d discovery.Device, site string) policy.Device {
	return policy.Device{
		Manufacturer:     d.Manufacturer,
		Serial:           d.Serial,
		Model:            d.Model,
		HardwareRevision: d.HardwareRevision,
		Version:          d.Version,
		Components:       d.Components,
		DeviceClass:      d.DeviceClass,
		Site:             site,
		InClinicalUse:    d.InClinicalUse,
		InMaintenance:    d.InMaintenance,
	}
}

func policyRelease(t cache.Target) policy.Release {
	return policy.Release{
		Target:            t.Path,
		Product:           t.Meta.Product,
		Version:           t.Meta.Version,
		Channel:           t.Meta.Channel,
		Models:            t.Meta.Models,
		HardwareRevisions: t.Meta.HardwareRevisions,
		Requires:          t.Meta.Requires,
		AllowRollback:     t.Meta.AllowRollback,
		SecurityFix:       t.Meta.SecurityFix,
		InstallDuration:   timeDuration(t.Meta.InstallDuration),
	}
}
