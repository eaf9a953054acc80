package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned (wrapped) by Get and History when no device has
// the given (manufacturer, serial) identity.
var ErrNotFound = errors.New("device not found")

// State is a device's lifecycle state.
type State string

// Lifecycle states. A device is active while it is seen. It is departed
// once it has sent an mDNS goodbye on every interface it was present on.
// It becomes stale when unseen for InventoryOptions.StaleAfter and retired
// when unseen for InventoryOptions.RetireAfter. Any later sighting or
// check-in makes it active again. Records are never deleted.
const (
	StateActive   State = "active"
	StateDeparted State = "departed"
	StateStale    State = "stale"
	StateRetired  State = "retired"
)

// ParseState returns the State named s, or an error listing the valid
// names.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateActive, StateDeparted, StateStale, StateRetired:
		return st, nil
	}
	return "", fmt.Errorf("invalid device state %q: use active, departed, stale or retired", s)
}

// InventoryOptions configures an Inventory. Zero values take the
// documented defaults.
type InventoryOptions struct {
	// StaleAfter is how long a device may go unseen before it is stale.
	// Default 1 hour.
	StaleAfter time.Duration
	// RetireAfter is how long a device may go unseen before it is
	// retired. It must be greater than StaleAfter. Default 30 days.
	RetireAfter time.Duration
	// TouchInterval bounds how often a sighting that changes nothing but
	// the last-seen time is written to disk. Between writes the newer
	// time is kept in memory and shown by Get, List and Sweep, so a crash
	// loses at most this much last-seen precision. Default 1 minute.
	TouchInterval time.Duration
	// SweepInterval is how often Run applies the stale and retired
	// thresholds. Default StaleAfter/10, clamped to [1s, 5m].
	SweepInterval time.Duration
	// OnEvent, when set, receives the events of the sweeps that Run
	// performs. CheckIn, Observe, ObserveBatch and Sweep return their
	// events to the caller instead.
	OnEvent func(Event)
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
	// Address is the address the check-in came from, and Interface the
	// clinical VLAN interface it arrived on. Both are optional.
	Address                      netip.Addr
	Interface                    string
	InClinicalUse, InMaintenance bool
	// Time is when the check-in happened. Zero means the inventory clock.
	Time time.Time
}

// AddressSighting is one address a device used on one interface.
type AddressSighting struct {
	Address   netip.Addr `json:"address"`
	Interface string     `json:"interface"`
	// Source is "mdns" or "checkin": where the address was learned.
	Source    string    `json:"source"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Link is a device's presence on one clinical VLAN interface.
type Link struct {
	Interface string `json:"interface"`
	// Instance is the mDNS service instance name last announced on this
	// interface, or empty if the device was only seen by check-in.
	Instance string `json:"instance,omitempty"`
	// Addresses are the device's current addresses on this interface,
	// at most one per address family.
	Addresses []netip.Addr `json:"addresses,omitempty"`
	// Present is false after a goodbye on this interface.
	Present    bool      `json:"present"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	DepartedAt time.Time `json:"departed_at,omitzero"`
}

// Claim is the set of values that mDNS last announced for a checked-in
// device where they differ from the last check-in. It stays unverified until a check-in
// reports the same values.
type Claim struct {
	Model            string    `json:"model,omitempty"`
	HardwareRevision string    `json:"hardware_revision,omitempty"`
	Version          string    `json:"version,omitempty"`
	DeviceClass      string    `json:"device_class,omitempty"`
	InClinicalUse    bool      `json:"in_clinical_use"`
	InMaintenance    bool      `json:"in_maintenance"`
	Interface        string    `json:"interface"`
	Time             time.Time `json:"time"`
}

// maxAddressHistory bounds Device.Addresses. Older sightings drop out of
// the record; the address-changed events in the history keep them all.
const maxAddressHistory = 64

// Device is the inventory record for one physical device, identified by
// (Manufacturer, Serial) and never by address or instance name.
type Device struct {
	Manufacturer     string `json:"manufacturer"`
	Serial           string `json:"serial"`
	Model            string `json:"model,omitempty"`
	HardwareRevision string `json:"hardware_revision,omitempty"`
	// Version is the installed software version.
	Version     string `json:"version,omitempty"`
	DeviceClass string `json:"device_class,omitempty"`
	// Components maps installed software component names to versions, as
	// reported by the last check-in.
	Components map[string]string `json:"components,omitempty"`
	// APIPort is the device API port announced over mDNS, or 0.
	APIPort uint16 `json:"api_port,omitempty"`
	// Verified is true when a check-in reported the current claims and no
	// later mDNS sighting contradicted them.
	Verified    bool      `json:"verified"`
	LastCheckIn time.Time `json:"last_checkin,omitzero"`
	// Claim holds mDNS claims that contradict the last check-in, or nil.
	Claim      *Claim    `json:"claim,omitempty"`
	State      State     `json:"state"`
	StateSince time.Time `json:"state_since"`
	FirstSeen  time.Time `json:"first_seen"`
	// LastSeen is the latest mDNS sighting or check-in.
	LastSeen time.Time `json:"last_seen"`
	// Interfaces lists, sorted, every clinical interface the device was
	// ever seen on. Links gives per-interface detail.
	Interfaces []string `json:"interfaces"`
	Links      []Link   `json:"links"`
	// Addresses is the address history, oldest first, capped at 64
	// entries. The history keeps every address change.
	Addresses     []AddressSighting `json:"addresses,omitempty"`
	InClinicalUse bool              `json:"in_clinical_use"`
	InMaintenance bool              `json:"in_maintenance"`
	// HistoryLen is the number of events in the device's history.
	HistoryLen uint64 `json:"history_len"`
}

