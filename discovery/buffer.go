package discovery

import (
	"context"
	"sync"
)

// sightingKey identifies what one pending sighting is about: a device on
// one interface.
type sightingKey struct {
	manufacturer, serial, iface string
}

// sightingBuffer decouples packet handling from inventory writes. Each
// device on each interface has at most one pending sighting, the latest,
// so a slow inventory makes writes coarser but loses no device: every
// device heard is written at its latest state. The latest sighting
// replaces a pending one, so a goodbye followed by a new announcement
// before the write is recorded as the new announcement only.
type sightingBuffer struct {
	mu      sync.Mutex
	pending map[sightingKey]Sighting
	// order keeps first-arrival order, so a batch is written in roughly
	// the order devices were heard.
	order    []sightingKey
	max      int
	inFlight int
	notify   chan struct{}
	idle     *sync.Cond
}

func newSightingBuffer(max int) *sightingBuffer {
	b := &sightingBuffer{pending: map[sightingKey]Sighting{}, max: max, notify: make(chan struct{}, 1)}
	b.idle = sync.NewCond(&b.mu)
	return b
}

// add queues s. It returns false when the buffer is full and s is about a
// device that has nothing pending, so s was dropped.
func (b *sightingBuffer) add(s Sighting) bool {
	k := sightingKey{s.Info.Manufacturer, s.Info.Serial, s.Interface}
	b.mu.Lock()
	if _, ok := b.pending[k]; !ok {
		if len(b.pending) >= b.max {
			b.mu.Unlock()
			return false
		}
		b.order = append(b.order, k)
	}
	b.pending[k] = s
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns up to n pending sightings, oldest first, and
// counts them as in flight until done is called.
func (b *sightingBuffer) take(n int) []Sighting {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, len(b.order))
	out := make([]Sighting, 0, n)
	for _, k := range b.order[:n] {
		out = append(out, b.pending[k])
		delete(b.pending, k)
	}
	b.order = append(b.order[:0], b.order[n:]...)
	b.inFlight += len(out)
	return out
}

// done marks n taken sightings as written.
func (b *sightingBuffer) done(n int) {
	b.mu.Lock()
	b.inFlight -= n
	if b.inFlight == 0 && len(b.order) == 0 {
		b.idle.Broadcast()
	}
	b.mu.Unlock()
}

func (b *sightingBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.order)
}

// wait blocks until nothing is pending or in flight, or ctx is done.
func (b *sightingBuffer) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.idle.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.inFlight > 0 || len(b.order) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.idle.Wait()
	}
	return nil
}
