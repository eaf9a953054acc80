package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Sighting is one device announcement heard over mDNS on one interface.
// Its claims are unverified.
type Sighting struct {
	// Info is the parsed TXT record. Info.Manufacturer and Info.Serial
	// identify the device.
	Info DeviceInfo
	// Interface is the clinical VLAN interface the announcement arrived on.
	Interface string
	// Instance is the DNS-SD service instance name (the first label).
	Instance string
	// Addresses are the device's A and AAAA addresses.
	Addresses []netip.Addr
	// Port is the SRV port.
	Port uint16
	// Goodbye is true when the announcement withdrew the service (TTL 0).
	Goodbye bool
	// Time is when the announcement was received. Zero means the
	// inventory clock.
	Time time.Time
	// Source names the path the sighting came by: SourceListener or
	// SourceQuery.
	Source string
}

// Sighting sources.
const (
	// SourceListener: parsed by the browser from a packet read on its own
	// port 5353 socket.
	SourceListener = "listener"
	// SourceQuery: returned by a hashicorp/mdns query.
	SourceQuery = "query"
)

// mutation changes a device record in place. exists is false for a new
// record. It returns whether anything other than last-seen times changed,
// the events it caused, and skip=true when the record must not be
// created or written at all. A mutation must be a pure function of its
// arguments, because it is re-run when a transaction is retried.
type mutation func(d *Device, exists bool) (changed bool, events []Event, skip bool)

type writeItem struct {
	manufacturer, serial string
	fn                   mutation
}

// writeResult is the outcome of one writeItem. persisted is false when
// the item was skipped or changed only the last-seen time, which is then
// kept in memory.
type writeResult struct {
	device    Device
	events    []Event
	exists    bool
	oldState  State
	persisted bool
	skipped   bool
}

// CheckIn records an authenticated check-in. Its values replace any mDNS
// claims and mark the device verified. The record and its history are
// committed when CheckIn returns, so they are durable when the DB was
// opened with SyncWrites.
func (inv *Inventory) CheckIn(ctx context.Context, c CheckIn) (Device, []Event, error) {
	if err := validateIdentity(c.Manufacturer, c.Serial); err != nil {
		return Device{}, nil, fmt.Errorf("recording check-in: %w", err)
	}
	if err := validateCheckIn(c); err != nil {
		return Device{}, nil, fmt.Errorf("recording check-in of %s/%s: %w", c.Manufacturer, c.Serial, err)
	}
	if c.Time.IsZero() {
		c.Time = inv.opts.Clock()
	}
	c.Components = cloneMap(c.Components)
	item := writeItem{c.Manufacturer, c.Serial, func(d *Device, exists bool) (bool, []Event, bool) {
		return true, applyCheckIn(d, exists, c), false
	}}
	res, err := inv.write(ctx, []writeItem{item})
	if err != nil {
		return Device{}, nil, fmt.Errorf("recording check-in of %s/%s: %w", c.Manufacturer, c.Serial, err)
	}
	return res[0].device, res[0].events, nil
}

// Check-in limits. They bound the size of a device record; a device
// that reports more is rejected with an error naming the field.
const (
	maxCheckInText  = 128
	maxComponents   = 2048
	maxInterfaceLen = 64
)

// validateCheckIn checks the text fields and components of a check-in.
func validateCheckIn(c CheckIn) error {
	fields := []struct{ name, value string }{
		{"model", c.Model}, {"hardware revision", c.HardwareRevision}, {"version", c.Version}, {"device class", c.DeviceClass},
	}
	for _, f := range fields {
		if len(f.value) > maxCheckInText || !printableText(f.value) {
			return fmt.Errorf("%s %q is not printable UTF-8 text of at most %d bytes", f.name, f.value, maxCheckInText)
		}
	}
	if len(c.Interface) > maxInterfaceLen || !printableText(c.Interface) {
		return fmt.Errorf("interface %q is not a printable name of at most %d bytes", c.Interface, maxInterfaceLen)
	}
	if len(c.Components) > maxComponents {
		return fmt.Errorf("%d components reported, over the limit of %d", len(c.Components), maxComponents)
	}
	for name, version := range c.Components {
		if name == "" || len(name) > maxCheckInText || len(version) > maxCheckInText || !printableText(name) || !printableText(version) {
			return fmt.Errorf("component %q version %q: names and versions must be printable UTF-8 text of at most %d bytes, and names non-empty", name, version, maxCheckInText)
		}
	}
	return nil
}

// Observe records an mDNS sighting. A sighting whose TXT record lacks an
// identity is rejected, and a goodbye from a device not in the inventory
// is ignored. The returned Device is the zero value when nothing was
// recorded.
func (inv *Inventory) Observe(ctx context.Context, s Sighting) (Device, []Event, error) {
	res, events, err := inv.observe(ctx, []Sighting{s})
	if err != nil {
		return Device{}, nil, err
	}
	return res[0].device, events, nil
}

// ObserveBatch records several sightings in as few transactions as
// possible, in order, and returns all their events. Invalid sightings are
// skipped and reported together in the error, after the valid ones are
// committed.
func (inv *Inventory) ObserveBatch(ctx context.Context, sightings []Sighting) ([]Event, error) {
	_, events, err := inv.observe(ctx, sightings)
	return events, err
}

