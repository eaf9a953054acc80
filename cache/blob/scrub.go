package blob

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	defaultScrubRate     = 32 << 20
	defaultScrubInterval = 24 * time.Hour
	// scrubMinRate is the slowest a pass reads, unless ScrubRate is lower,
	// so that a small store is read in one stretch rather than a few bytes
	// per tick over the whole interval.
	scrubMinRate = 1 << 20
	// scrubTick is the period of the scrub's read budget. Each tick allows
	// a tenth of the pass's rate in bytes.
	scrubTick = 100 * time.Millisecond
	// scrubSaveInterval bounds how often the scrub writes its progress to
	// the index. After a crash, a pass repeats at most this interval's
	// worth of reading.
	scrubSaveInterval = time.Minute
	scrubVersion      = 1
)

// scrubCursor is the scrub's progress, kept under scrubKey so that a
// restart resumes the pass.
type scrubCursor struct {
	start    time.Time // when the pass began
	last     string    // SHA-256 hex of the last blob checked; "" before the first
	finished bool      // the pass reached the last blob
}

// scrub runs scrub passes until ctx is done. A pass starts ScrubInterval
// after the previous one started, or at once when that time has passed.
// A pass that a restart interrupted is resumed after its last blob.
func (s *Store) scrub(ctx context.Context) {
	if s.opts.ScrubRate < 0 {
		return
	}
	cur, err := s.loadScrubCursor()
	if err != nil {
		s.log.Warn("reading blob scrub progress failed, so a new pass starts", "err", err)
		cur = scrubCursor{}
	}
	for ctx.Err() == nil {
		if cur.finished {
			if !sleepUntil(ctx, s.nextScrubPass(cur.start)) {
				return
			}
		}
		now := time.Now()
		if cur.finished || cur.start.IsZero() {
			cur = scrubCursor{start: now}
		}
		cur = s.scrubPass(ctx, cur, now)
	}
}

// nextScrubPass returns when the pass after one that began at start is
// due. A start in the future, left by a clock set back, delays the next
// pass by at most one interval.
func (s *Store) nextScrubPass(start time.Time) time.Time {
	next := start.Add(s.opts.ScrubInterval)
	if latest := time.Now().Add(s.opts.ScrubInterval); next.After(latest) {
		return latest
	}
	return next
}

// scrubPass re-hashes the verified blobs after cur.last in SHA-256 order,
// paced to end ScrubInterval after cur.start as seen at now. It returns
// the cursor it saved: finished, or at the last blob checked when ctx
// ended the pass.
func (s *Store) scrubPass(ctx context.Context, cur scrubCursor, now time.Time) scrubCursor {
	if cur.start.After(now) {
		cur.start = now
	}

	shas, total := s.scrubList(cur.last)
	pace := scrubPace(total, cur.start.Add(s.opts.ScrubInterval).Sub(now), s.opts.ScrubRate)
	lim, stop := s.newReadLimiter(pace)
	defer stop()
	s.log.Debug("blob scrub pass running", "blobs", len(shas), "bytes", total, "bytes_per_second", pace, "after_sha256", cur.last)

	saved, failed := now, 0
	for _, sha := range shas {
		if s.scrubBlob(ctx, sha, lim) {
			failed++
		}
		if ctx.Err() != nil {
			s.saveScrubCursor(cur)
			return cur
		}
		cur.last = sha
		if time.Since(saved) >= scrubSaveInterval {
			s.saveScrubCursor(cur)
			saved = time.Now()
		}
	}

	cur = scrubCursor{start: cur.start, finished: true}
	s.saveScrubCursor(cur)
	s.m.scrubPasses.Inc()
	took := time.Since(cur.start)
	s.log.Info("blob scrub pass finished", "blobs", len(shas), "bytes", lim.spent, "failed", failed, "took", took)
	if took > s.opts.ScrubInterval {
		s.log.Warn("blob scrub pass took longer than ScrubInterval, so the next pass starts now",
			"took", took, "interval", s.opts.ScrubInterval, "max_bytes_per_second", s.opts.ScrubRate)
	}
	s.scrubAt("pass-done")
	return cur
}

// scrubList returns the verified committed blobs whose SHA-256 hex sorts
// after last, in that order, and their total length.
func (s *Store) scrubList(last string) ([]string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	shas := make([]string, 0, len(s.blobs))
	var total int64
	for sha, e := range s.blobs {
		if sha > last && e.verified {
			shas = append(shas, sha)
			total += e.length
		}
	}
	slices.Sort(shas)
	return shas, total
}

// scrubPace returns the read rate, in bytes per second, that reads
// remaining bytes in the time left. It is at least scrubMinRate and at
// most maxRate, and maxRate when no time is left.
func scrubPace(remaining int64, left time.Duration, maxRate int64) int64 {
	if left <= 0 {
		return maxRate
	}
	pace := int64(float64(remaining) / left.Seconds())
	return min(max(pace, scrubMinRate), maxRate)
}

