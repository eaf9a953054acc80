package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/miekg/dns"
)

// BenchmarkDiscover1000Devices measures the time from the browser's start
// until 1000 announcing devices on three VLANs are all in the inventory,
// with real badger under synchronous writes.
func BenchmarkDiscover1000Devices(b *testing.B) {
	const total = 1000
	vlans := newVLANs(b, 3)
	for i := range total {
		v := vlans[i%len(vlans)]
		a := announcerFor(b, v, i/len(vlans)%10)
		dev := testDevice(v, i/len(vlans), fmt.Sprintf("load-%04d", i))
		// A /24 has too few addresses for 333 devices, so A records
		// repeat addresses; identity is (manufacturer, serial) anyway.
		dev.Address = v.hostAddr(10 + (i/len(vlans))%240)
		if err := a.Announce(dev); err != nil {
			b.Fatalf("Announce: %v", err)
		}
	}
	// Let the announcements and their one-second quiet time pass.
	time.Sleep(2 * time.Second)
	var names []string
	for _, v := range vlans {
		names = append(names, v.gwIf)
	}
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		inv, err := OpenInventory(openTestDB(b), InventoryOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var discovered atomic.Int64
		complete := make(chan struct{})
		browser, err := NewBrowser(BrowserOptions{
			Interfaces: names, Inventory: inv, QueryInterval: time.Minute, QueryWindow: 500 * time.Millisecond,
			OnEvent: func(e Event) {
				if e.Kind == EventDiscovered && discovered.Add(1) == total {
					close(complete)
				}
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- browser.Run(ctx) }()
		select {
		case <-complete:
		case <-time.After(60 * time.Second):
			b.Fatalf("only %d of %d devices discovered in 60s", discovered.Load(), total)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		inv.Close()
		// A responder multicasts a record at most once a second, so the
		// next browser's first query must not come sooner.
		time.Sleep(1500 * time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/1000-devices")
}

// BenchmarkInventoryObserveBatch measures the inventory write rate for
// new devices heard over mDNS, written in batches of 512 as the browser
// writes them, with synchronous writes.
func BenchmarkInventoryObserveBatch(b *testing.B) {
	inv, err := OpenInventory(openTestDB(b), InventoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer inv.Close()
	const batch = 512
	now := time.Now()
	b.ResetTimer()
	written := 0
	for i := range b.N {
		sightings := make([]Sighting, batch)
		for j := range sightings {
			sightings[j] = sighting("Acme", fmt.Sprintf("B%d-%d", i, j), "vlan101", "Pump", "10.1.0.5", now)
		}
		if _, err := inv.ObserveBatch(context.Background(), sightings); err != nil {
			b.Fatal(err)
		}
		written += batch
	}
	b.ReportMetric(float64(written)/b.Elapsed().Seconds(), "devices/s")
}

// BenchmarkInventoryCheckIn measures durable check-ins, one transaction
// each, across 1000 devices.
func BenchmarkInventoryCheckIn(b *testing.B) {
	inv, err := OpenInventory(openTestDB(b), InventoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer inv.Close()
	b.ResetTimer()
	for i := range b.N {
		c := CheckIn{Manufacturer: "Acme", Serial: fmt.Sprintf("C%d", i%1000), Model: "Pump", Version: fmt.Sprintf("1.%d", i/1000),
			Components: map[string]string{"app": "1", "kernel": "6.1"}, Interface: "vlan101", Address: netip.MustParseAddr("10.1.0.5")}
		if _, _, err := inv.CheckIn(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checkins/s")
}

// BenchmarkMemoryPerDevice measures the Go heap that 1000 discovered
// devices keep alive in the browser's cache and the inventory, and the
// key and value bytes they take in badger before compression.
func BenchmarkMemoryPerDevice(b *testing.B) {
	const total = 1000
	for range b.N {
		br, st, inv, _ := newOfflineBrowser(b)
		var packets [][]byte
		for i := range total {
			svc := deviceService(fmt.Sprintf("M%04d", i), fmt.Sprintf("Pump %04d", i), fmt.Sprintf("10.1.0.%d", 10+i%240))
			packets = append(packets, packResponse(b, svc.records(allRecords, 1), []dns.RR{}))
		}
		before := heapInUse()
		for _, p := range packets {
			br.handlePacket(st, p, fromDevice("10.1.0.10"))
		}
		br.writePending(context.Background())
		after := heapInUse()
		runtime.KeepAlive(br)
		b.ReportMetric(float64(after-before)/total, "heap-B/device")
		b.ReportMetric(float64(storedBytes(b, inv))/total, "stored-B/device")
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// storedBytes sums the sizes of the inventory's keys and values.
func storedBytes(b *testing.B, inv *Inventory) int64 {
	var n int64
	err := inv.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("inv/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n += int64(len(it.Item().Key())) + it.Item().ValueSize()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
