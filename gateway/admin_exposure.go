package gateway

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cache/advisory"
	"github.com/wardgate/wardgate/cache/exposure"
	"github.com/wardgate/wardgate/discovery"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/console"
)

// fleetExposure answers exposure questions from the cached release SBOMs,
// the advisories (published through TUF or imported) and the inventory.
// It brings its index up to date at each query: releases and advisory
// targets new in the mirror are added, and each device is assigned the
// cached release whose model and version it reports.
type fleetExposure struct {
	g   *Gateway
	adv *advisory.Store
	idx *exposure.Index
	ev  *exposure.Evaluator

	mu        sync.Mutex
	indexed   map[string]string    // release target -> SBOM sha256
	advisorys map[string]bool      // advisory target sha256 already added
	tried     map[string]time.Time // SBOM path -> last fetch attempt that failed
}

func newFleetExposure(g *Gateway) (*fleetExposure, error) {
	adv, err := advisory.NewStore(g.db, g.log.With("component", "advisories"), g.reg)
	if err != nil {
		return nil, fmt.Errorf("opening the advisory store: %w", err)
	}
	if err := adv.Load(context.Background()); err != nil {
		return nil, fmt.Errorf("loading advisories: %w", err)
	}
	idx, err := exposure.NewIndex(g.log.With("component", "exposure"), g.reg)
	if err != nil {
		return nil, err
	}
	return &fleetExposure{g: g, adv: adv, idx: idx, ev: exposure.NewEvaluator(idx, adv), indexed: map[string]string{}, advisorys: map[string]bool{}, tried: map[string]time.Time{}}, nil
}

// Advisories returns the gateway's advisory store, for imports.
func (g *Gateway) Advisories() *advisory.Store {
	if f, ok := g.admin.exposure.(*fleetExposure); ok {
		return f.adv
	}
	return nil
}

func (f *fleetExposure) readTarget(t cache.Target) ([]byte, bool) {
	file, n, err := f.g.blobs.Open(t.SHA256())
	if err != nil {
		return nil, false
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, min(n, 64<<20)))
	return data, err == nil
}

// refresh brings the index up to date with the mirror and inventory.
func (f *fleetExposure) refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	targets := f.g.mirror.Targets()
	for _, t := range targets {
		switch {
		case t.HasMeta && t.Meta.Kind == cache.KindRelease && t.Meta.SBOM != "":
			sb, ok := f.g.mirror.Target(t.Meta.SBOM)
			if !ok || f.indexed[t.Path] == sb.SHA256() {
				continue
			}
			data, ok := f.readTarget(sb)
			if !ok {
				// SBOMs are small: pull one that is not cached yet, but
				// retry a failed pull only every few minutes, so pages do
				// not wait on a hub that is down.
				if time.Since(f.tried[sb.Path]) < 5*time.Minute {
					continue
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := f.g.mirror.Prefetch(pctx, sb.Path)
				cancel()
				if err != nil {
					f.tried[sb.Path] = time.Now()
					f.g.log.Debug("SBOM not cached and not fetched", "sbom", sb.Path, "err", err)
					continue
				}
				if data, ok = f.readTarget(sb); !ok {
					continue
				}
			}
			warns, err := f.idx.AddReleaseSBOM(t.Path, data)
			if err != nil {
				f.g.log.Warn("release SBOM not indexed", "release", t.Path, "sbom", sb.Path, "err", err)
				continue
			}
			if len(warns) > 0 {
				f.g.log.Debug("release SBOM indexed with warnings", "release", t.Path, "warnings", len(warns))
			}
			f.indexed[t.Path] = sb.SHA256()
		case t.HasMeta && t.Meta.Kind == cache.KindAdvisory:
			if f.advisorys[t.SHA256()] {
				continue
			}
			data, ok := f.readTarget(t)
			if !ok {
				continue
			}
			res, err := f.adv.Add(ctx, data, advisory.Source{Origin: "tuf", Name: t.Path, Release: t.Meta.Release})
			if err != nil {
				f.g.log.Warn("advisory target not loaded", "target", t.Path, "err", err)
				continue
			}
			f.advisorys[t.SHA256()] = true
			if len(res.Added)+len(res.Replaced) > 0 {
				f.g.recordAudit(ctx, audit.Record{Actor: "hub", Action: "advisory.load", Subject: t.Path, Details: map[string]string{
					"added": fmt.Sprint(len(res.Added)), "replaced": fmt.Sprint(len(res.Replaced)), "kind": string(res.Kind)}})
			}
		}
	}
	devs, err := f.g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return err
	}
	snap := make(map[string]string, len(devs))
	for _, d := range devs {
		snap[indexID(d)] = runningRelease(targets, d)
	}
	return f.idx.SetDevices(snap)
}

