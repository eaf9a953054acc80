// Package discovery owns device discovery on the clinical VLANs: mDNS
// browsing per interface, the gateway's own mDNS announcement, parsing of
// the device TXT schema (TXT.md), and the device inventory with its
// history. It makes no policy decisions and does not audit: it returns
// events and calls callbacks, and the gateway records them.
//
// # Inventory
//
// An Inventory is keyed by (manufacturer, serial), never by address or
// instance name, and is stored in the gateway's badger DB under "inv/".
// Authenticated check-ins (CheckIn) are authoritative. mDNS sightings
// (Observe, ObserveBatch) create unverified records, and on a checked-in
// device they are kept as an unverified Claim when they contradict it.
// Each device keeps its interfaces, address history, first and last seen
// times, software versions and a lifecycle state (active, departed,
// stale, retired). Its history is append-only: nothing is deleted.
//
// # Browsing
//
// A Browser watches a list of interfaces. Per interface and cycle it runs
// one hashicorp/mdns v1.0.7 query and one query of its own from port
// 5353, and it reads every mDNS packet on its own socket with the arrival
// interface attached. That listener is what makes the results complete:
// the library alone queries one interface at a time, does not filter by
// service type, reports goodbyes (TTL 0) as live devices, keeps only the
// last instance of a packet, drops results whose channel is not read in
// time and, because its multicast socket hears every interface, cannot
// say which VLAN a result came from. The browser filters and attributes
// the library's results itself and drains them into a buffer, takes
// departures only from the listener, and keeps the latest sighting of
// each device per interface until the inventory has written it, so a
// slow disk coarsens writes but loses no device.
//
// # Announcing
//
// An Announcer publishes the gateway's service (GatewayServiceType) on
// each clinical interface with only that interface's IPv4 addresses, and
// sends goodbyes when it stops. DeviceAnnouncer publishes simulated
// devices with the TXT schema, for the device simulator and tests.
//
// # Wiring
//
// The gateway opens the inventory, then starts Inventory.Run,
// Browser.Run and Announcer.Run on the same interface names, and on
// shutdown calls Announcer.Close (goodbyes), Browser.Close and
// Inventory.Close before it closes badger. See the package example.
//
// IPv4 only: the listener and the announcer use IPv4 multicast
// (224.0.0.251), and AAAA records that arrive over IPv4 are recorded as
// device addresses.
package discovery
