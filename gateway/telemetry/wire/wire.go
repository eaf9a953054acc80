// Package wire defines the upload payload that the gateway's telemetry relay
// sends to wardhub and that the hub's analytics store decodes: de-identified
// aggregate cells for one contiguous run of the gateway's telemetry queue.
//
// Version 1, encoded as one JSON object:
//
//	{
//	  "format": "wardgate-telemetry",   // constant
//	  "version": 1,                     // this layout; a hub rejects versions it does not know
//	  "site": "s-3f9a...",              // the random site id issued at enrolment, nothing else
//	  "seq": 42,                        // upload sequence number; the idempotency key is "site:seq"
//	  "period_seconds": 3600,           // aggregation period; cell periods are multiples of it
//	  "min_cell_devices": 11,           // small-cell threshold the gateway applied
//	  "events": 123456,                 // raw device events this upload accounts for, withheld ones included
//	  "withheld_events": 40,            // events in suppressed cells (see below)
//	  "withheld_cells": 2,              // number of suppressed cells
//	  "cells": [Cell...],               // published aggregate cells
//	  "device_cells": [DeviceCell...]   // per-device forwarding, only for manufacturers the site enabled
//	}
//
// Small-cell suppression withholds every cell covering fewer distinct
// devices than min_cell_devices. Subtracting the published cells' events
// from events gives withheld_events, so a lone withheld cell could be
// derived from that total. The gateway therefore withholds a second
// (complementary) cell whenever exactly one would be withheld. Only an
// upload with nothing to pair its one withheld cell with has
// withheld_cells 1.
//
// A Cell covers one period, manufacturer, model, software version, device
// class and metric (kind and name), and carries the number of distinct
// devices, raw events, sum, minimum, maximum and a histogram whose bucket
// upper bounds are given with it (the last bucket is unbounded). Periods are
// RFC 3339 UTC timestamps of the period start: no exact event time, serial,
// address, host or instance name, URL, free text or operator id is part of
// the format.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// Format is the constant value of Payload.Format.
const Format = "wardgate-telemetry"

// Version is the payload layout this package writes and reads.
const Version = 1

// MaxDimLen bounds each text dimension of a cell in bytes.
const MaxDimLen = 64

// MaxHistogramBuckets bounds the length of a cell's histogram.
const MaxHistogramBuckets = 64

// Payload is one upload from a gateway's telemetry relay.
type Payload struct {
	Format         string       `json:"format"`
	Version        int          `json:"version"`
	Site           string       `json:"site"`
	Seq            uint64       `json:"seq"`
	PeriodSeconds  int64        `json:"period_seconds"`
	MinCellDevices int          `json:"min_cell_devices"`
	Events         uint64       `json:"events"`
	WithheldEvents uint64       `json:"withheld_events"`
	WithheldCells  int          `json:"withheld_cells"`
	Cells          []Cell       `json:"cells"`
	DeviceCells    []DeviceCell `json:"device_cells,omitempty"`
}