// indexID names a device in the exposure index, which refuses spaces
// and control characters in ids: each part is path-escaped.
func indexID(d discovery.Device) string {
	return url.PathEscape(d.Manufacturer) + "/" + url.PathEscape(d.Serial)
}

// runningRelease is the cached release a device's model and version name.
func runningRelease(targets []cache.Target, d discovery.Device) string {
	for _, t := range targets {
		m := t.Meta
		if t.HasMeta && m.Kind == cache.KindRelease && m.Version == d.Version && slices.Contains(m.Models, d.Model) &&
			(len(m.HardwareRevisions) == 0 || slices.Contains(m.HardwareRevisions, d.HardwareRevision)) {
			return t.Path
		}
	}
	return ""
}

// Exposure implements ExposureSource.
func (f *fleetExposure) Exposure(ctx context.Context, id string) (console.Exposure, error) {
	if err := f.refresh(ctx); err != nil {
		return console.Exposure{}, err
	}
	groups := f.adv.Groups()
	out := console.Exposure{ID: id, Loaded: len(groups) > 0, Advisories: len(groups)}
	if !out.Loaded {
		return out, nil
	}
	devs, err := f.g.inventory.List(ctx, discovery.Filter{})
	if err != nil {
		return out, err
	}
	byID := make(map[string]discovery.Device, len(devs))
	for _, d := range devs {
		byID[indexID(d)] = d
	}
	if id == "" {
		rep := f.ev.Risk(exposure.RiskOptions{Limit: 50})
		for _, r := range rep.Devices {
			d := byID[r.Device]
			out.Risk = append(out.Risk, console.RiskRow{Device: d.Manufacturer + "/" + d.Serial, Model: d.Model, Version: d.Version,
				Open: r.Affected + r.UnderInvestigation, Highest: r.MaxSeverity, FixRelease: r.RecommendedRelease})
		}
		return out, nil
	}
	rep := f.ev.Exposure(id, exposure.ExposureOptions{})
	out.Known, out.Summary, out.Severity = rep.Known, rep.Summary, rep.Severity
	for _, a := range rep.IDs {
		if a != id {
			out.Aliases = append(out.Aliases, a)
		}
	}
	for _, st := range slices.SortedFunc(maps.Keys(rep.Counts), func(a, b advisory.Status) int { return cmp.Compare(b.Rank(), a.Rank()) }) {
		out.Counts = append(out.Counts, console.Count{Label: string(st), N: rep.Counts[st]})
	}
	fixed := map[string]bool{}
	for _, s := range rep.Devices {
		d := byID[s.Device]
		out.Devices = append(out.Devices, console.ExposedDevice{Device: d.Manufacturer + "/" + d.Serial, Model: d.Model, Version: d.Version, Release: s.Release,
			Status: string(s.Status), Justification: s.Justification, Detail: s.Detail, FixedIn: s.FixedIn()})
		if v := s.FixedIn(); v != "" {
			fixed[v] = true
		}
	}
	out.FixedBy = slices.Sorted(maps.Keys(fixed))
	return out, nil
}
