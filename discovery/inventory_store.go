package discovery

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Key layout under the inventory's "inv/" prefix:
//
//	inv/d/MANUFACTURER\x00SERIAL            JSON Device
//	inv/h/MANUFACTURER\x00SERIAL\x00SEQ     JSON Event, SEQ a big-endian uint64
//
// Identities may not contain NUL, so the separator cannot be forged and
// keys sort by manufacturer, then serial.
const (
	devicePrefix   = "inv/d/"
	historyRoot    = "inv/h/"
	maxIdentityLen = MaxTXTValueLen
)

func deviceKey(manufacturer, serial string) []byte {
	return []byte(devicePrefix + manufacturer + "\x00" + serial)
}

func historyPrefix(manufacturer, serial string) []byte {
	return []byte(historyRoot + manufacturer + "\x00" + serial + "\x00")
}

func historyKey(manufacturer, serial string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(historyPrefix(manufacturer, serial), seq)
}

// validateIdentity checks a (manufacturer, serial) pair before it becomes
// a key.
func validateIdentity(manufacturer, serial string) error {
	for _, f := range []struct{ name, value string }{{"manufacturer", manufacturer}, {"serial", serial}} {
		switch {
		case f.value == "":
			return fmt.Errorf("%s is empty; a device is identified by a non-empty manufacturer and serial", f.name)
		case len(f.value) > maxIdentityLen:
			return fmt.Errorf("%s %q is %d bytes, over the %d-byte limit", f.name, f.value, len(f.value), maxIdentityLen)
		case strings.ContainsRune(f.value, 0) || !printableText(f.value):
			return fmt.Errorf("%s %q contains characters that are not printable UTF-8 text", f.name, f.value)
		}
	}
	return nil
}

// getDevice reads the device at key into d. found is false when there is
// none.
func getDevice(txn *badger.Txn, key []byte, d *Device) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, d) })
	if err != nil {
		return false, fmt.Errorf("decoding device %q: %w", key, err)
	}
	return true, nil
}

// Event is one entry in a device's history. Device is a summary of the
// record just after the event: its Links, Addresses and Components are
// left out, and Details carries the facts the event is about.
type Event struct {
	// Kind is one of the Event* constants.
	Kind    string            `json:"kind"`
	Time    time.Time         `json:"time"`
	Device  Device            `json:"device"`
	Details map[string]string `json:"details,omitempty"`
}

// Event kinds recorded in a device's history.
const (
	// EventDiscovered: first sighting or check-in; Details "source" is
	// "mdns" or "checkin".
	EventDiscovered = "discovered"
	// EventCheckIn: an authenticated check-in.
	EventCheckIn = "checkin"
	// EventVersionChanged: the software version changed; Details "from",
	// "to" and "source".
	EventVersionChanged = "version-changed"
	// EventComponentsChanged: a check-in reported different components;
	// Details map "component:NAME" to "OLD -> NEW".
	EventComponentsChanged = "components-changed"
	// EventStatusChanged: the clinical-use or maintenance flag changed.
	EventStatusChanged = "status-changed"
	// EventAddressChanged: the device's address on an interface changed;
	// Details "interface", "from" and "to".
	EventAddressChanged = "address-changed"
	// EventInterfaceAdded: the device was seen on another interface.
	EventInterfaceAdded = "interface-added"
	// EventInterfaceDeparted: a goodbye on one interface while the device
	// is still present on another.
	EventInterfaceDeparted = "interface-departed"
	// EventDeparted: a goodbye on the last interface the device was on.
	EventDeparted = "departed"
	// EventUnverifiedClaim: mDNS announced values that contradict the
	// last check-in; Details map each field to "CLAIMED (checked in:
	// VERIFIED)".
	EventUnverifiedClaim = "unverified-claim"
	// EventReturned: a departed, stale or retired device was seen again;
	// Details "from" is the previous state.
	EventReturned = "returned"
	// EventStale: unseen for StaleAfter.
	EventStale = "stale"
	// EventRetired: unseen for RetireAfter.
	EventRetired = "retired"
)

// summary returns d without the fields an Event leaves out.
func (d Device) summary() Device {
	d.Links, d.Addresses, d.Components = nil, nil, nil
	d.Interfaces = append([]string(nil), d.Interfaces...)
	if d.Claim != nil {
		c := *d.Claim
		d.Claim = &c
	}
	return d
}

// clone returns a deep copy of d, so that a mutation can be discarded.
func (d Device) clone() Device {
	d.Components = cloneMap(d.Components)
	d.Interfaces = append([]string(nil), d.Interfaces...)
	d.Addresses = append([]AddressSighting(nil), d.Addresses...)
	links := make([]Link, len(d.Links))
	for i, l := range d.Links {
		l.Addresses = append(l.Addresses[:0:0], l.Addresses...)
		links[i] = l
	}
	d.Links = links
	if d.Claim != nil {
		c := *d.Claim
		d.Claim = &c
	}
	return d
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// splitDeviceKey returns the identity in a device key.
func splitDeviceKey(key string) (manufacturer, serial string, ok bool) {
	rest, ok := strings.CutPrefix(key, devicePrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "\x00")
}