// Dims names what a cell aggregates over.
type Dims struct {
	// Period is the start of the aggregation period, UTC.
	Period       time.Time `json:"period"`
	Manufacturer string    `json:"manufacturer"`
	Model        string    `json:"model"`
	Version      string    `json:"version"`
	DeviceClass  string    `json:"device_class"`
	// Kind is the event kind ("counter", "procedure", "runtime", "error",
	// "health") and Name the metric within it.
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Stats are the aggregate values of a cell.
type Stats struct {
	// Events is the number of raw device events aggregated.
	Events uint64  `json:"events"`
	Sum    float64 `json:"sum"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Bounds are the histogram's bucket upper bounds (inclusive), ascending;
	// Counts has one more entry than Bounds, the last for values above the
	// largest bound.
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
}

// Cell is one published aggregate.
type Cell struct {
	Dims
	// Devices is the number of distinct devices the cell covers.
	Devices int `json:"devices"`
	Stats
}

// DeviceCell is one device's aggregate for a manufacturer whose per-device
// forwarding the site enabled. Device is a random pseudonym the gateway
// assigned; it is not derived from the serial number or any other identifier.
type DeviceCell struct {
	Dims
	Device string `json:"device"`
	Stats
}

// Key returns the idempotency key for a site's upload sequence number.
func Key(site string, seq uint64) string { return fmt.Sprintf("%s:%d", site, seq) }

// Encode returns the payload's canonical JSON encoding.
func Encode(p *Payload) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding telemetry payload: %w", err)
	}
	return b, nil
}

// Decode parses and validates one payload. Unknown fields are an error, so a
// gateway and hub that disagree on the layout fail loudly.
func Decode(b []byte) (*Payload, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Payload
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decoding telemetry payload: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding telemetry payload: trailing data after the JSON object")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the payload's invariants: known format and version, sane
// dimensions and statistics, and event totals that add up.
func (p *Payload) Validate() error {
	if p.Format != Format {
		return fmt.Errorf("payload format %q: want %q", p.Format, Format)
	}
	if p.Version != Version {
		return fmt.Errorf("payload version %d: this build reads version %d", p.Version, Version)
	}
	if err := ValidSite(p.Site); err != nil {
		return err
	}
	if p.PeriodSeconds <= 0 {
		return fmt.Errorf("payload period_seconds %d: want a positive number", p.PeriodSeconds)
	}
	if p.MinCellDevices < 1 {
		return fmt.Errorf("payload min_cell_devices %d: want at least 1", p.MinCellDevices)
	}
	if p.WithheldCells < 0 {
		return fmt.Errorf("payload withheld_cells %d: want 0 or more", p.WithheldCells)
	}
	var published uint64
	seen := make(map[Dims]bool, len(p.Cells))
	for i := range p.Cells {
		c := &p.Cells[i]
		if seen[c.Dims] {
			return fmt.Errorf("cell %d: the same dimensions appear twice", i)
		}
		seen[c.Dims] = true
		if err := c.Dims.validate(); err != nil {
			return fmt.Errorf("cell %d: %w", i, err)
		}
		if c.Period.Unix()%p.PeriodSeconds != 0 {
			return fmt.Errorf("cell %d: period %v is not a multiple of %d seconds", i, c.Period, p.PeriodSeconds)
		}
		if c.Devices < p.MinCellDevices {
			return fmt.Errorf("cell %d: covers %d devices, below the payload's threshold %d", i, c.Devices, p.MinCellDevices)
		}
		if err := c.Stats.validate(); err != nil {
			return fmt.Errorf("cell %d: %w", i, err)
		}
		published += c.Events
		if published < c.Events {
			return errors.New("payload cell events overflow")
		}
	}
	if published+p.WithheldEvents != p.Events || published+p.WithheldEvents < published {
		return fmt.Errorf("payload events %d: cells hold %d and %d are withheld", p.Events, published, p.WithheldEvents)
	}
	if p.WithheldCells == 0 && p.WithheldEvents != 0 {
		return fmt.Errorf("payload withheld_events %d with no withheld cells", p.WithheldEvents)
	}
	for i := range p.DeviceCells {
		d := &p.DeviceCells[i]
		if err := d.Dims.validate(); err != nil {
			return fmt.Errorf("device cell %d: %w", i, err)
		}
		if !validPseudonym(d.Device) {
			return fmt.Errorf("device cell %d: device %q is not a 16-digit hex pseudonym", i, d.Device)
		}
		if err := d.Stats.validate(); err != nil {
			return fmt.Errorf("device cell %d: %w", i, err)
		}
	}
	return nil
}

// ValidSite checks a site id: 8 to 64 letters, digits, '-' or '_'.
func ValidSite(s string) error {
	if len(s) < 8 || len(s) > 64 {
		return fmt.Errorf("site id %q: want 8 to 64 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("site id %q: only letters, digits, '-' and '_' are allowed", s)
		}
	}
	return nil
}

func validPseudonym(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// ValidDim reports whether s may be a text dimension: 1 to MaxDimLen bytes
// of printable UTF-8 with no control characters.
func ValidDim(s string) bool {
	if len(s) == 0 || len(s) > MaxDimLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func (d *Dims) validate() error {
	if _, off := d.Period.Zone(); d.Period.IsZero() || off != 0 || d.Period.Nanosecond() != 0 {
		return fmt.Errorf("period %v: want a whole-second UTC period start", d.Period)
	}
	for _, f := range []struct{ name, v string }{
		{"manufacturer", d.Manufacturer}, {"model", d.Model}, {"version", d.Version},
		{"device_class", d.DeviceClass}, {"kind", d.Kind}, {"name", d.Name},
	} {
		if !ValidDim(f.v) {
			return fmt.Errorf("%s %q: want 1 to %d printable characters", f.name, f.v, MaxDimLen)
		}
	}
	return nil
}

func (s *Stats) validate() error {
	if s.Events == 0 {
		return errors.New("stats cover no events")
	}
	for _, v := range []float64{s.Sum, s.Min, s.Max} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("stats hold a non-finite number")
		}
	}
	if s.Min > s.Max {
		return fmt.Errorf("stats min %v above max %v", s.Min, s.Max)
	}
	if len(s.Bounds) > MaxHistogramBuckets || len(s.Counts) != len(s.Bounds)+1 {
		return fmt.Errorf("histogram has %d bounds and %d counts: want n bounds and n+1 counts, n at most %d", len(s.Bounds), len(s.Counts), MaxHistogramBuckets)
	}
	for i := 1; i < len(s.Bounds); i++ {
		if !(s.Bounds[i] > s.Bounds[i-1]) {
			return errors.New("histogram bounds are not ascending")
		}
	}
	var n uint64
	for _, c := range s.Counts {
		n += c
		if n < c {
			return errors.New("histogram counts overflow")
		}
	}
	if n != s.Events {
		return fmt.Errorf("histogram counts add up to %d, want events %d", n, s.Events)
	}
	return nil
}

// Merge adds o into s. Both must have the same histogram bounds.
func (s *Stats) Merge(o *Stats) error {
	if len(s.Bounds) != len(o.Bounds) {
		return errors.New("merging stats with different histogram bounds")
	}
	for i := range s.Bounds {
		if s.Bounds[i] != o.Bounds[i] {
			return errors.New("merging stats with different histogram bounds")
		}
	}
	if s.Events == 0 {
		s.Min, s.Max = o.Min, o.Max
	} else {
		s.Min = math.Min(s.Min, o.Min)
		s.Max = math.Max(s.Max, o.Max)
	}
	s.Events += o.Events
	s.Sum += o.Sum
	for i := range s.Counts {
		s.Counts[i] += o.Counts[i]
	}
	return nil
}
