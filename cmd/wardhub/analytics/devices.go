package analytics

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// DeviceRow is one device's aggregate for one period and metric. Devices
// appear only for manufacturers whose per-device forwarding a site enabled,
// and only under the random pseudonym that site's gateway assigned.
type DeviceRow struct {
	Site   string `json:"site"`
	Device string `json:"device"`
	Row
}

func decodePeriod(k []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(k)^1<<63), 0).UTC()
}

// DeviceRows returns the per-device rows matching q's filters, ordered by
// period, dimensions, site and device; q.GroupBy does not apply.
func (s *Store) DeviceRows(ctx context.Context, q Query) ([]DeviceRow, error) {
	if err := q.normalize(); err != nil {
		return nil, fmt.Errorf("querying device analytics: %w", err)
	}
	var out []DeviceRow
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixDevice, PrefetchValues: false})
		defer it.Close()
		start := prefixDevice
		if !q.From.IsZero() {
			start = binaryTime(append([]byte{}, prefixDevice...), q.From)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()[len(prefixDevice):]
			if len(k) < 8 {
				continue
			}
			period := decodePeriod(k)
			if !q.To.IsZero() && !period.Before(q.To) {
				break
			}
			parts := bytes.Split(k[8:], []byte{0})
			if len(parts) != 9 {
				continue
			}
			d := wire.Dims{Period: period, Manufacturer: string(parts[1]), Model: string(parts[2]), Version: string(parts[3]),
				DeviceClass: string(parts[4]), Kind: string(parts[5]), Name: string(parts[6])}
			if !q.matches(&d) {
				continue
			}
			var st wire.Stats
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &st) }); err != nil {
				return fmt.Errorf("decoding device cell: %w", err)
			}
			row := Row{Period: period, Manufacturer: d.Manufacturer, Model: d.Model, Version: d.Version, DeviceClass: d.DeviceClass,
				Kind: d.Kind, Name: d.Name, Sites: 1, Devices: 1, Events: st.Events, Sum: st.Sum, Min: st.Min, Max: st.Max,
				Bounds: st.Bounds, Counts: st.Counts}
			if st.Events > 0 {
				row.Mean = st.Sum / float64(st.Events)
			}
			out = append(out, DeviceRow{Site: string(parts[7]), Device: string(parts[8]), Row: row})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("querying device analytics: %w", err)
	}
	return out, nil
}