// scrubBlob re-hashes one committed blob and removes it, as re-verification
// after an unclean shutdown does, when its length or a hash differs. It
// reports whether it removed the blob. It skips a blob that is no longer
// stored, awaits re-verification, is being removed or is being filled
// again, and ignores the result when the blob changed while it was read.
// Readers that opened the blob before keep reading it from their open
// files.
//
// NOTE: the scrub reads through the page cache like the devices' downloads
// do. Damage on disk under pages the kernel still caches is found only
// after those pages are evicted.
func (s *Store) scrubBlob(ctx context.Context, sha string, lim *readLimiter) bool {
	s.mu.Lock()
	e := s.blobs[sha]
	_, removing := s.removing[sha]
	if e == nil || !e.verified || removing || s.fills[sha] != nil {
		s.mu.Unlock()
		return false
	}
	want := record{Length: e.length, SHA512: e.sha512}
	s.mu.Unlock()

	err := checkFile(ctx, s.blobPath(sha), sha, want, lim)
	if err == nil || ctx.Err() != nil {
		return false
	}
	s.mu.Lock()
	if s.blobs[sha] != e {
		// Evicted, or removed and filled again, while it was read: the
		// failure may be about a file that is gone.
		s.mu.Unlock()
		return false
	}
	v := s.dropLocked(sha, EventVerifyFailed, "failed re-verification by the background scrub: "+err.Error())
	s.mu.Unlock()
	s.log.Error("blob failed the scrub and was removed, so the next request fetches it from upstream", "sha256", sha, "err", err)
	s.removeVictims([]victim{v})
	s.m.scrubFailures.Inc()
	return true
}

// readLimiter hands out perTick bytes of reading per tick. A tick is taken
// only once the previous budget is spent, so no budget is carried over.
// It is for one goroutine.
type readLimiter struct {
	ticks   <-chan time.Time
	perTick int64
	left    int64
	spent   int64 // bytes read through the limiter
	read    prometheus.Counter
	waiting func() // called before blocking for the next tick
}

// newReadLimiter returns a limiter for rate bytes per second and the
// function that stops its ticker.
func (s *Store) newReadLimiter(rate int64) (*readLimiter, func()) {
	lim := &readLimiter{
		perTick: max(rate/int64(time.Second/scrubTick), 1),
		read:    s.m.scrubbedBytes,
		waiting: func() { s.scrubAt("wait") },
	}
	if s.scrubTicks != nil {
		lim.ticks = s.scrubTicks
		return lim, func() {}
	}
	ticker := time.NewTicker(scrubTick)
	lim.ticks = ticker.C
	return lim, ticker.Stop
}

// take waits until budget is left, or ctx is done, and returns how many of
// want bytes may be read now.
func (l *readLimiter) take(ctx context.Context, want int) (int, error) {
	for l.left <= 0 {
		l.waiting()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-l.ticks:
			l.left = l.perTick
		}
	}
	return int(min(int64(want), l.left)), nil
}

func (l *readLimiter) spend(n int) {
	l.left -= int64(n)
	l.spent += int64(n)
	l.read.Add(float64(n))
}

// limitedReader reads from r within the budget of lim.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	lim *readLimiter
}

func (lr limitedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := lr.lim.take(lr.ctx, len(p))
	if err != nil {
		return 0, err
	}
	got, err := lr.r.Read(p[:n])
	lr.lim.spend(got)
	return got, err
}

// sleepUntil waits until t and reports false if ctx ended the wait.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (s *Store) loadScrubCursor() (scrubCursor, error) {
	var cur scrubCursor
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(scrubKey))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		cur, err = decodeScrubCursor(v)
		return err
	})
	if err != nil {
		return scrubCursor{}, fmt.Errorf("reading blob scrub progress: %w", err)
	}
	return cur, nil
}

func (s *Store) saveScrubCursor(cur scrubCursor) {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(scrubKey), encodeScrubCursor(cur))
	})
	if err != nil {
		s.log.Warn("saving blob scrub progress failed, so a restart repeats part of the pass", "err", err)
	}
}

// encodeScrubCursor lays out a cursor as:
//
//	version (1 byte) | flags (1 byte; bit 0: pass finished) |
//	pass start unix ns (varint) | last SHA-256 (32 bytes, when there is one)
func encodeScrubCursor(c scrubCursor) []byte {
	flags := byte(0)
	if c.finished {
		flags |= 1
	}
	b := []byte{scrubVersion, flags}
	b = binary.AppendVarint(b, c.start.UnixNano())
	if c.last != "" {
		raw, _ := hex.DecodeString(c.last)
		b = append(b, raw...)
	}
	return b
}

func decodeScrubCursor(b []byte) (scrubCursor, error) {
	var c scrubCursor
	if len(b) < 2 || b[0] != scrubVersion || b[1]&^1 != 0 {
		return c, fmt.Errorf("%w: scrub progress of %d bytes with an unknown version or flags", errRecord, len(b))
	}
	c.finished = b[1]&1 != 0
	start, n := binary.Varint(b[2:])
	if n <= 0 || n != varintLen(start) {
		return c, fmt.Errorf("%w: invalid scrub pass start", errRecord)
	}
	c.start = time.Unix(0, start)
	switch rest := b[2+n:]; len(rest) {
	case 0:
	case 32:
		c.last = hexOf(rest)
	default:
		return c, fmt.Errorf("%w: scrub progress ends in %d bytes, want 0 or 32", errRecord, len(rest))
	}
	return c, nil
}

func (s *Store) scrubAt(point string) {
	if s.scrubHook != nil {
		s.scrubHook(point)
	}
}
