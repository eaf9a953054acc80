package tunnel_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardgate/wardgate/gateway/tunnel"
)

// take moves total bytes through l in chunks of priority p.
func take(t *testing.T, ctx context.Context, l *tunnel.Limiter, p tunnel.Priority, total int) error {
	t.Helper()
	for total > 0 {
		n := min(total, l.Chunk())
		if err := l.WaitN(ctx, p, n); err != nil {
			return err
		}
		total -= n
	}
	return nil
}

func TestLimiterHoldsTheRate(t *testing.T) {
	tests := []struct {
		name  string
		rate  int64
		bytes int
	}{
		{"1 MB/s for 5 MB", 1 << 20, 5 << 20},
		{"64 KB/s for 1 MB", 64 << 10, 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := tunnel.NewLimiter(tc.rate)
				start := time.Now()
				if err := take(t, context.Background(), l, tunnel.PriorityUpdate, tc.bytes); err != nil {
					t.Fatal(err)
				}
				got := time.Since(start)
				// The bucket starts full, so the first burst is free.
				burst := max(float64(tc.rate)/10, 16<<10)
				want := time.Duration((float64(tc.bytes) - burst) / float64(tc.rate) * float64(time.Second))
				if got < want-10*time.Millisecond || got > want+50*time.Millisecond {
					t.Errorf("moving %d bytes at %d B/s took %s, want about %s", tc.bytes, tc.rate, got, want)
				}
			})
		})
	}
}

func TestLimiterOff(t *testing.T) {
	l := tunnel.NewLimiter(0)
	if l.Chunk() != 0 || l.Rate() != 0 {
		t.Errorf("limiter of 0: chunk %d rate %d, want 0 and 0", l.Chunk(), l.Rate())
	}
	if err := l.WaitN(context.Background(), tunnel.PriorityTelemetry, 1<<30); err != nil {
		t.Errorf("unlimited WaitN: %v", err)
	}
}

func TestUpdatesOvertakeTelemetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := tunnel.NewLimiter(100 << 10)
		ctx := context.Background()
		var mu sync.Mutex
		finished := map[string]time.Time{}
		var wg sync.WaitGroup
		run := func(name string, p tunnel.Priority, total int, after time.Duration) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(after)
				if err := take(t, ctx, l, p, total); err != nil {
					t.Error(err)
				}
				mu.Lock()
				finished[name] = time.Now()
				mu.Unlock()
			}()
		}
		start := time.Now()
		// Telemetry starts first and would need 5 s alone; an update of
		// the same size arrives a second later and must finish first.
		run("telemetry", tunnel.PriorityTelemetry, 500<<10, 0)
		run("update", tunnel.PriorityUpdate, 500<<10, time.Second)
		wg.Wait()
		if !finished["update"].Before(finished["telemetry"]) {
			t.Errorf("update finished at %s, telemetry at %s: want the update first", finished["update"].Sub(start), finished["telemetry"].Sub(start))
		}
		// Together they share one cap: about 10 s for 1000 KiB.
		if total := finished["telemetry"].Sub(start); total < 9*time.Second || total > 11*time.Second {
			t.Errorf("both transfers took %s, want about 10s at 100 KiB/s", total)
		}
	})
}

func TestLimiterWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := tunnel.NewLimiter(16 << 10)
		if err := take(t, context.Background(), l, tunnel.PriorityTelemetry, 16<<10); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := l.WaitN(ctx, tunnel.PriorityTelemetry, 16<<10)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitN past its deadline: %v, want DeadlineExceeded", err)
		}
		// The abandoned wait must not hold tokens: a later wait gets
		// them after the normal refill.
		start := time.Now()
		if err := l.WaitN(context.Background(), tunnel.PriorityUpdate, 16<<10); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got > time.Second {
			t.Errorf("next wait took %s, want under 1s", got)
		}
	})
}
