package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/wire"
)

func TestBackupUnderLoadRestores(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	f := startFleet(t, e)
	admin := newToken(t, e.gw, "Ada Admin", gateway.RoleAdmin)
	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", admin, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	for f.round() > 0 {
	}
	before := e.gw.Mirror().Status()
	pump, ok := e.gw.Mirror().Target(pumpTarget)
	if !ok {
		t.Fatal("pump release not in the mirror")
	}

	// Devices keep checking in while the backup streams.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var checkins atomic.Int64
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := deviceClient(t, e, e.deviceCA(), fmt.Sprintf("LOAD-%d", i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := checkIn(t, c, e.gatewayURL(), wire.CheckInRequest{Model: "MON-5", HardwareRevision: "A", Version: "5.0.0"}); err == nil {
					checkins.Add(1)
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "check-ins under load", func() bool { return checkins.Load() > 10 })
	req, _ := http.NewRequest("GET", e.adminURL()+"/v1/backup", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "wardgate.tar")
	out, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		t.Fatalf("receiving the backup: %v", err)
	}
	resp.Body.Close()
	out.Close()
	if st := resp.Trailer.Get("X-Wardgate-Backup-Status"); resp.StatusCode != http.StatusOK || st != "ok" {
		t.Fatalf("backup: %s, status trailer %q", resp.Status, st)
	}
	during := checkins.Load()
	close(stop)
	wg.Wait()
	t.Logf("%d check-ins while the backup ran", checkins.Load()-during)
	e.stopGateway()
	e.stopHub()

	// Restore on a fresh data folder and serve from it, hub down.
	cfg := e.adminConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "restored")
	in, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	m, err := gateway.RestoreBackup(context.Background(), in, cfg.DataDir, slog.New(slog.DiscardHandler), nil)
	in.Close()
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if m.Blobs == 0 || m.Files == 0 || m.AuditHead == 0 {
		t.Errorf("manifest %+v: want blobs, files and audit entries", m)
	}
	if _, err := gateway.RestoreBackup(context.Background(), must(os.Open(backup)), cfg.DataDir, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Errorf("a second restore into the same data folder was accepted")
	}
	e.startGateway(cfg)
	n, err := e.gw.Audit().Verify(context.Background())
	if err != nil || uint64(n) < m.AuditHead {
		t.Errorf("restored audit chain: %d entries, %v; want at least %d and intact", n, err, m.AuditHead)
	}
	if got := e.gw.Mirror().Status(); got.TimestampVersion != before.TimestampVersion || got.Targets != before.Targets {
		t.Errorf("restored TUF state: timestamp %d with %d targets, want %d with %d", got.TimestampVersion, got.Targets, before.TimestampVersion, before.Targets)
	}
	code, body := apiCall(t, e, "GET", "/v1/devices?model=IP-200", admin, "")
	if code != http.StatusOK {
		t.Fatalf("restored token and inventory: %d %s", code, body)
	}
	if devs := decodeJSON[[]map[string]any](t, body); len(devs) != 7 {
		t.Errorf("restored inventory holds %d IP-200 devices, want 7", len(devs))
	}
	// A pump that joins now gets the approved release from the cache.
	c := deviceClient(t, e, e.deviceCA(), "JOINS-LATER")
	offers, err := checkIn(t, c, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"})
	if err != nil || len(offers.Offers) != 1 || offers.Offers[0].Target != pumpTarget {
		t.Fatalf("check-in on the restored gateway: %+v, %v; want the pump release offered", offers.Offers, err)
	}
	waitFor(t, 30*time.Second, "the restored cache to serve the pump image", func() bool {
		r, err := c.Get(e.gatewayURL() + offers.Offers[0].URL)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		n, _ := io.Copy(io.Discard, r.Body)
		return r.StatusCode == http.StatusOK && n == pump.Length
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
