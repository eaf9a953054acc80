package analytics

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// Dimensions a Query can keep in its rows (GroupBy).
const (
	DimPeriod       = "period"
	DimManufacturer = "manufacturer"
	DimModel        = "model"
	DimVersion      = "version"
	DimDeviceClass  = "device_class"
	DimMetric       = "metric" // kind and name together
)

var allDims = []string{DimPeriod, DimManufacturer, DimModel, DimVersion, DimDeviceClass, DimMetric}

// Query selects cells. Empty text fields match everything; From and To
// bound the period start (From inclusive, To exclusive; zero means open).
// GroupBy lists the dimensions kept in the rows (default all); cells that
// differ only in dropped dimensions are merged into one row.
type Query struct {
	Manufacturer, Model, Version, DeviceClass, Kind, Name string
	From, To                                              time.Time
	GroupBy                                               []string
}

// Row is one line of a query result. Dimensions not kept by GroupBy are
// empty (and Period zero).
type Row struct {
	Period       time.Time `json:"period,omitzero"`
	Manufacturer string    `json:"manufacturer,omitempty"`
	Model        string    `json:"model,omitempty"`
	Version      string    `json:"version,omitempty"`
	DeviceClass  string    `json:"device_class,omitempty"`
	Kind         string    `json:"kind,omitempty"`
	Name         string    `json:"name,omitempty"`
	// Sites is the number of sites contributing.
	Sites int `json:"sites"`
	// Devices adds up each site's distinct devices per cell. A device that
	// changed version within a period counts in both versions, so after a
	// merge across versions Devices is an upper bound.
	Devices int     `json:"devices"`
	Events  uint64  `json:"events"`
	Sum     float64 `json:"sum"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
	// Bounds and Counts are the histogram (see wire.Stats); rows that mix
	// metrics with different bounds carry none.
	Bounds []float64 `json:"bounds,omitempty"`
	Counts []uint64  `json:"counts,omitempty"`
}

func (q *Query) normalize() error {
	if len(q.GroupBy) == 0 {
		q.GroupBy = allDims
	}
	for _, d := range q.GroupBy {
		if !slices.Contains(allDims, d) {
			return fmt.Errorf("group by %q: want some of %s", d, strings.Join(allDims, ", "))
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return fmt.Errorf("period range %v to %v is empty: 'to' must be after 'from'", q.From, q.To)
	}
	return nil
}

type rowKey struct {
	period                                          int64
	manufacturer, model, version, class, kind, name string
}

type rowAcc struct {
	Row
	sites  map[string]bool
	merged bool
}

// Query returns the rows matching q, ordered by period and dimensions.
func (s *Store) Query(ctx context.Context, q Query) ([]Row, error) {
	if err := q.normalize(); err != nil {
		return nil, fmt.Errorf("querying analytics: %w", err)
	}
	keep := func(d string) bool { return slices.Contains(q.GroupBy, d) }
	acc := make(map[rowKey]*rowAcc)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixCell, PrefetchValues: false})
		defer it.Close()
		start := prefixCell
		if !q.From.IsZero() {
			start = binaryTime(append([]byte{}, prefixCell...), q.From)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			k := item.Key()[len(prefixCell):]
			if len(k) < 8 {
				continue
			}
			period := decodePeriod(k)
			if !q.To.IsZero() && !period.Before(q.To) {
				break
			}
			parts := bytes.Split(k[8:], []byte{0})
			if len(parts) != 8 {
				continue
			}
			dims := wire.Dims{Period: period, Manufacturer: string(parts[1]), Model: string(parts[2]), Version: string(parts[3]),
				DeviceClass: string(parts[4]), Kind: string(parts[5]), Name: string(parts[6])}
			site := string(parts[7])
			if !q.matches(&dims) {
				continue
			}
			var c storedCell
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return fmt.Errorf("decoding cell: %w", err)
			}
			rk := rowKey{}
			if keep(DimPeriod) {
				rk.period = period.Unix()
			}
			if keep(DimManufacturer) {
				rk.manufacturer = dims.Manufacturer
			}
			if keep(DimModel) {
				rk.model = dims.Model
			}
			if keep(DimVersion) {
				rk.version = dims.Version
			}
			if keep(DimDeviceClass) {
				rk.class = dims.DeviceClass
			}
			if keep(DimMetric) {
				rk.kind, rk.name = dims.Kind, dims.Name
			}
			r := acc[rk]
			if r == nil {
				r = &rowAcc{sites: make(map[string]bool)}
				r.Row = Row{Manufacturer: rk.manufacturer, Model: rk.model, Version: rk.version, DeviceClass: rk.class, Kind: rk.kind, Name: rk.name,
					Min: c.Min, Max: c.Max, Bounds: slices.Clone(c.Bounds), Counts: make([]uint64, len(c.Counts))}
				if keep(DimPeriod) {
					r.Period = period
				}
				acc[rk] = r
			}
			r.sites[site] = true
			r.Devices += c.Devices
			r.Events += c.Events
			r.Sum += c.Sum
			r.Min = min(r.Min, c.Min)
			r.Max = max(r.Max, c.Max)
			if r.Counts != nil && slices.Equal(r.Bounds, c.Bounds) {
				for i := range r.Counts {
					r.Counts[i] += c.Counts[i]
				}
			} else {
				r.Bounds, r.Counts = nil, nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("querying analytics: %w", err)
	}
	rows := make([]Row, 0, len(acc))
	for _, r := range acc {
		r.Sites = len(r.sites)
		if r.Events > 0 {
			r.Mean = r.Sum / float64(r.Events)
		}
		rows = append(rows, r.Row)
	}
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(a.Period.Compare(b.Period), cmp.Compare(a.Manufacturer, b.Manufacturer), cmp.Compare(a.Model, b.Model),
			cmp.Compare(a.Version, b.Version), cmp.Compare(a.DeviceClass, b.DeviceClass), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return rows, nil
}

func match(want, got string) bool { return want == "" || want == got }

func (q *Query) matches(d *wire.Dims) bool {
	return match(q.Manufacturer, d.Manufacturer) && match(q.Model, d.Model) && match(q.Version, d.Version) &&
		match(q.DeviceClass, d.DeviceClass) && match(q.Kind, d.Kind) && match(q.Name, d.Name)
}
