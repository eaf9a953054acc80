package discovery

import (
	"context"
	"fmt"
	"time"
)

// Sweep applies the stale and retired thresholds at the inventory clock's
// current time and returns the events it recorded. A device unseen for
// StaleAfter becomes stale, and one unseen for RetireAfter becomes
// retired, skipping stale when both thresholds passed since the last
// sweep.
func (inv *Inventory) Sweep(ctx context.Context) ([]Event, error) {
	now := inv.opts.Clock()
	var items []writeItem
	err := inv.scan(func(key []byte, d *Device) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		inv.overlaySeen(string(key), d)
		if target := inv.targetState(d, now); target != d.State {
			items = append(items, writeItem{d.Manufacturer, d.Serial, inv.sweepMutation(now)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sweeping inventory: %w", err)
	}
	if len(items) == 0 {
		return nil, nil
	}
	res, err := inv.write(ctx, items)
	if err != nil {
		return nil, fmt.Errorf("sweeping inventory: %w", err)
	}
	var events []Event
	for _, r := range res {
		events = append(events, r.events...)
	}
	return events, nil
}

// targetState returns the state that d's last-seen time calls for at now.
func (inv *Inventory) targetState(d *Device, now time.Time) State {
	unseen := now.Sub(d.LastSeen)
	switch {
	case d.State == StateRetired:
		return StateRetired
	case unseen >= inv.opts.RetireAfter:
		return StateRetired
	case unseen >= inv.opts.StaleAfter && d.State != StateStale:
		return StateStale
	}
	return d.State
}

// sweepMutation re-evaluates a device inside the write transaction,
// because a sighting may have arrived since the scan. The last-seen time
// kept in memory is read under inv.mu, which write holds.
func (inv *Inventory) sweepMutation(now time.Time) mutation {
	return func(d *Device, exists bool) (bool, []Event, bool) {
		if !exists {
			return false, nil, true
		}
		if t, ok := inv.seen[string(deviceKey(d.Manufacturer, d.Serial))]; ok && t.After(d.LastSeen) {
			d.LastSeen = t
		}
		target := inv.targetState(d, now)
		if target == d.State {
			return false, nil, true
		}
		from := d.State
		d.State, d.StateSince = target, now
		kind := EventStale
		if target == StateRetired {
			kind = EventRetired
		}
		e := newEvent(kind, now, map[string]string{
			"from": string(from), "last_seen": d.LastSeen.UTC().Format(time.RFC3339),
		})
		return true, []Event{e}, false
	}
}

// Run sweeps every SweepInterval and writes in-memory last-seen times to
// disk, until ctx is done or Close is called. Sweep events go to
// InventoryOptions.OnEvent. Run may be called once.
func (inv *Inventory) Run(ctx context.Context) error {
	started := false
	inv.runOnce.Do(func() { started = true })
	if !started {
		return fmt.Errorf("running inventory: Run was already called")
	}
	defer close(inv.done)
	ticker := time.NewTicker(inv.opts.SweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return inv.flushSeen(context.WithoutCancel(ctx))
		case <-inv.closed:
			return nil
		case <-ticker.C:
		}
		events, err := inv.Sweep(ctx)
		if err != nil {
			inv.opts.Logger.Error("inventory sweep failed", "err", err)
		}
		if inv.opts.OnEvent != nil {
			for _, e := range events {
				inv.opts.OnEvent(e)
			}
		}
		if err := inv.flushSeen(ctx); err != nil {
			inv.opts.Logger.Error("writing last-seen times failed", "err", err)
		}
	}
}

// flushSeen writes every in-memory last-seen time to its record.
func (inv *Inventory) flushSeen(ctx context.Context) error {
	inv.mu.Lock()
	var items []writeItem
	for key, t := range inv.seen {
		mf, sn, ok := splitDeviceKey(key)
		if !ok {
			continue
		}
		items = append(items, writeItem{mf, sn, func(d *Device, exists bool) (bool, []Event, bool) {
			if !exists || !t.After(d.LastSeen) {
				return false, nil, true
			}
			d.LastSeen = t
			return true, nil, false
		}})
	}
	inv.mu.Unlock()
	if len(items) == 0 {
		return nil
	}
	if _, err := inv.write(ctx, items); err != nil {
		return fmt.Errorf("writing last-seen times of %d devices: %w", len(items), err)
	}
	return nil
}

// Close stops Run, waits for it to return and writes in-memory last-seen
// times to disk. It does not close the DB. Close is safe to call more
// than once.
func (inv *Inventory) Close() error {
	var err error
	inv.closeOnce.Do(func() {
		close(inv.closed)
		started := true
		inv.runOnce.Do(func() { started = false })
		if started {
			<-inv.done
		}
		err = inv.flushSeen(context.Background())
	})
	return err
}
