package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// record is one acknowledged device batch as the queue stores it under
// "tq/e/<seq>". It holds no serial number: the device is named by its
// random pseudonym, and only for counting distinct devices.
type record struct {
	Seq      uint64
	Received int64 // unix nanoseconds, gateway clock
	Device   deviceRef
	Events   []Event
}

// deviceRef is the part of a device's identity that aggregation needs.
type deviceRef struct {
	Manufacturer, Model, Version, Class string
	Pseudonym                           [8]byte
}

const recordV1 = 1

// kind codes keep stored records small.
var kindCodes = map[string]byte{KindCounter: 1, KindProcedure: 2, KindRuntime: 3, KindError: 4, KindHealth: 5}
var kindNames = [...]string{1: KindCounter, 2: KindProcedure, 3: KindRuntime, 4: KindError, 5: KindHealth}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeBody encodes everything but Seq and Received, which the queue's
// writer stamps at commit time via encodeRecord.
func encodeBody(dev deviceRef, events []Event) []byte {
	n := 16 + len(dev.Manufacturer) + len(dev.Model) + len(dev.Version) + len(dev.Class)
	for _, e := range events {
		n += 11 + len(e.Name)
	}
	b := make([]byte, 0, n)
	b = appendString(b, dev.Manufacturer)
	b = appendString(b, dev.Model)
	b = appendString(b, dev.Version)
	b = appendString(b, dev.Class)
	b = append(b, dev.Pseudonym[:]...)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for _, e := range events {
		b = append(b, kindCodes[e.Kind])
		b = appendString(b, e.Name)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Value))
	}
	return b
}

func encodeRecord(received int64, body []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(body))
	b = append(b, recordV1)
	b = binary.AppendVarint(b, received)
	return append(b, body...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("truncated or corrupt queue record")
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }

func decodeRecord(seq uint64, b []byte) (record, error) {
	if len(b) == 0 || b[0] != recordV1 {
		return record{}, fmt.Errorf("queue record %d: unknown encoding", seq)
	}
	r := reader{b: b[1:]}
	rec := record{Seq: seq}
	rec.Received = r.varint()
	rec.Device.Manufacturer = r.string()
	rec.Device.Model = r.string()
	rec.Device.Version = r.string()
	rec.Device.Class = r.string()
	copy(rec.Device.Pseudonym[:], r.bytes(8))
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return record{}, fmt.Errorf("queue record %d: event count %d exceeds its size", seq, n)
	}
	rec.Events = make([]Event, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		code := r.bytes(1)
		if r.err != nil {
			break
		}
		if code[0] == 0 || int(code[0]) >= len(kindNames) {
			return record{}, fmt.Errorf("queue record %d: unknown event kind code %d", seq, code[0])
		}
		name := r.string()
		v := r.bytes(8)
		if r.err != nil {
			break
		}
		rec.Events = append(rec.Events, Event{Kind: kindNames[code[0]], Name: name, Value: math.Float64frombits(binary.LittleEndian.Uint64(v))})
	}
	if r.err != nil {
		return record{}, fmt.Errorf("queue record %d: %w", seq, r.err)
	}
	if len(r.b) != 0 {
		return record{}, fmt.Errorf("queue record %d: %d trailing bytes", seq, len(r.b))
	}
	return rec, nil
}