// Filter selects devices in List. Empty fields match everything.
type Filter struct {
	Manufacturer, Model, Version, DeviceClass string
	// Interface matches devices ever seen on that clinical VLAN interface.
	Interface string
	State     State
	// Address matches devices that ever used that address.
	Address netip.Addr
	// Verified, when non-nil, matches devices whose Verified equals it.
	Verified *bool
}

// Match reports whether d passes the filter.
func (f Filter) Match(d Device) bool {
	switch {
	case f.Manufacturer != "" && f.Manufacturer != d.Manufacturer,
		f.Model != "" && f.Model != d.Model,
		f.Version != "" && f.Version != d.Version,
		f.DeviceClass != "" && f.DeviceClass != d.DeviceClass,
		f.State != "" && f.State != d.State,
		f.Verified != nil && *f.Verified != d.Verified,
		f.Interface != "" && !slices.Contains(d.Interfaces, f.Interface):
		return false
	}
	if f.Address.IsValid() {
		return slices.ContainsFunc(d.Addresses, func(a AddressSighting) bool { return a.Address == f.Address })
	}
	return true
}

// Inventory is the durable device inventory, stored in badger under the
// "inv/" key prefix. It is safe for concurrent use.
type Inventory struct {
	db      *badger.DB
	opts    InventoryOptions
	metrics *inventoryMetrics

	// mu serialises writes, so each read-modify-write of a device record
	// reads the result of the previous one. It also guards seen and stateCounts.
	mu sync.Mutex
	// seen holds last-seen times newer than the stored record, keyed by
	// device key; see InventoryOptions.TouchInterval.
	seen        map[string]time.Time
	stateCounts map[State]int

	runOnce   sync.Once
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

// OpenInventory returns the inventory stored in db. The caller keeps
// ownership of db and closes it after Inventory.Close.
func OpenInventory(db *badger.DB, opts InventoryOptions) (*Inventory, error) {
	if db == nil {
		return nil, errors.New("opening inventory: db is nil; pass the gateway's open badger DB")
	}
	if opts.StaleAfter < 0 || opts.RetireAfter < 0 || opts.TouchInterval < 0 || opts.SweepInterval < 0 {
		return nil, fmt.Errorf("opening inventory: negative duration in options (StaleAfter %v, RetireAfter %v, TouchInterval %v, SweepInterval %v)",
			opts.StaleAfter, opts.RetireAfter, opts.TouchInterval, opts.SweepInterval)
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
	if opts.TouchInterval == 0 {
		opts.TouchInterval = time.Minute
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = min(max(opts.StaleAfter/10, time.Second), 5*time.Minute)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	inv := &Inventory{
		db:          db,
		opts:        opts,
		seen:        make(map[string]time.Time),
		stateCounts: make(map[State]int),
		closed:      make(chan struct{}),
		done:        make(chan struct{}),
	}
	err := inv.scan(func(_ []byte, d *Device) error {
		inv.stateCounts[d.State]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening inventory: counting devices: %w", err)
	}
	m, err := newInventoryMetrics(opts.Registerer, inv.countState)
	if err != nil {
		return nil, fmt.Errorf("opening inventory: %w", err)
	}
	inv.metrics = m
	return inv, nil
}

func (inv *Inventory) countState(s State) float64 {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return float64(inv.stateCounts[s])
}

// Get returns the device with the given identity. The error wraps
// ErrNotFound when there is none.
func (inv *Inventory) Get(ctx context.Context, manufacturer, serial string) (Device, error) {
	if err := ctx.Err(); err != nil {
		return Device{}, fmt.Errorf("reading device %s/%s: %w", manufacturer, serial, err)
	}
	key := deviceKey(manufacturer, serial)
	var d Device
	err := inv.db.View(func(txn *badger.Txn) error {
		found, err := getDevice(txn, key, &d)
		if err == nil && !found {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("reading device %s/%s: %w", manufacturer, serial, err)
	}
	inv.overlaySeen(string(key), &d)
	return d, nil
}

// List returns the devices that match f, ordered by manufacturer and then
// serial.
func (inv *Inventory) List(ctx context.Context, f Filter) ([]Device, error) {
	var out []Device
	err := inv.scan(func(key []byte, d *Device) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		inv.overlaySeen(string(key), d)
		if f.Match(*d) {
			out = append(out, *d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return out, nil
}

// History returns every event of the device, oldest first. The error
// wraps ErrNotFound when there is no such device.
func (inv *Inventory) History(ctx context.Context, manufacturer, serial string) ([]Event, error) {
	var events []Event
	err := inv.db.View(func(txn *badger.Txn) error {
		var d Device
		found, err := getDevice(txn, deviceKey(manufacturer, serial), &d)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		prefix := historyPrefix(manufacturer, serial)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e Event
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("decoding event %q: %w", it.Item().Key(), err)
			}
			events = append(events, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading history of %s/%s: %w", manufacturer, serial, err)
	}
	return events, nil
}

// overlaySeen applies a newer in-memory last-seen time to d.
func (inv *Inventory) overlaySeen(key string, d *Device) {
	inv.mu.Lock()
	t, ok := inv.seen[key]
	inv.mu.Unlock()
	if ok && t.After(d.LastSeen) {
		d.LastSeen = t
	}
}

// scan calls fn for every stored device in key order.
func (inv *Inventory) scan(fn func(key []byte, d *Device) error) error {
	return inv.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(devicePrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Device
			item := it.Item()
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return fmt.Errorf("decoding device %q: %w", item.Key(), err)
			}
			if err := fn(item.Key(), &d); err != nil {
				return err
			}
		}
		return nil
	})
}
