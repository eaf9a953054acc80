package gateway_test

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/wire"
)

// logLines collects what a logger writes, so a test can wait for a line.
type logLines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

// startGatewayWith starts a gateway like startGateway, but also writes its
// log to logs and calls tune between New and Run.
func (e *env) startGatewayWith(cfg config.Config, logs io.Writer, tune func(*gateway.Gateway)) {
	e.t.Helper()
	if _, err := gateway.ImportCredentials(cfg, e.bundle, true); err != nil {
		e.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{e.t}, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := gateway.New(cfg, log)
	if err != nil {
		e.t.Fatalf("starting gateway: %v", err)
	}
	tune(g)
	e.cfg, e.gw = cfg, g
	ctx, cancel := context.WithCancel(context.Background())
	e.gwStop, e.gwDone = cancel, make(chan error, 1)
	go func() { e.gwDone <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case <-time.After(30 * time.Second):
		e.t.Fatal("gateway not ready within 30s")
	}
}

// TestPrefetchRetriedAfterHubReturns approves a release while the hub is
// down, so its prefetch fails, and checks that the release is cached once
// the hub is back, before any device requests it.
func TestPrefetchRetriedAfterHubReturns(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	var logs logLines
	e.startGatewayWith(e.adminConfig(), &logs, func(g *gateway.Gateway) {
		g.SetRolloutTiming(20*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond)
	})
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	sha := hex.EncodeToString(e.repo.Targets()[pumpTarget].Hashes["sha256"])
	blobFile := filepath.Join(e.cfg.DataDir, "blobs", "sha256", sha[:2], sha)
	cached := func() bool {
		_, err := os.Stat(blobFile)
		return err == nil
	}

	e.stopHub()
	waitFor(t, 15*time.Second, "the tunnel to notice the hub is gone", func() bool { return !e.gw.Tunnel().Connected() })
	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", approver, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	const failed = "prefetching an approved release failed"
	waitFor(t, 10*time.Second, "the prefetch to fail with the hub down", func() bool { return logs.count(failed) > 0 })
	if cached() {
		t.Fatalf("%s is in the blob store while the hub is down", pumpTarget)
	}

	e.startHub()
	waitFor(t, 10*time.Second, "the approved release to be prefetched once the hub is back", cached)

	// With the hub down again, a device gets the release from the cache.
	e.stopHub()
	client := deviceClient(t, e, e.deviceCA(), "PUMP-1")
	resp, err := checkIn(t, client, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0", DeviceClass: "infusion-pump"})
	if err != nil {
		t.Fatalf("check-in: %v", err)
	}
	if len(resp.Offers) != 1 || resp.Offers[0].Target != pumpTarget {
		t.Fatalf("check-in: offers %+v, want %s", resp.Offers, pumpTarget)
	}
	dl, err := client.Get(e.gatewayURL() + resp.Offers[0].URL)
	if err != nil {
		t.Fatalf("download with the hub down: %v", err)
	}
	n, _ := io.Copy(io.Discard, dl.Body)
	dl.Body.Close()
	if dl.StatusCode != http.StatusOK || n != resp.Offers[0].Length {
		t.Errorf("download with the hub down: %s, %d bytes; want 200 and %d bytes", dl.Status, n, resp.Offers[0].Length)
	}
}
