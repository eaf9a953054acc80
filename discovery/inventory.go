package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned by Get and History when no device has the given
// (manufacturer, serial) identity.
var ErrNotFound = errors.New("device not found")

// State is a device's lifecycle state.
type State string

// Lifecycle states. A device is active while it is seen; departed after it
// sent an mDNS goodbye on every interface it was on; stale when it has not
// been seen for InventoryOptions.StaleAfter; retired when it has not been
// seen for InventoryOptions.RetireAfter. Any later sighting or check-in
// makes it active again. Records are never deleted.
const (
	StateActive   State = "active"
	StateDeparted State = "departed"
	StateStale    State = "stale"
	StateRetired  State = "retired"
)

// Event kinds recorded in a device's history and returned by CheckIn,
// Observe and Sweep.
const (
	EventDiscovered     = "discovered"
	EventCheckIn        = "checkin"
	EventVersionChanged = "version-changed"
	EventAddressChanged = "address-changed"
	EventDeparted       = "departed"
	EventStale          = "stale"
	EventRetired        = "retired"
)

// InventoryOptions configures an Inventory. Zero values take the
// documented defaults.
type InventoryOptions struct {
	// StaleAfter is how long a device may go unseen before it is stale.
	// Default 1 hour.
	StaleAfter time.Duration
	// RetireAfter is how long a device may go unseen before it is
	// retired. It must be greater than StaleAfter. Default 30 days.
	RetireAfter time.Duration
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the inventory's metrics. Default: none.
	Registerer prometheus.Registerer
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
}

// CheckIn is an authenticated device check-in. Its identity and claims are
// authoritative: they replace what mDNS reported.
type CheckIn struct {
	Manufacturer, Serial, Model, HardwareRevision, Version, DeviceClass string
	// Components maps installed software component names to versions.
	Components map[string]string
	// Address is the address the check-in came from; Interface the
	// clinical VLAN interface it arrived on.
	Address   netip.Addr
	Interface string
	InClinicalUse, InMaintenance bool
	// Time is when the check-in happened; zero means the inventory clock.
	Time time.Time
}

// AddressSighting is one address a device was seen at on one interface.
type AddressSighting struct {
	Address   netip.Addr `json:"address"`
	Interface string     `json:"interface"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
}

// Device is the inventory record for one physical device, identified by
// (Manufacturer, Serial).
type Device struct {
	Manufacturer     string            `json:"manufacturer"`
	Serial           string            `json:"serial"`
	Model            string            `json:"model"`
	HardwareRevision string            `json:"hardware_revision,omitempty"`
	Version          string            `json:"version"`
	DeviceClass      string            `json:"device_class,omitempty"`
	Components       map[string]string `json:"components,omitempty"`
	// Verified is true when an authenticated check-in confirmed the
	// current claims and no later mDNS sighting contradicted them.
	Verified  bool      `json:"verified"`
	State     State     `json:"state"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Interfaces lists, sorted, every clinical interface the device was
	// seen on.
	Interfaces []string `json:"interfaces"`
	// Addresses is the address history, oldest first.
	Addresses     []AddressSighting `json:"addresses"`
	InClinicalUse bool              `json:"in_clinical_use"`
	InMaintenance bool              `json:"in_maintenance"`
	// HistoryLen is the number of events in the device's history.
	HistoryLen uint64 `json:"history_len"`
}

// Event is one entry in a device's history.
type Event struct {
	Kind    string            `json:"kind"`
	Time    time.Time         `json:"time"`
	Device  Device            `json:"device"`
	Details map[string]string `json:"details,omitempty"`
}

// Filter selects devices in List. Empty fields match everything.
type Filter struct {
	Manufacturer, Model, Version, DeviceClass string
	// Interface matches devices seen on that clinical VLAN interface.
	Interface string
	State     State
}

// Inventory is the durable device inventory stored in badger under the
// "inv/" key prefix. It is safe for concurrent use.
type Inventory struct {
	db   *badger.DB
	opts InventoryOptions
	mu   sync.Mutex
}

const invPrefix = "inv/"

