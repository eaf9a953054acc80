package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SchemaVersion is the device batch schema this package accepts.
const SchemaVersion = 1

// Event kinds a device may send. Each kind fixes what Name and Value mean;
// see Schema for the full description.
const (
	// KindCounter is a usage counter increment, such as "power_cycles" or
	// "screen_touches". Value is a whole number from 0 to 1e9, default 1.
	KindCounter = "counter"
	// KindProcedure counts procedures of one type, named by a procedure
	// code. Value is a whole number from 1 to 1e6, default 1.
	KindProcedure = "procedure"
	// KindRuntime adds runtime hours of a component such as "system" or
	// "pump". Value is required, hours from 0 to 1e5.
	KindRuntime = "runtime"
	// KindError counts occurrences of an error code. Value is a whole
	// number from 1 to 1e6, default 1.
	KindError = "error"
	// KindHealth reports a device-health value such as "battery_pct". The
	// name must be one of HealthMetrics and Value is required and within
	// that metric's range.
	KindHealth = "health"
)

// HealthRange is the allowed range of one device-health metric.
type HealthRange struct{ Min, Max float64 }

// HealthMetrics lists the device-health metrics a device may report with
// KindHealth, with their allowed ranges. Other names are dropped.
var HealthMetrics = map[string]HealthRange{
	"battery_pct":        {0, 100},
	"battery_health_pct": {0, 100},
	"battery_cycles":     {0, 1e6},
	"battery_voltage_v":  {0, 100},
	"temperature_c":      {-50, 150},
	"storage_free_pct":   {0, 100},
	"memory_free_pct":    {0, 100},
	"cpu_load_pct":       {0, 100},
	"signal_dbm":         {-150, 0},
}

// Limits bound a single device batch.
type Limits struct {
	// MaxEvents is the most events one batch may hold (default 1000).
	MaxEvents int
}

// maxNameLen bounds metric names and error codes.
const maxNameLen = 48

// Event is one validated device event.
type Event struct {
	Kind  string
	Name  string
	Value float64
}

// Batch is one validated device batch.
type Batch struct {
	// BatchID, when the device sent one, makes a retried POST of the same
	// batch count once: the queue remembers (device, batch id) for its
	// dedup window.
	BatchID string
	Events  []Event
}

// Decoded is the result of decoding a device batch.
type Decoded struct {
	Batch
	// Dropped counts events dropped because their kind or health metric
	// name is not on the allow-list.
	Dropped int
	// IgnoredFields lists (at most 16) unknown field names that were
	// dropped, for the response to the device.
	IgnoredFields []string
}

// DecodeError is a batch the gateway rejects. Status is the HTTP status to
// respond with (400 for malformed JSON, 413 for too many events, 422 for
// values outside the schema).
type DecodeError struct {
	Status int
	Msg    string
}

func (e *DecodeError) Error() string { return e.Msg }

func badRequest(format string, a ...any) error {
	return &DecodeError{Status: 400, Msg: fmt.Sprintf(format, a...)}
}

func unprocessable(format string, a ...any) error {
	return &DecodeError{Status: 422, Msg: fmt.Sprintf(format, a...)}
}

// wireBatch and wireEvent are the accepted JSON fields; json.RawMessage
// maps let DecodeBatch name the unknown fields it drops.
type wireEvent struct {
	Kind  *string  `json:"kind"`
	Name  *string  `json:"name"`
	Value *float64 `json:"value"`
}

// DecodeBatch parses and validates one device batch:
//
//	{"schema": 1, "batch_id": "b-0001", "events": [{"kind": "counter", "name": "power_cycles", "value": 1}, ...]}
//
// Unknown fields are dropped and named in IgnoredFields; events of an
// unknown kind or health metric are dropped and counted. Anything else that
// does not fit the schema fails the whole batch with a *DecodeError, so a
// batch is stored whole or not at all.
func DecodeBatch(data []byte, lim Limits) (*Decoded, error) {
	if lim.MaxEvents <= 0 {
		lim.MaxEvents = 1000
	}

	// The standard decoder validates the whole document first, so the raw
	// event array scanned below is known to be well-formed JSON.
	var top map[string]json.RawMessage
	if err := strictUnmarshal(data, &top); err != nil {
		return nil, badRequest("batch is not a JSON object: %v", err)
	}

	if top == nil {
		return nil, badRequest("batch is null: send a JSON object with an \"events\" array")
	}

	d := &Decoded{}
	ignore := func(name string) {
		if len(d.IgnoredFields) < 16 && !contains(d.IgnoredFields, name) {
			d.IgnoredFields = append(d.IgnoredFields, name)
		}
	}
	// seen reports whether an unknown field name needs no further work:
	// already listed, or the list is full.
	seen := func(name []byte) bool {
		if len(d.IgnoredFields) >= 16 {
			return true
		}
		for _, f := range d.IgnoredFields {
			if f == string(name) {
				return true
			}
		}
		return false
	}

	if v, ok := top["schema"]; ok {
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			return nil, badRequest("field \"schema\": %v", err)
		}
		if n != SchemaVersion {
			return nil, unprocessable("schema %d is not supported: send \"schema\": %d", n, SchemaVersion)
		}
	}

	if v, ok := top["batch_id"]; ok {
		if err := json.Unmarshal(v, &d.BatchID); err != nil {
			return nil, badRequest("field \"batch_id\": %v", err)
		}
		if !validBatchID(d.BatchID) {
			return nil, unprocessable("batch_id %q: want 1 to 64 letters, digits or ._:-", d.BatchID)
		}
	}

	for _, k := range slices.Sorted(maps.Keys(top)) {
		if k != "schema" && k != "batch_id" && k != "events" {
			ignore(k)
		}
	}

	objects, err := splitArray(top["events"])
	if err != nil {
		return nil, err
	}

	if len(objects) == 0 {
		return nil, unprocessable("batch has no events: send a non-empty \"events\" array")
	}

	if len(objects) > lim.MaxEvents {
		return nil, &DecodeError{Status: 413, Msg: fmt.Sprintf("batch has %d events, at most %d are allowed: split it", len(objects), lim.MaxEvents)}
	}

	d.Events = make([]Event, 0, len(objects))
	var sc scanner
	for i, obj := range objects {
		f, err := sc.scanEvent(i, obj, ignore, seen)
		if err != nil {
			return nil, err
		}

		var we wireEvent
		if f.hasKind {
			we.Kind = &f.kind
		}
		if f.hasName {
			we.Name = &f.name
		}
		if f.hasValue {
			we.Value = &f.value
		}
		ev, keep, err := validateEvent(i, we)
		if err != nil {
			return nil, err
		}
		if !keep {
			d.Dropped++
			continue
		}
		d.Events = append(d.Events, ev)
	}

	return d, nil
}

