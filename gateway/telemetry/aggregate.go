package telemetry

import (
	"cmp"
	"encoding/hex"
	"math"
	"slices"
	"time"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

type cellKey struct {
	period                                          int64 // unix seconds of the period start
	manufacturer, model, version, class, kind, name string
}

type cellAcc struct {
	devices map[[8]byte]struct{}
	stats   wire.Stats
}

type deviceCellKey struct {
	cellKey
	device [8]byte
}

// aggregator folds queue records into de-identified cells.
type aggregator struct {
	period    time.Duration
	perDevice map[string]bool
	cells     map[cellKey]*cellAcc
	devCells  map[deviceCellKey]*wire.Stats
	events    uint64
	batches   int
	minPeriod int64
	maxPeriod int64
}

func newAggregator(period time.Duration, perDevice map[string]bool) *aggregator {
	return &aggregator{
		period: period, perDevice: perDevice,
		cells: make(map[cellKey]*cellAcc), devCells: make(map[deviceCellKey]*wire.Stats),
		minPeriod: math.MaxInt64, maxPeriod: math.MinInt64,
	}
}

// periodStart returns the start, in unix seconds, of the period holding t
// (unix nanoseconds).
func periodStart(t int64, period time.Duration) int64 {
	p := int64(period)
	q := t / p
	if t%p < 0 {
		q--
	}
	return q * p / int64(time.Second)
}

func newStats(kind, name string) wire.Stats {
	b := histogramBounds(kind, name)
	return wire.Stats{Bounds: b, Counts: make([]uint64, len(b)+1)}
}

func addValue(s *wire.Stats, v float64) {
	if s.Events == 0 {
		s.Min, s.Max = v, v
	} else {
		s.Min = math.Min(s.Min, v)
		s.Max = math.Max(s.Max, v)
	}
	s.Events++
	s.Sum += v
	i, _ := slices.BinarySearch(s.Bounds, v)
	s.Counts[i]++
}

func (a *aggregator) add(rec record) {
	ps := periodStart(rec.Received, a.period)
	a.minPeriod = min(a.minPeriod, ps)
	a.maxPeriod = max(a.maxPeriod, ps)
	a.batches++
	d := rec.Device
	for _, e := range rec.Events {
		k := cellKey{ps, d.Manufacturer, d.Model, d.Version, d.Class, e.Kind, e.Name}
		c := a.cells[k]
		if c == nil {
			c = &cellAcc{devices: make(map[[8]byte]struct{}), stats: newStats(e.Kind, e.Name)}
			a.cells[k] = c
		}
		c.devices[d.Pseudonym] = struct{}{}
		addValue(&c.stats, e.Value)
		a.events++
		if a.perDevice[d.Manufacturer] {
			dk := deviceCellKey{k, d.Pseudonym}
			s := a.devCells[dk]
			if s == nil {
				st := newStats(e.Kind, e.Name)
				s = &st
				a.devCells[dk] = s
			}
			addValue(s, e.Value)
		}
	}
}

func (k cellKey) dims() wire.Dims {
	return wire.Dims{
		Period: time.Unix(k.period, 0).UTC(), Manufacturer: k.manufacturer, Model: k.model,
		Version: k.version, DeviceClass: k.class, Kind: k.kind, Name: k.name,
	}
}

func compareKeys(a, b cellKey) int {
	return cmp.Or(cmp.Compare(a.period, b.period), cmp.Compare(a.manufacturer, b.manufacturer),
		cmp.Compare(a.model, b.model), cmp.Compare(a.version, b.version), cmp.Compare(a.class, b.class),
		cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
}

// build returns the payload: cells covering at least minDevices distinct
// devices, with complementary suppression so that no single withheld cell
// can be derived from the upload's event total.
func (a *aggregator) build(site string, seq uint64, minDevices int) *wire.Payload {
	keys := make([]cellKey, 0, len(a.cells))
	for k := range a.cells {
		keys = append(keys, k)
	}

	slices.SortFunc(keys, compareKeys)
	withheld := make(map[cellKey]bool)
	lone := 0
	for _, k := range keys {
		if len(a.cells[k].devices) < minDevices {
			withheld[k] = true
			if !a.perDevice[k.manufacturer] {
				lone++
			}
		}
	}

	if lone == 1 {
		// Withhold the published cell that reveals least: fewest devices,
		// then fewest events. Cells of per-device manufacturers do not
		// count, because their device cells reveal them anyway.
		var pick *cellKey
		for i := range keys {
			k := &keys[i]
			if withheld[*k] || a.perDevice[k.manufacturer] {
				continue
			}
			if pick == nil || lessRevealing(a.cells[*k], a.cells[*pick]) {
				pick = k
			}
		}
		if pick != nil {
			withheld[*pick] = true
		}
	}

	p := &wire.Payload{
		Format: wire.Format, Version: wire.Version, Site: site, Seq: seq,
		PeriodSeconds: int64(a.period / time.Second), MinCellDevices: minDevices,
		Events: a.events, Cells: []wire.Cell{},
	}

	for _, k := range keys {
		c := a.cells[k]
		if withheld[k] {
			p.WithheldCells++
			p.WithheldEvents += c.stats.Events
			continue
		}
		p.Cells = append(p.Cells, wire.Cell{Dims: k.dims(), Devices: len(c.devices), Stats: c.stats})
	}

	dkeys := make([]deviceCellKey, 0, len(a.devCells))
	for k := range a.devCells {
		dkeys = append(dkeys, k)
	}

	slices.SortFunc(dkeys, func(x, y deviceCellKey) int {
		return cmp.Or(compareKeys(x.cellKey, y.cellKey), slices.Compare(x.device[:], y.device[:]))
	})
	for _, k := range dkeys {
		p.DeviceCells = append(p.DeviceCells, wire.DeviceCell{Dims: k.dims(), Device: hex.EncodeToString(k.device[:]), Stats: *a.devCells[k]})
	}

	return p
}

func lessRevealing(x, y *cellAcc) bool {
	if len(x.devices) != len(y.devices) {
		return len(x.devices) < len(y.devices)
	}
	return x.stats.Events < y.stats.Events
}