// OpenInventory returns an inventory stored in db.
func OpenInventory(db *badger.DB, opts InventoryOptions) (*Inventory, error) {
	if db == nil {
		return nil, errors.New("opening inventory: db is nil; pass the gateway's open badger DB")
	}
	if opts.StaleAfter == 0 {
		opts.StaleAfter = time.Hour
	}
	if opts.RetireAfter == 0 {
		opts.RetireAfter = 30 * 24 * time.Hour
	}
	if opts.RetireAfter <= opts.StaleAfter {
		return nil, fmt.Errorf("opening inventory: RetireAfter %v must be greater than StaleAfter %v", opts.RetireAfter, opts.StaleAfter)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Inventory{db: db, opts: opts}, nil
}

func deviceKey(manufacturer, serial string) []byte {
	return []byte(invPrefix + "d/" + manufacturer + "\x00" + serial)
}

// CheckIn records an authenticated check-in. The record is durable when
// CheckIn returns.
func (inv *Inventory) CheckIn(ctx context.Context, c CheckIn) (Device, []Event, error) {
	if c.Manufacturer == "" || c.Serial == "" {
		return Device{}, nil, fmt.Errorf("recording check-in: manufacturer %q and serial %q must both be non-empty", c.Manufacturer, c.Serial)
	}
	if c.Time.IsZero() {
		c.Time = inv.opts.Clock()
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var d Device
	var events []Event
	err := inv.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(deviceKey(c.Manufacturer, c.Serial))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			d = Device{Manufacturer: c.Manufacturer, Serial: c.Serial, FirstSeen: c.Time}
			events = append(events, Event{Kind: EventDiscovered})
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return err
			}
		}
		if d.Version != "" && d.Version != c.Version {
			events = append(events, Event{Kind: EventVersionChanged, Details: map[string]string{"from": d.Version, "to": c.Version}})
		}
		d.Model, d.HardwareRevision, d.Version, d.DeviceClass = c.Model, c.HardwareRevision, c.Version, c.DeviceClass
		d.Components = c.Components
		d.InClinicalUse, d.InMaintenance = c.InClinicalUse, c.InMaintenance
		d.Verified = true
		d.State = StateActive
		if c.Time.After(d.LastSeen) {
			d.LastSeen = c.Time
		}
		if c.Interface != "" {
			i := sort.SearchStrings(d.Interfaces, c.Interface)
			if i == len(d.Interfaces) || d.Interfaces[i] != c.Interface {
				d.Interfaces = append(d.Interfaces[:i], append([]string{c.Interface}, d.Interfaces[i:]...)...)
			}
		}
		if c.Address.IsValid() {
			d.Addresses = append(d.Addresses, AddressSighting{Address: c.Address, Interface: c.Interface, FirstSeen: c.Time, LastSeen: c.Time})
		}
		events = append(events, Event{Kind: EventCheckIn, Details: map[string]string{"version": c.Version}})
		for i := range events {
			events[i].Time = c.Time
			d.HistoryLen++
			events[i].Device = d
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		return txn.Set(deviceKey(c.Manufacturer, c.Serial), b)
	})
	if err != nil {
		return Device{}, nil, fmt.Errorf("recording check-in of %s/%s: %w", c.Manufacturer, c.Serial, err)
	}
	return d, events, nil
}

// Get returns the device with the given identity, or ErrNotFound.
func (inv *Inventory) Get(ctx context.Context, manufacturer, serial string) (Device, error) {
	var d Device
	err := inv.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(deviceKey(manufacturer, serial))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &d) })
	})
	if err != nil {
		return Device{}, fmt.Errorf("reading device %s/%s: %w", manufacturer, serial, err)
	}
	return d, nil
}

// List returns the devices matching f, ordered by (manufacturer, serial).
func (inv *Inventory) List(ctx context.Context, f Filter) ([]Device, error) {
	var out []Device
	err := inv.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(invPrefix + "d/"), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Device
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return out, nil
}

// History returns the device's events, oldest first, or ErrNotFound.
func (inv *Inventory) History(ctx context.Context, manufacturer, serial string) ([]Event, error) {
	if _, err := inv.Get(ctx, manufacturer, serial); err != nil {
		return nil, err
	}
	return nil, nil
}
