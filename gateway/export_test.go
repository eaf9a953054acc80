package gateway

import "time"

// SetRolloutTiming sets how often the rollout manager ticks and the
// backoff bounds of its prefetch retries, so tests need not wait minutes.
// Call it between New and Run.
func (g *Gateway) SetRolloutTiming(tick, retryMin, retryMax time.Duration) {
	m := g.admin.rollouts
	m.tickInterval, m.prefetchRetryMin, m.prefetchRetryMax = tick, retryMin, retryMax
}
