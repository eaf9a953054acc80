package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// The functions below walk JSON that encoding/json has already validated,
// so they only find value boundaries. They still check every index, so
// input that is not valid JSON is an error, never a panic.

var errScan = errors.New("malformed JSON")

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errScan
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errScan
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errScan
		}
		return j, nil
	}
}

// splitArray returns the elements of the events array, each a JSON object.
// A missing or null array has no elements.
func splitArray(b []byte) ([][]byte, error) {
	i := skipSpace(b, 0)
	if i == len(b) || string(b[i:]) == "null" {
		return nil, nil
	}
	if b[i] != '[' {
		return nil, badRequest("field \"events\": want an array of objects")
	}
	var out [][]byte
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return out, nil
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return nil, badRequest("field \"events\": %v", err)
		}
		if b[i] != '{' {
			return nil, badRequest("event %d: want a JSON object", len(out))
		}
		out = append(out, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, badRequest("field \"events\": %v", errScan)
		}
		if b[i] == ']' {
			return out, nil
		}
		if b[i] != ',' {
			return nil, badRequest("field \"events\": %v", errScan)
		}
		i = skipSpace(b, i+1)
	}
}

// scanned is one event's fields as scanned; the has flags tell a missing
// or null field from a zero value.
type scanned struct {
	kind, name                 string
	value                      float64
	hasKind, hasName, hasValue bool
}

// knownKinds are returned without allocating when scanned.
var knownKinds = []string{KindCounter, KindProcedure, KindRuntime, KindError, KindHealth}

// scanner decodes event objects, interning repeated names within a batch.
type scanner struct {
	names map[string]string
}

// text decodes a JSON string value, returning ok=false for null.
func (sc *scanner) text(raw []byte, intern bool) (string, bool, error) {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		inner := raw[1 : len(raw)-1]
		for _, k := range knownKinds {
			if string(inner) == k {
				return k, true, nil
			}
		}
		if !intern {
			return string(inner), true, nil
		}
		if s, ok := sc.names[string(inner)]; ok {
			return s, true, nil
		}
		s := string(inner)
		if sc.names == nil {
			sc.names = make(map[string]string)
		}
		if len(sc.names) < 256 {
			sc.names[s] = s
		}
		return s, true, nil
	}
	p, err := rawString(raw)
	if err != nil || p == nil {
		return "", false, err
	}
	return *p, true, nil
}

// scanEvent reads the fields of one event object. Like encoding/json, a
// repeated field keeps its last value; unknown fields go to ignore.
func (sc *scanner) scanEvent(n int, b []byte, ignore func(string), seen func([]byte) bool) (scanned, error) {
	var kind, name, value []byte
	fail := func(err error) (scanned, error) { return scanned{}, badRequest("event %d: %v", n, err) }
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == '}' {
		return scanned{}, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return fail(errScan)
		}
		kend, err := skipString(b, i)
		if err != nil {
			return fail(err)
		}
		rawKey := b[i:kend]
		var key string
		listed := false
		if bytes.IndexByte(rawKey, '\\') < 0 {
			// The common case: compare in place, allocating nothing.
			switch inner := rawKey[1 : len(rawKey)-1]; string(inner) {
			case "kind":
				key = "kind"
			case "name":
				key = "name"
			case "value":
				key = "value"
			default:
				// An unknown field: allocate its name only the first time.
				listed = seen(inner)
				if !listed {
					key, _, err = sc.text(rawKey, false)
				}
			}
		} else {
			key, _, err = sc.text(rawKey, false)
		}
		if err != nil {
			return fail(errScan)
		}
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return fail(errScan)
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return fail(err)
		}
		switch {
		case listed:
		case key == "kind":
			kind = b[i:vend]
		case key == "name":
			name = b[i:vend]
		case key == "value":
			value = b[i:vend]
		default:
			ignore(key)
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return fail(errScan)
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return fail(errScan)
		}
		i = skipSpace(b, i+1)
	}

	var ev scanned
	var err error
	if kind != nil {
		if ev.kind, ev.hasKind, err = sc.text(kind, false); err != nil {
			return ev, badRequest("event %d field \"kind\": %v", n, err)
		}
	}
	if name != nil {
		if ev.name, ev.hasName, err = sc.text(name, true); err != nil {
			return ev, badRequest("event %d field \"name\": %v", n, err)
		}
	}
	if value != nil {
		p, err := rawNumber(json.RawMessage(value))
		if err != nil {
			return ev, badRequest("event %d field \"value\": %v", n, err)
		}
		if p != nil {
			ev.value, ev.hasValue = *p, true
		}
	}
	return ev, nil
}