func (inv *Inventory) observe(ctx context.Context, sightings []Sighting) ([]writeResult, []Event, error) {
	items := make([]writeItem, 0, len(sightings))
	var invalid []error
	now := inv.opts.Clock()
	for _, s := range sightings {
		if err := validateIdentity(s.Info.Manufacturer, s.Info.Serial); err != nil {
			invalid = append(invalid, fmt.Errorf("sighting of instance %q on %s: %w", s.Instance, s.Interface, err))
			continue
		}
		if s.Time.IsZero() {
			s.Time = now
		}
		s.Addresses = append([]netip.Addr(nil), s.Addresses...)
		items = append(items, writeItem{s.Info.Manufacturer, s.Info.Serial, func(d *Device, exists bool) (bool, []Event, bool) {
			return applySighting(d, exists, s)
		}})
	}
	res, err := inv.write(ctx, items)
	if err != nil {
		return nil, nil, fmt.Errorf("recording %d sightings: %w", len(items), err)
	}
	var events []Event
	for _, r := range res {
		events = append(events, r.events...)
	}
	if len(invalid) > 0 {
		if len(res) == 0 {
			res = []writeResult{{skipped: true}}
		}
		return res, events, fmt.Errorf("recording sightings: %w", errors.Join(invalid...))
	}
	return res, events, nil
}

// write applies items in order and commits them, splitting the work over
// several transactions when badger reports one too big.
func (inv *Inventory) write(ctx context.Context, items []writeItem) ([]writeResult, error) {
	start := time.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	results := make([]writeResult, 0, len(items))
	for len(results) < len(items) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, chunk, err := inv.writeChunk(items[len(results):])
		if err != nil {
			inv.metrics.writeErrors.Inc()
			return nil, err
		}
		results = append(results, chunk...)
		inv.afterCommit(items[len(results)-n:len(results)], chunk)
	}
	inv.metrics.writeSeconds.Observe(time.Since(start).Seconds())
	return results, nil
}

// writeChunk commits as many leading items as fit in one transaction and
// returns how many it committed.
func (inv *Inventory) writeChunk(items []writeItem) (int, []writeResult, error) {
	txn := inv.db.NewTransaction(true)
	defer txn.Discard()
	var results []writeResult
	for _, it := range items {
		r, err := inv.applyItem(txn, it)
		if errors.Is(err, badger.ErrTxnTooBig) && len(results) > 0 {
			break
		}
		if err != nil {
			return 0, nil, err
		}
		results = append(results, r)
	}
	if err := txn.Commit(); err != nil {
		return 0, nil, fmt.Errorf("committing: %w", err)
	}
	return len(results), results, nil
}

func (inv *Inventory) applyItem(txn *badger.Txn, it writeItem) (writeResult, error) {
	key := deviceKey(it.manufacturer, it.serial)
	var stored Device
	exists, err := getDevice(txn, key, &stored)
	if err != nil {
		return writeResult{}, err
	}
	d := stored.clone()
	if !exists {
		d = Device{Manufacturer: it.manufacturer, Serial: it.serial}
	}
	changed, events, skip := it.fn(&d, exists)
	if skip {
		return writeResult{device: stored, exists: exists, oldState: stored.State, skipped: true}, nil
	}
	persist := changed || !exists || len(events) > 0 || d.LastSeen.Sub(stored.LastSeen) >= inv.opts.TouchInterval
	if !persist {
		return writeResult{device: d, exists: exists, oldState: stored.State}, nil
	}
	for i := range events {
		seq := d.HistoryLen
		d.HistoryLen++
		events[i].Device = d.summary()
		b, err := json.Marshal(events[i])
		if err != nil {
			return writeResult{}, fmt.Errorf("encoding %s event: %w", events[i].Kind, err)
		}
		if err := txn.Set(historyKey(it.manufacturer, it.serial, seq), b); err != nil {
			return writeResult{}, err
		}
	}
	for i := range events {
		events[i].Device.HistoryLen = d.HistoryLen
	}
	b, err := json.Marshal(d)
	if err != nil {
		return writeResult{}, fmt.Errorf("encoding device: %w", err)
	}
	if err := txn.Set(key, b); err != nil {
		return writeResult{}, err
	}
	return writeResult{device: d, events: events, exists: exists, oldState: stored.State, persisted: true}, nil
}

// afterCommit updates the in-memory state that mirrors committed records.
// The caller holds inv.mu.
func (inv *Inventory) afterCommit(items []writeItem, results []writeResult) {
	for i, r := range results {
		if r.skipped {
			continue
		}
		key := string(deviceKey(items[i].manufacturer, items[i].serial))
		if !r.persisted {
			if t, ok := inv.seen[key]; !ok || r.device.LastSeen.After(t) {
				inv.seen[key] = r.device.LastSeen
			}
			inv.metrics.touches.Inc()
			continue
		}
		if t, ok := inv.seen[key]; ok && !t.After(r.device.LastSeen) {
			delete(inv.seen, key)
		}
		if r.exists {
			inv.stateCounts[r.oldState]--
		}
		inv.stateCounts[r.device.State]++
		inv.metrics.writes.Inc()
		for _, e := range r.events {
			inv.metrics.events.WithLabelValues(e.Kind).Inc()
		}
	}
}