// rawString decodes a JSON string (or null) without reflection when it
// holds no escapes.
func rawString(v json.RawMessage) (*string, error) {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 {
		s := string(v[1 : len(v)-1])
		if utf8.ValidString(s) {
			return &s, nil
		}
	}
	var p *string
	err := json.Unmarshal(v, &p)
	return p, err
}

// rawNumber decodes a JSON number (or null). The raw value came from a
// valid JSON document, so a leading '-' or digit means a JSON number,
// whose grammar strconv.ParseFloat accepts.
func rawNumber(v json.RawMessage) (*float64, error) {
	if len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range", v)
		}
		return &f, nil
	}
	var p *float64
	err := json.Unmarshal(v, &p)
	return p, err
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func validateEvent(i int, we wireEvent) (Event, bool, error) {
	if we.Kind == nil {
		return Event{}, false, unprocessable("event %d has no \"kind\": use one of counter, procedure, runtime, error, health", i)
	}
	if we.Name == nil {
		return Event{}, false, unprocessable("event %d has no \"name\"", i)
	}
	ev := Event{Kind: *we.Kind, Name: *we.Name}
	switch ev.Kind {
	case KindCounter, KindProcedure, KindRuntime:
		if !validMetricName(ev.Name) {
			return Event{}, false, unprocessable("event %d name %q: want a lower-case code of letters, digits, '_' or '.', starting with a letter, at most %d bytes", i, ev.Name, maxNameLen)
		}
	case KindError:
		if !validErrorCode(ev.Name) {
			return Event{}, false, unprocessable("event %d error code %q: want letters, digits, '_', '.' or '-', at most 32 bytes", i, ev.Name)
		}
	case KindHealth:
		if _, ok := HealthMetrics[ev.Name]; !ok {
			return Event{}, false, nil
		}
	default:
		return Event{}, false, nil
	}
	var lo, hi, def float64
	whole, required := true, false
	switch ev.Kind {
	case KindCounter:
		lo, hi, def = 0, 1e9, 1
	case KindProcedure, KindError:
		lo, hi, def = 1, 1e6, 1
	case KindRuntime:
		lo, hi, whole, required = 0, 1e5, false, true
	case KindHealth:
		r := HealthMetrics[ev.Name]
		lo, hi, whole, required = r.Min, r.Max, false, true
	}
	if we.Value == nil {
		if required {
			return Event{}, false, unprocessable("event %d (%s %s) has no \"value\"", i, ev.Kind, ev.Name)
		}
		ev.Value = def
	} else {
		ev.Value = *we.Value
	}
	if math.IsNaN(ev.Value) || ev.Value < lo || ev.Value > hi || whole && ev.Value != math.Trunc(ev.Value) {
		kind := "number"
		if whole {
			kind = "whole number"
		}
		return Event{}, false, unprocessable("event %d (%s %s) value %v: want a %s from %v to %v", i, ev.Kind, ev.Name, ev.Value, kind, lo, hi)
	}
	return ev, true, nil
}

func validMetricName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validErrorCode(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validBatchID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == ':' || r == '-')
	}) < 0
}

// histogramBounds returns the fixed bucket upper bounds for a metric, so
// that every gateway's cells for the same metric merge at the hub.
func histogramBounds(kind, name string) []float64 {
	switch kind {
	case KindRuntime:
		return []float64{0.1, 0.5, 1, 2, 4, 8, 12, 24, 100}
	case KindHealth:
		r := HealthMetrics[name]
		b := make([]float64, 9)
		for i := range b {
			b[i] = r.Min + (r.Max-r.Min)*float64(i+1)/10
		}
		return b
	default:
		return []float64{0, 1, 2, 5, 10, 20, 50, 100, 1000, 10000}
	}
}
