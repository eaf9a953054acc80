package discovery

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The functions in this file are the inventory's merge rules. They change
// a Device in memory and return the events that the change causes; the
// write path in inventory_write.go persists both.

func newEvent(kind string, t time.Time, details map[string]string) Event {
	return Event{Kind: kind, Time: t, Details: details}
}

// applyCheckIn merges an authenticated check-in, which is authoritative.
func applyCheckIn(d *Device, exists bool, c CheckIn) []Event {
	t := c.Time
	var events []Event
	if !exists {
		d.FirstSeen, d.State, d.StateSince = t, StateActive, t
		events = append(events, newEvent(EventDiscovered, t, map[string]string{"source": "checkin", "interface": c.Interface}))
	}
	if exists && d.Version != c.Version {
		events = append(events, newEvent(EventVersionChanged, t, map[string]string{"from": d.Version, "to": c.Version, "source": "checkin"}))
	}
	if exists && !maps.Equal(d.Components, c.Components) {
		events = append(events, newEvent(EventComponentsChanged, t, diffComponents(d.Components, c.Components)))
	}
	if exists && (d.InClinicalUse != c.InClinicalUse || d.InMaintenance != c.InMaintenance) {
		events = append(events, statusEvent(t, c.InClinicalUse, c.InMaintenance, "checkin"))
	}
	d.Model, d.HardwareRevision, d.Version, d.DeviceClass = c.Model, c.HardwareRevision, c.Version, c.DeviceClass
	d.Components = c.Components
	d.InClinicalUse, d.InMaintenance = c.InClinicalUse, c.InMaintenance
	d.Verified, d.Claim, d.LastCheckIn = true, nil, t

	if c.Interface != "" {
		link, added := ensureLink(d, c.Interface, t)
		if added && exists {
			events = append(events, newEvent(EventInterfaceAdded, t, map[string]string{"interface": c.Interface, "source": "checkin"}))
		}
		link.Present, link.DepartedAt = true, time.Time{}
		if c.Address.IsValid() {
			e, _ := recordAddress(d, link, c.Address, "checkin", t)
			events = append(events, e...)
		}
	}
	if exists && d.State != StateActive {
		events = append(events, newEvent(EventReturned, t, map[string]string{"from": string(d.State)}))
		d.State, d.StateSince = StateActive, t
	}
	if t.After(d.LastSeen) {
		d.LastSeen = t
	}
	details := map[string]string{"version": c.Version, "components": strconv.Itoa(len(c.Components))}
	if c.Interface != "" {
		details["interface"] = c.Interface
	}
	if c.Address.IsValid() {
		details["address"] = c.Address.String()
	}
	return append(events, newEvent(EventCheckIn, t, details))
}

// applySighting merges an unverified mDNS sighting.
func applySighting(d *Device, exists bool, s Sighting) (changed bool, events []Event, skip bool) {
	t := s.Time
	if s.Goodbye {
		if !exists {
			return false, nil, true
		}
		return applyGoodbye(d, s)
	}
	info := s.Info
	if !exists {
		d.Model, d.HardwareRevision, d.Version, d.DeviceClass = info.Model, info.HardwareRevision, info.Version, info.DeviceClass
		d.InClinicalUse, d.InMaintenance = info.InClinicalUse, info.InMaintenance
		d.FirstSeen, d.State, d.StateSince = t, StateActive, t
		events = append(events, newEvent(EventDiscovered, t, map[string]string{
			"source": "mdns", "path": s.Source, "interface": s.Interface, "instance": s.Instance, "version": info.Version,
		}))
	}
	link, added := ensureLink(d, s.Interface, t)
	if added && exists {
		events = append(events, newEvent(EventInterfaceAdded, t, map[string]string{"interface": s.Interface, "source": "mdns", "path": s.Source}))
	}
	if !link.Present || link.Instance != s.Instance {
		link.Present, link.DepartedAt, link.Instance = true, time.Time{}, s.Instance
		changed = true
	}
	if t.After(link.LastSeen) {
		link.LastSeen = t
	}
	for _, a := range s.Addresses {
		e, added := recordAddress(d, link, a, "mdns", t)
		events = append(events, e...)
		changed = changed || added
	}

	if exists {
		c, e := mergeClaims(d, s)
		changed = changed || c
		events = append(events, e...)
	}
	if info.APIPort != d.APIPort {
		d.APIPort = info.APIPort
		changed = true
	}
	if exists && d.State != StateActive {
		events = append(events, newEvent(EventReturned, t, map[string]string{"from": string(d.State), "interface": s.Interface, "path": s.Source}))
		d.State, d.StateSince = StateActive, t
	}
	if t.After(d.LastSeen) {
		d.LastSeen = t
	}
	return changed || len(events) > 0, events, false
}

