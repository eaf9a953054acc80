package tunnel

import (
	"context"
	"sync"
	"time"
)

// Priority orders requests that compete for the bandwidth cap.
type Priority int

// Priorities, highest first.
const (
	// PriorityControl is hello, the control stream and renewal.
	PriorityControl Priority = iota
	// PriorityUpdate is TUF metadata and update targets.
	PriorityUpdate
	// PriorityNormal is install outcomes and anything unclassified.
	PriorityNormal
	// PriorityTelemetry is analytics uploads, which can always wait.
	PriorityTelemetry
	numPriorities
)

// String names the priority for metrics.
func (p Priority) String() string {
	switch p {
	case PriorityControl:
		return "control"
	case PriorityUpdate:
		return "update"
	case PriorityNormal:
		return "normal"
	case PriorityTelemetry:
		return "telemetry"
	}
	return "unknown"
}

// maxChunk bounds one grant, so that a large read cannot hold the bucket
// for long.
const maxChunk = 64 << 10

// Limiter is a token bucket shared by every request and response body of
// the tunnel. Waiters are served strictly by priority, and in arrival
// order within one priority, so an update fetch overtakes telemetry that
// is waiting. Telemetry gets the bandwidth that fetches leave.
type Limiter struct {
	rate  float64 // bytes per second; 0 means no limit
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
	queues [numPriorities][]*waiter
	timer  *time.Timer
}

type waiter struct {
	n       float64
	ch      chan struct{}
	granted bool
}

// NewLimiter returns a limiter of bytesPerSecond; 0 or less means no
// limit. The bucket holds a tenth of a second of traffic, at least 16 KiB.
func NewLimiter(bytesPerSecond int64) *Limiter {
	l := &Limiter{}
	if bytesPerSecond <= 0 {
		return l
	}
	l.rate = float64(bytesPerSecond)
	l.burst = max(l.rate/10, 16<<10)
	l.tokens = l.burst
	l.last = time.Now()
	return l
}

// Rate returns the limit in bytes per second, 0 for none.
func (l *Limiter) Rate() int64 { return int64(l.rate) }

// Chunk returns the most bytes one WaitN may ask for, or 0 without a
// limit.
func (l *Limiter) Chunk() int {
	if l.rate == 0 {
		return 0
	}
	return int(min(l.burst, maxChunk))
}

// WaitN blocks until n bytes of priority p may pass or ctx ends. n must
// not exceed Chunk.
func (l *Limiter) WaitN(ctx context.Context, p Priority, n int) error {
	if l.rate == 0 || n <= 0 {
		return nil
	}
	if p < 0 || p >= numPriorities {
		p = PriorityNormal
	}
	need := min(float64(n), l.burst)
	l.mu.Lock()
	l.refillLocked(time.Now())
	if l.noneWaitingLocked(p) && l.tokens >= need {
		l.tokens -= need
		l.mu.Unlock()
		return nil
	}
	w := &waiter{n: need, ch: make(chan struct{})}
	l.queues[p] = append(l.queues[p], w)
	l.dispatchLocked()
	l.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if w.granted {
			return nil
		}
		q := l.queues[p]
		for i, o := range q {
			if o == w {
				l.queues[p] = append(q[:i:i], q[i+1:]...)
				break
			}
		}
		l.dispatchLocked()
		return ctx.Err()
	}
}

// noneWaitingLocked reports whether no waiter of priority p or higher is
// queued, so a new request of p may take tokens directly.
func (l *Limiter) noneWaitingLocked(p Priority) bool {
	for i := PriorityControl; i <= p; i++ {
		if len(l.queues[i]) > 0 {
			return false
		}
	}
	return true
}

func (l *Limiter) refillLocked(now time.Time) {
	if el := now.Sub(l.last); el > 0 {
		l.tokens = min(l.burst, l.tokens+el.Seconds()*l.rate)
		l.last = now
	}
}

// dispatchLocked grants tokens to waiters in priority order and arms a
// timer for the first one that must wait.
func (l *Limiter) dispatchLocked() {
	l.refillLocked(time.Now())
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	for p := range l.queues {
		for len(l.queues[p]) > 0 {
			w := l.queues[p][0]
			if l.tokens < w.n {
				wait := time.Duration((w.n - l.tokens) / l.rate * float64(time.Second))
				l.timer = time.AfterFunc(max(wait, time.Millisecond), func() {
					l.mu.Lock()
					defer l.mu.Unlock()
					l.dispatchLocked()
				})
				return
			}
			l.tokens -= w.n
			w.granted = true
			close(w.ch)
			l.queues[p] = l.queues[p][1:]
		}
	}
}
