package telemetry

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestDecodeBatch(t *testing.T) {
	many := `{"events":[` + strings.Repeat(`{"kind":"counter","name":"a"},`, 10) + `{"kind":"counter","name":"a"}]}`
	tests := []struct {
		name        string
		body        string
		wantStatus  int // 0 for success
		wantEvents  []Event
		wantDropped int
		wantIgnored []string
		wantBatchID string
	}{
		{name: "valid", body: `{"schema":1,"batch_id":"b-1","events":[{"kind":"counter","name":"power_cycles","value":3},{"kind":"health","name":"battery_pct","value":87.5}]}`,
			wantEvents: []Event{{KindCounter, "power_cycles", 3}, {KindHealth, "battery_pct", 87.5}}, wantBatchID: "b-1"},
		{name: "defaults", body: `{"events":[{"kind":"counter","name":"c"},{"kind":"procedure","name":"infusion.start"},{"kind":"error","name":"E-1042"}]}`,
			wantEvents: []Event{{KindCounter, "c", 1}, {KindProcedure, "infusion.start", 1}, {KindError, "E-1042", 1}}},
		{name: "unknown fields dropped", body: `{"serial":"SN1","events":[{"kind":"runtime","name":"pump","value":0.5,"ip":"10.0.0.1","mac":"aa:bb"}]}`,
			wantEvents: []Event{{KindRuntime, "pump", 0.5}}, wantIgnored: []string{"serial", "ip", "mac"}},
		{name: "unknown kind dropped", body: `{"events":[{"kind":"note","name":"x","value":1},{"kind":"counter","name":"c"}]}`,
			wantEvents: []Event{{KindCounter, "c", 1}}, wantDropped: 1},
		{name: "unknown health metric dropped", body: `{"events":[{"kind":"health","name":"patient_weight","value":80}]}`,
			wantEvents: []Event{}, wantDropped: 1},
		{name: "not json", body: `{"events":[`, wantStatus: 400},
		{name: "trailing data", body: `{"events":[{"kind":"counter","name":"c"}]} {}`, wantStatus: 400},
		{name: "array at top", body: `[{"kind":"counter","name":"c"}]`, wantStatus: 400},
		{name: "null", body: `null`, wantStatus: 400},
		{name: "events not array", body: `{"events":{"kind":"counter"}}`, wantStatus: 400},
		{name: "event not object", body: `{"events":[1]}`, wantStatus: 400},
		{name: "value is a string", body: `{"events":[{"kind":"counter","name":"c","value":"3"}]}`, wantStatus: 400},
		{name: "number out of float range", body: `{"events":[{"kind":"counter","name":"c","value":1e999}]}`, wantStatus: 400},
		{name: "no events", body: `{"schema":1}`, wantStatus: 422},
		{name: "empty events", body: `{"events":[]}`, wantStatus: 422},
		{name: "too many events", body: many, wantStatus: 413},
		{name: "unsupported schema", body: `{"schema":2,"events":[{"kind":"counter","name":"c"}]}`, wantStatus: 422},
		{name: "bad batch id", body: `{"batch_id":"has space","events":[{"kind":"counter","name":"c"}]}`, wantStatus: 422},
		{name: "negative counter", body: `{"events":[{"kind":"counter","name":"c","value":-1}]}`, wantStatus: 422},
		{name: "fractional counter", body: `{"events":[{"kind":"counter","name":"c","value":1.5}]}`, wantStatus: 422},
		{name: "zero procedures", body: `{"events":[{"kind":"procedure","name":"p","value":0}]}`, wantStatus: 422},
		{name: "battery over 100", body: `{"events":[{"kind":"health","name":"battery_pct","value":101}]}`, wantStatus: 422},
		{name: "runtime without value", body: `{"events":[{"kind":"runtime","name":"pump"}]}`, wantStatus: 422},
		{name: "upper-case metric name", body: `{"events":[{"kind":"counter","name":"Patient"}]}`, wantStatus: 422},
		{name: "free text name", body: `{"events":[{"kind":"counter","name":"john smith"}]}`, wantStatus: 422},
		{name: "long error code", body: `{"events":[{"kind":"error","name":"` + strings.Repeat("E", 33) + `"}]}`, wantStatus: 422},
		{name: "missing kind", body: `{"events":[{"name":"c"}]}`, wantStatus: 422},
		{name: "missing name", body: `{"events":[{"kind":"counter"}]}`, wantStatus: 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DecodeBatch([]byte(tt.body), Limits{MaxEvents: 10})
			if tt.wantStatus != 0 {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("got %v, want a DecodeError with status %d", err, tt.wantStatus)
				}
				if de.Status != tt.wantStatus {
					t.Fatalf("got status %d (%s), want %d", de.Status, de.Msg, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want success", err)
			}
			if !slices.Equal(d.Events, tt.wantEvents) {
				t.Errorf("events: got %v, want %v", d.Events, tt.wantEvents)
			}
			if d.Dropped != tt.wantDropped {
				t.Errorf("dropped: got %d, want %d", d.Dropped, tt.wantDropped)
			}
			slices.Sort(d.IgnoredFields)
			slices.Sort(tt.wantIgnored)
			if !slices.Equal(d.IgnoredFields, tt.wantIgnored) {
				t.Errorf("ignored fields: got %v, want %v", d.IgnoredFields, tt.wantIgnored)
			}
			if d.BatchID != tt.wantBatchID {
				t.Errorf("batch id: got %q, want %q", d.BatchID, tt.wantBatchID)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dev := deviceRef{Manufacturer: "Acme", Model: "M1", Version: "1.0", Class: "pump", Pseudonym: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	events := []Event{{KindCounter, "c", 3}, {KindHealth, "temperature_c", -12.25}, {KindError, "E-1", 1}}
	b := encodeRecord(-42, encodeBody(dev, events))
	got, err := decodeRecord(7, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 7 || got.Received != -42 || got.Device != dev || !slices.Equal(got.Events, events) {
		t.Fatalf("round trip: got %+v, want seq 7, received -42, %+v, %v", got, dev, events)
	}
	for i := range b {
		if _, err := decodeRecord(7, b[:i]); err == nil {
			t.Fatalf("decoding a record cut to %d of %d bytes: got no error", i, len(b))
		}
	}
}

// FuzzDecodeBatch checks that the device batch decoder never panics, that
// whatever it accepts fits the schema, and that an accepted batch decodes
// to the same events when re-encoded.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"schema":1,"batch_id":"b-1","events":[{"kind":"counter","name":"power_cycles","value":3}]}`,
		`{"events":[{"kind":"health","name":"battery_pct","value":87.5},{"kind":"runtime","name":"pump","value":0.25}]}`,
		`{"events":[{"kind":"error","name":"E-1042","value":2,"serial":"SN1"},{"kind":"procedure","name":"infusion.start"}]}`,
		`{"events":[{"kind":"note","name":"free text","value":1}]}`,
		`{"events":[{"kind":"counter","name":"c","value":-0}]}`,
		`{"events":[{"KIND":"counter","Name":"c","value":1e9}]}`,
		`{"events":[]}`, `[]`, `null`, `{"events":[{}]}`, `{"events":"x"}`,
		`{"events":[{"kind":"health","name":"signal_dbm","value":-150}]} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeBatch(data, Limits{MaxEvents: 100})
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Status < 400 || de.Status > 499 {
				t.Fatalf("got error %v, want a DecodeError with a 4xx status", err)
			}
			return
		}
		if len(d.Events)+d.Dropped == 0 || len(d.Events) > 100 {
			t.Fatalf("accepted %d events and dropped %d", len(d.Events), d.Dropped)
		}
		if d.BatchID != "" && !validBatchID(d.BatchID) {
			t.Fatalf("accepted batch id %q", d.BatchID)
		}
		wire := make([]map[string]any, len(d.Events))
		for i, e := range d.Events {
			if _, keep, err := validateEvent(i, wireEvent{Kind: &e.Kind, Name: &e.Name, Value: &e.Value}); err != nil || !keep {
				t.Fatalf("accepted event %+v that does not validate: %v", e, err)
			}
			if math.IsNaN(e.Value) || math.IsInf(e.Value, 0) {
				t.Fatalf("accepted a non-finite value %v", e.Value)
			}
			wire[i] = map[string]any{"kind": e.Kind, "name": e.Name, "value": e.Value}
		}
		if len(d.Events) == 0 {
			return
		}
		again, err := json.Marshal(map[string]any{"events": wire})
		if err != nil {
			t.Fatal(err)
		}
		d2, err := DecodeBatch(again, Limits{MaxEvents: 100})
		if err != nil || !slices.Equal(d2.Events, d.Events) {
			t.Fatalf("re-encoded batch: got %v, %v; want %v", d2, err, d.Events)
		}
	})
}

// FuzzDecodeRecord checks that a corrupt queue record is an error, never a
// panic or a huge allocation.
func FuzzDecodeRecord(f *testing.F) {
	dev := deviceRef{Manufacturer: "Acme", Model: "M1", Version: "1.0", Class: "pump"}
	f.Add(encodeRecord(1, encodeBody(dev, []Event{{KindCounter, "c", 3}, {KindHealth, "battery_pct", 50}})))
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeRecord(1, data)
		if err != nil {
			return
		}
		for _, e := range rec.Events {
			if kindCodes[e.Kind] == 0 {
				t.Fatalf("decoded unknown kind %q", e.Kind)
			}
		}
	})
}

// decodeReference is the straightforward decoder the scanner replaced: the
// events array through encoding/json maps. FuzzDecodeBatch checks that
// both agree.
func decodeReference(data []byte, lim Limits) (*Decoded, error) {
	var top map[string]json.RawMessage
	if err := strictUnmarshal(data, &top); err != nil || top == nil {
		return nil, badRequest("not an object")
	}
	d := &Decoded{}
	if v, ok := top["schema"]; ok {
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			return nil, badRequest("schema")
		}
		if n != SchemaVersion {
			return nil, unprocessable("schema")
		}
	}
	if v, ok := top["batch_id"]; ok {
		if err := json.Unmarshal(v, &d.BatchID); err != nil {
			return nil, badRequest("batch_id")
		}
		if !validBatchID(d.BatchID) {
			return nil, unprocessable("batch_id")
		}
	}
	for k := range top {
		if k != "schema" && k != "batch_id" && k != "events" {
			d.IgnoredFields = append(d.IgnoredFields, k)
		}
	}
	var raw []map[string]json.RawMessage
	if v, ok := top["events"]; ok {
		if err := json.Unmarshal(v, &raw); err != nil {
			return nil, badRequest("events")
		}
	}
	if len(raw) == 0 {
		return nil, unprocessable("no events")
	}
	if len(raw) > lim.MaxEvents {
		return nil, &DecodeError{Status: 413}
	}
	for i, fields := range raw {
		if fields == nil {
			return nil, badRequest("event")
		}
		var we wireEvent
		for k, v := range fields {
			var err error
			switch k {
			case "kind":
				err = json.Unmarshal(v, &we.Kind)
			case "name":
				err = json.Unmarshal(v, &we.Name)
			case "value":
				err = json.Unmarshal(v, &we.Value)
			default:
				if !contains(d.IgnoredFields, k) {
					d.IgnoredFields = append(d.IgnoredFields, k)
				}
				continue
			}
			if err != nil {
				return nil, badRequest("field")
			}
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

// FuzzDecodeBatchMatchesReference checks the scanning decoder against
// decodeReference on the same input.
func FuzzDecodeBatchMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{"schema":1,"batch_id":"b-1","events":[{"kind":"counter","name":"power_cycles","value":3}]}`,
		`{"events":[{"kind":"health","name":"battery_pct","value":87.5},{"kind":"runtime","name":"pump","value":0.25}]}`,
		`{"events":[{"kind":"error","name":"E-1\u0030","value":2,"x":{"a":["}",{"b":"]"}]}},{"kind":"procedure","name":"p"}]}`,
		`{"events":[{"name":"c","kind":"counter","kind":"error"}]}`,
		`{"events":[ { "kind" : "counter" , "name" : "c" , "value" : 1e2 } ] }`,
		`{"events":null}`, `{"events":[null]}`, `{"events":[[]]}`, `{"events":[{"value":null,"kind":"counter","name":"c"}]}`,
		`{"events":[{"kind":"counter","name":"c","value":-0.0}]}`, `{"events":[{"k\u0069nd":"counter","name":"c"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxEvents: 20}
		got, gerr := DecodeBatch(data, lim)
		want, werr := decodeReference(data, lim)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("scanner error %v, reference error %v", gerr, werr)
		}
		if gerr != nil {
			var g, w *DecodeError
			if !errors.As(gerr, &g) || !errors.As(werr, &w) || g.Status != w.Status {
				t.Fatalf("scanner error %v, reference error %v: statuses differ", gerr, werr)
			}
			return
		}
		if !slices.Equal(got.Events, want.Events) || got.Dropped != want.Dropped || got.BatchID != want.BatchID {
			t.Fatalf("scanner %+v, reference %+v", got, want)
		}
		if len(want.IgnoredFields) <= 16 {
			g, w := slices.Sorted(slices.Values(got.IgnoredFields)), slices.Sorted(slices.Values(want.IgnoredFields))
			if !slices.Equal(g, w) {
				t.Fatalf("ignored fields: scanner %v, reference %v", g, w)
			}
		}
	})
}
