package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

type okUploader struct{}

func (okUploader) Upload(context.Context, string, []byte) error { return nil }

func TestPruneKeepsRecordsDropsOldPayloads(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithMemTableSize(8 << 20).WithValueThreshold(64 << 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.DiscardHandler)
	q, err := OpenQueue(db, QueueOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	r, err := NewRelay(q, okUploader{}, RelayOptions{SiteID: "site-0123456789", MinCellDevices: 1, KeepPayloads: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dev := DeviceIdentity{Manufacturer: "Acme", Serial: "S1", Model: "M", SoftwareVersion: "1", DeviceClass: "pump"}
	ctx := context.Background()
	if _, err := q.Append(ctx, dev, Batch{Events: []Event{{KindCounter, "c", 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	if err := r.prune(time.Now().Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ExportPayload(ctx, 1); err != nil {
		t.Fatalf("payload within KeepPayloads: got %v, want it kept", err)
	}

	if err := r.prune(time.Now().Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ExportPayload(ctx, 1); !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("payload past KeepPayloads: got %v, want ErrKeyNotFound", err)
	}
	recs, err := r.Exports(ctx, 1, 10)
	if err != nil || len(recs) != 1 || recs[0].SHA256 == "" {
		t.Fatalf("export records after pruning: got %+v, %v; want the record kept", recs, err)
	}
}