// mergeClaims applies the TXT claims of a sighting of a known device. A
// device that never checked in takes them as they are. For a checked-in
// device, claims that differ from the check-in are kept apart in
// Device.Claim and clear Verified until a check-in confirms them.
func mergeClaims(d *Device, s Sighting) (changed bool, events []Event) {
	info, t := s.Info, s.Time
	if d.LastCheckIn.IsZero() {
		if d.Version != info.Version {
			events = append(events, newEvent(EventVersionChanged, t, map[string]string{"from": d.Version, "to": info.Version, "source": "mdns"}))
		}
		if d.InClinicalUse != info.InClinicalUse || d.InMaintenance != info.InMaintenance {
			events = append(events, statusEvent(t, info.InClinicalUse, info.InMaintenance, "mdns"))
		}
		if d.Model != info.Model || d.HardwareRevision != info.HardwareRevision || d.DeviceClass != info.DeviceClass {
			changed = true
		}
		d.Model, d.HardwareRevision, d.Version, d.DeviceClass = info.Model, info.HardwareRevision, info.Version, info.DeviceClass
		d.InClinicalUse, d.InMaintenance = info.InClinicalUse, info.InMaintenance
		return changed, events
	}

	claim := Claim{
		Model: info.Model, HardwareRevision: info.HardwareRevision, Version: info.Version, DeviceClass: info.DeviceClass,
		InClinicalUse: info.InClinicalUse, InMaintenance: info.InMaintenance, Interface: s.Interface, Time: t,
	}
	diff := claimDiff(d, claim)
	if len(diff) == 0 {
		if d.Claim != nil || !d.Verified {
			d.Claim, d.Verified = nil, true
			changed = true
		}
		return changed, nil
	}
	if d.Claim != nil && sameClaim(*d.Claim, claim) {
		return false, nil
	}
	d.Claim, d.Verified = &claim, false
	diff["interface"] = s.Interface
	return true, []Event{newEvent(EventUnverifiedClaim, t, diff)}
}

// claimDiff maps each field where claim contradicts the checked-in record
// to "CLAIMED (checked in: VERIFIED)".
func claimDiff(d *Device, c Claim) map[string]string {
	diff := map[string]string{}
	field := func(name, claimed, verified string) {
		if claimed != verified {
			diff[name] = claimed + " (checked in: " + verified + ")"
		}
	}
	field("model", c.Model, d.Model)
	field("hardware_revision", c.HardwareRevision, d.HardwareRevision)
	field("version", c.Version, d.Version)
	field("device_class", c.DeviceClass, d.DeviceClass)
	field("in_clinical_use", strconv.FormatBool(c.InClinicalUse), strconv.FormatBool(d.InClinicalUse))
	field("in_maintenance", strconv.FormatBool(c.InMaintenance), strconv.FormatBool(d.InMaintenance))
	return diff
}

func sameClaim(a, b Claim) bool {
	a.Time, b.Time, a.Interface, b.Interface = time.Time{}, time.Time{}, "", ""
	return a == b
}

