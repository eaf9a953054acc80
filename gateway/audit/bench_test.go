package audit

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"
)

func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	db := openDB(b, filepath.Join(b.TempDir(), "db"))
	b.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		if err := s.Record(context.Background(), Record{Time: base.Add(time.Duration(i) * time.Second), Actor: "device:Acme/SN-1", Action: "device.checkin", Subject: "Acme/SN-1", Details: map[string]string{"version": fmt.Sprint(i)}}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkRecord appends one synced record (SyncWrites is on).
func BenchmarkRecord(b *testing.B) {
	s := benchStore(b, 0)
	ctx := context.Background()
	r := Record{Actor: "device:Acme/SN-1", Action: "device.checkin", Subject: "Acme/SN-1", Details: map[string]string{"version": "3.2.0"}}
	for b.Loop() {
		if err := s.Record(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify10k verifies a chain of 10,000 records.
func BenchmarkVerify10k(b *testing.B) {
	s := benchStore(b, 10000)
	for b.Loop() {
		if n, err := s.Verify(context.Background()); err != nil || n != 10000 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/record")
}

// BenchmarkExportCSV10k exports 10,000 records as CSV.
func BenchmarkExportCSV10k(b *testing.B) {
	s := benchStore(b, 10000)
	for b.Loop() {
		if _, err := s.Export(context.Background(), io.Discard, FormatCSV, Filter{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFormatRFC5424 renders one syslog message.
func BenchmarkFormatRFC5424(b *testing.B) {
	e := Entry{Seq: 42, Hash: "ab", Record: Record{Time: time.Now(), Actor: "token:abc", Action: "approval.grant", Subject: "pump/3.2.0", Details: map[string]string{"group": "icu"}}}
	for b.Loop() {
		_ = FormatRFC5424(e, "gw-1", "wardgate")
	}
}

// BenchmarkRecordParallel appends from many goroutines, which share
// synced commits.
func BenchmarkRecordParallel(b *testing.B) {
	s := benchStore(b, 0)
	r := Record{Actor: "device:Acme/SN-1", Action: "device.checkin", Subject: "Acme/SN-1"}
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Record(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
