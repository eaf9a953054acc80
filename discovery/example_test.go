package discovery_test

import (
	"context"
	"log/slog"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/discovery"
)

// This example wires discovery as the gateway does: one inventory, one
// browser and one announcer over the same clinical interfaces. It is
// compiled but not run, because it needs real interfaces.
func Example() {
	ctx := context.Background()
	db, err := badger.Open(badger.DefaultOptions("/var/lib/wardgate/db").WithSyncWrites(true))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	logger := slog.Default()
	clinical := []string{"eth1.101", "eth1.102", "eth1.103"}

	inv, err := discovery.OpenInventory(db, discovery.InventoryOptions{Logger: logger})
	if err != nil {
		panic(err)
	}
	defer inv.Close()
	go inv.Run(ctx)

	browser, err := discovery.NewBrowser(discovery.BrowserOptions{
		Interfaces: clinical,
		Inventory:  inv,
		Logger:     logger,
		OnEvent: func(e discovery.Event) {
			// The gateway turns each event into an audit record here.
			logger.Info("discovery event", "kind", e.Kind, "device", e.Device.Manufacturer+"/"+e.Device.Serial)
		},
	})
	if err != nil {
		panic(err)
	}
	defer browser.Close()
	go browser.Run(ctx)

	announcer, err := discovery.NewAnnouncer(discovery.AnnouncerOptions{Interfaces: clinical, Port: 8443, Logger: logger})
	if err != nil {
		panic(err)
	}
	// Deferred last, so it runs first: goodbyes go out before the
	// browser and the inventory stop.
	defer announcer.Close()
	go announcer.Run(ctx)
}