// applyGoodbye marks the device gone from the sighting's interface, and
// departed when it is present on no interface.
func applyGoodbye(d *Device, s Sighting) (bool, []Event, bool) {
	i := slices.IndexFunc(d.Links, func(l Link) bool { return l.Interface == s.Interface })
	if i < 0 || !d.Links[i].Present {
		return false, nil, true
	}
	t := s.Time
	d.Links[i].Present, d.Links[i].DepartedAt = false, t
	if t.After(d.Links[i].LastSeen) {
		d.Links[i].LastSeen = t
	}
	if t.After(d.LastSeen) {
		d.LastSeen = t
	}
	details := map[string]string{"interface": s.Interface, "instance": s.Instance}
	if slices.ContainsFunc(d.Links, func(l Link) bool { return l.Present }) {
		return true, []Event{newEvent(EventInterfaceDeparted, t, details)}, false
	}
	if d.State != StateActive {
		return true, nil, false
	}
	d.State, d.StateSince = StateDeparted, t
	return true, []Event{newEvent(EventDeparted, t, details)}, false
}

// ensureLink returns the device's link on iface, adding it when missing.
func ensureLink(d *Device, iface string, t time.Time) (*Link, bool) {
	if i := slices.IndexFunc(d.Links, func(l Link) bool { return l.Interface == iface }); i >= 0 {
		return &d.Links[i], false
	}
	d.Links = append(d.Links, Link{Interface: iface, FirstSeen: t, LastSeen: t, Present: true})
	if i, found := slices.BinarySearch(d.Interfaces, iface); !found {
		d.Interfaces = slices.Insert(d.Interfaces, i, iface)
	}
	return &d.Links[len(d.Links)-1], true
}

// recordAddress records that the device used addr on link. It returns an
// address-changed event when addr replaces another address of the same
// family on that link, and added=true when the record gained an address.
func recordAddress(d *Device, link *Link, addr netip.Addr, source string, t time.Time) (events []Event, added bool) {
	addr = addr.Unmap()
	i := slices.IndexFunc(link.Addresses, func(a netip.Addr) bool { return a.Is4() == addr.Is4() })
	switch {
	case i < 0:
		link.Addresses = append(link.Addresses, addr)
		added = true
	case link.Addresses[i] != addr:
		added = true
		events = append(events, newEvent(EventAddressChanged, t, map[string]string{
			"interface": link.Interface, "from": link.Addresses[i].String(), "to": addr.String(), "source": source,
		}))
		link.Addresses[i] = addr
	}
	j := slices.IndexFunc(d.Addresses, func(a AddressSighting) bool { return a.Address == addr && a.Interface == link.Interface })
	if j >= 0 {
		if t.After(d.Addresses[j].LastSeen) {
			d.Addresses[j].LastSeen = t
		}
		return events, added
	}
	d.Addresses = append(d.Addresses, AddressSighting{Address: addr, Interface: link.Interface, Source: source, FirstSeen: t, LastSeen: t})
	if len(d.Addresses) > maxAddressHistory {
		oldest := 0
		for k, a := range d.Addresses {
			if a.LastSeen.Before(d.Addresses[oldest].LastSeen) {
				oldest = k
			}
		}
		d.Addresses = slices.Delete(d.Addresses, oldest, oldest+1)
	}
	return events, true
}

func statusEvent(t time.Time, clinical, maintenance bool, source string) Event {
	return newEvent(EventStatusChanged, t, map[string]string{
		"in_clinical_use": strconv.FormatBool(clinical), "in_maintenance": strconv.FormatBool(maintenance), "source": source,
	})
}

// diffComponents maps "component:NAME" to "OLD -> NEW" for every component
// that was added, removed or changed; an empty side means absent.
func diffComponents(old, cur map[string]string) map[string]string {
	names := map[string]bool{}
	for k := range old {
		names[k] = true
	}
	for k := range cur {
		names[k] = true
	}
	keys := slices.Collect(maps.Keys(names))
	sort.Strings(keys)
	diff := map[string]string{}
	for _, k := range keys {
		o, ok1 := old[k]
		n, ok2 := cur[k]
		if ok1 && ok2 && o == n {
			continue
		}
		diff["component:"+k] = strings.TrimSpace(o + " -> " + n)
	}
	return diff
}
