package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// recover brings memory, files and index into agreement at Open.
func (s *Store) recover() error {
	clean, err := takeMarker(s.dir)
	if err != nil {
		return err
	}
	if err := s.removeTemps(); err != nil {
		return err
	}
	recs, pins, persisted, err := s.loadIndex()
	if err != nil {
		return err
	}
	files, err := s.scanFiles()
	if err != nil {
		return err
	}
	s.pins = pins
	var doomed []string
	for sha, rec := range recs {
		size, ok := files[sha]
		switch {
		case !ok:
			s.log.Warn("blob index record has no file; removing the record", "sha256", sha)
			if err := s.deleteRecord(sha); err != nil {
				return err
			}
			s.emit(Event{Kind: EventRemoved, SHA256: sha, Length: rec.Length, Reason: "index record without a file"})
		case size != rec.Length:
			s.log.Error("blob file size differs from its recorded length; removing it", "sha256", sha, "size", size, "length", rec.Length)
			doomed = append(doomed, sha)
			s.blobs[sha] = &entry{length: rec.Length, indexed: true}
		default:
			s.blobs[sha] = &entry{length: rec.Length, sha512: rec.SHA512, created: rec.Created, lastAccess: rec.LastAccess, verified: clean, indexed: true}
		}
	}
	now := s.now()
	for sha, size := range files {
		if _, ok := recs[sha]; !ok {
			// A rename that happened before its record was written: hash it
			// before adopting it.
			s.blobs[sha] = &entry{length: size, created: now, lastAccess: now}
		}
	}
	var t totals
	for sha, e := range s.blobs {
		s.stored += e.length
		if e.indexed {
			t.Bytes += e.length
			t.Blobs++
		}
		if !e.verified {
			s.unverified++
			s.queue = append(s.queue, sha)
		}
	}
	if persisted != t {
		if err := s.updateIndex(func(_ *badger.Txn, pt *totals) error { *pt = t; return nil }); err != nil {
			return err
		}
	}
	s.m.unverified.Set(float64(s.unverified))
	if s.unverified == 0 {
		close(s.ready)
	}
	if !clean && len(s.blobs) > 0 {
		s.log.Warn("blob store was not closed cleanly; re-verifying blobs before serving them", "blobs", s.unverified)
	}
	s.mu.Lock()
	var victims []victim
	for _, sha := range doomed {
		victims = append(victims, s.dropLocked(sha, EventRemoved, "file size differs from the recorded length"))
	}
	more, err := s.makeRoomLocked(0)
	if err != nil {
		s.log.Warn("blob store is over its bound and cannot evict enough", "err", err)
	}
	victims = append(victims, more...)
	s.m.setStored(s.stored, len(s.blobs))
	s.mu.Unlock()
	s.removeVictims(victims)
	return nil
}

// removeTemps deletes every leftover of an interrupted fill.
func (s *Store) removeTemps() error {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("listing temp files: %w", err)
	}
	for _, e := range ents {
		path := filepath.Join(s.tmpDir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("removing leftover temp file: %w", err)
		}
		s.log.Info("removed leftover of an interrupted fill", "path", path)
	}
	if len(ents) > 0 {
		return syncDir(s.tmpDir)
	}
	return nil
}

// loadIndex reads records, pins and totals, deleting keys that cannot be
// parsed (their blobs are then treated as files without records).
func (s *Store) loadIndex() (map[string]record, map[string]map[string]struct{}, totals, error) {
	recs := map[string]record{}
	pins := map[string]map[string]struct{}{}
	var t totals
	var bad [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.KeyCopy(nil)
			switch {
			case bytes.HasPrefix(key, []byte(recordPrefix)):
				sha, err := parseRecordKey(key)
				if err != nil {
					bad = append(bad, key)
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				rec, err := decodeRecord(v)
				if err != nil {
					s.log.Error("dropping unreadable blob index record", "sha256", sha, "err", err)
					bad = append(bad, key)
					continue
				}
				recs[sha] = rec
			case bytes.HasPrefix(key, []byte(pinPrefix)):
				sha, reason, err := parsePinKey(key)
				if err != nil {
					bad = append(bad, key)
					continue
				}
				if pins[sha] == nil {
					pins[sha] = map[string]struct{}{}
				}
				pins[sha][reason] = struct{}{}
			case string(key) == scrubKey:
				// The scrub's progress, read by loadScrubCursor.
			case string(key) == totalsKey:
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if t, err = decodeTotals(v); err != nil {
					t = totals{Bytes: -1}
				}
			default:
				bad = append(bad, key)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, t, fmt.Errorf("reading blob index: %w", err)
	}
	if len(bad) > 0 {
		s.log.Warn("deleting malformed keys from the blob index", "count", len(bad))
		if err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range bad {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, nil, t, fmt.Errorf("deleting malformed blob index keys: %w", err)
		}
	}
	return recs, pins, t, nil
}

// scanFiles lists committed blob files with their sizes, removing anything
// in the blob folder that is not a well-named blob.
func (s *Store) scanFiles() (map[string]int64, error) {
	files := map[string]int64{}
	fans, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, fmt.Errorf("listing blob folder: %w", err)
	}
	for _, fan := range fans {
		fanPath := filepath.Join(s.blobDir, fan.Name())
		if !fan.IsDir() || len(fan.Name()) != 2 || !isLowerHex(fan.Name()) {
			s.removeStray(fanPath)
			continue
		}
		ents, err := os.ReadDir(fanPath)
		if err != nil {
			return nil, fmt.Errorf("listing blob folder: %w", err)
		}
		for _, e := range ents {
			path := filepath.Join(fanPath, e.Name())
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() || checkHex(e.Name()) != nil || e.Name()[:2] != fan.Name() {
				s.removeStray(path)
				continue
			}
			files[e.Name()] = info.Size()
		}
	}
	return files, nil
}

func (s *Store) removeStray(path string) {
	s.log.Warn("removing unexpected file from the blob folder", "path", path)
	if err := os.RemoveAll(path); err != nil {
		s.log.Error("removing unexpected file from the blob folder", "path", path, "err", err)
	}
}

// Ready is closed once every stored blob has been verified, at once after
// a clean shutdown, or when Run has re-hashed them all after an unclean one.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// markVerifiedLocked counts one blob fewer awaiting verification.
func (s *Store) markVerifiedLocked() {
	s.unverified--
	s.m.unverified.Set(float64(s.unverified))
	if s.unverified == 0 {
		close(s.ready)
	}
}

// Run re-verifies blobs after an unclean shutdown, blobs that readers ask
// for first. Then it scrubs committed blobs in the background (see
// Options.ScrubInterval) and writes changed access times to the index
// periodically. It returns nil when ctx is done or the store is closed,
// after the scrub has stopped, and an error if called while another Run
// is active.
func (s *Store) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("running blob store: %w", ErrClosed)
	}
	if s.running {
		s.mu.Unlock()
		return fmt.Errorf("running blob store: Run is already active")
	}
	s.running = true
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
		s.wg.Done()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for ctx.Err() == nil {
		sha, ok := s.nextUnverified()
		if !ok {
			break
		}
		s.verify(ctx, sha)
	}
	scrubbed := make(chan struct{})
	go func() {
		defer close(scrubbed)
		s.scrub(ctx)
	}()
	defer func() {
		cancel()
		<-scrubbed
	}()
	tick := time.NewTicker(s.opts.AccessFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.flushAccess(); err != nil {
				s.log.Warn("writing blob access times", "err", err)
			}
		}
	}
}

// nextUnverified picks a blob a reader asked for, else the next in queue.
func (s *Store) nextUnverified() (string, bool) {
	for {
		var sha string
		select {
		case sha = <-s.prio:
		default:
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.mu.Unlock()
				return "", false
			}
			sha, s.queue = s.queue[0], s.queue[1:]
			s.mu.Unlock()
		}
		s.mu.Lock()
		e := s.blobs[sha]
		pending := e != nil && !e.verified
		s.mu.Unlock()
		if pending {
			return sha, true
		}
	}
}

// verify re-hashes one blob and either marks it verified (indexing it if
// it had no record) or removes it.
func (s *Store) verify(ctx context.Context, sha string) {
	s.mu.Lock()
	e := s.blobs[sha]
	if e == nil || e.verified {
		s.mu.Unlock()
		return
	}
	want := record{Length: e.length, SHA512: e.sha512, Created: e.created, LastAccess: e.lastAccess}
	indexed := e.indexed
	s.mu.Unlock()

	err := checkFile(ctx, s.blobPath(sha), sha, want, nil)
	if ctx.Err() != nil {
		return
	}
	if err == nil && !indexed {
		err = s.putRecord(sha, want)
	}
	s.mu.Lock()
	if s.blobs[sha] != e {
		s.mu.Unlock()
		return
	}
	if err != nil {
		v := s.dropLocked(sha, EventVerifyFailed, "failed re-verification after an unclean shutdown: "+err.Error())
		s.mu.Unlock()
		s.log.Error("blob failed re-verification; removed", "sha256", sha, "err", err)
		s.removeVictims([]victim{v})
		return
	}
	e.verified, e.indexed = true, true
	s.markVerifiedLocked()
	s.mu.Unlock()
	if !indexed {
		s.log.Info("adopted blob file that had no index record", "sha256", sha, "bytes", want.Length)
		s.emit(Event{Kind: EventAdopted, SHA256: sha, Length: want.Length})
	}
}

// checkFile hashes a blob file and compares it with its name and record.
// A non-nil lim paces the reads.
func checkFile(ctx context.Context, path, sha string, want record, lim *readLimiter) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening blob: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading blob: %w", err)
	}
	if info.Size() != want.Length {
		return fmt.Errorf("%w: file of %d bytes, recorded %d", ErrLength, info.Size(), want.Length)
	}
	h256 := sha256.New()
	var h512 hash.Hash
	w := io.Writer(h256)
	if want.SHA512 != nil {
		h512 = sha512.New()
		w = io.MultiWriter(h256, h512)
	}
	var r io.Reader = ctxReader{ctx, f}
	if lim != nil {
		r = limitedReader{ctx: ctx, r: f, lim: lim}
	}
	// Reading no more than the recorded length ends a paced read at the
	// blob's last byte, without waiting for budget to reach the end of file.
	n, err := io.CopyBuffer(w, io.LimitReader(r, want.Length), make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("reading blob: %w", err)
	}
	if n != want.Length {
		return fmt.Errorf("%w: read %d bytes, recorded %d", ErrLength, n, want.Length)
	}
	if got := hexOf(h256.Sum(nil)); got != sha {
		return fmt.Errorf("%w: SHA-256 %s", ErrHashMismatch, got)
	}
	if h512 != nil && !bytes.Equal(h512.Sum(nil), want.SHA512) {
		return fmt.Errorf("%w: SHA-512 %x, recorded %x", ErrHashMismatch, h512.Sum(nil), want.SHA512)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// flushAccess writes changed access times into existing records.
func (s *Store) flushAccess() error {
	s.mu.Lock()
	updates := make(map[string]record, len(s.dirty))
	for sha := range s.dirty {
		if e := s.blobs[sha]; e != nil && e.indexed {
			updates[sha] = record{Length: e.length, SHA512: e.sha512, Created: e.created, LastAccess: e.lastAccess}
		}
	}
	clear(s.dirty)
	s.mu.Unlock()
	conflicts := 0
	for len(updates) > 0 {
		var done []string
		err := s.db.Update(func(txn *badger.Txn) error {
			done = done[:0]
			for sha, rec := range updates {
				if len(done) == 256 {
					break
				}
				done = append(done, sha)
				if _, err := txn.Get(recordKey(sha)); err == nil {
					if err := txn.Set(recordKey(sha), encodeRecord(rec)); err != nil {
						return err
					}
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) && conflicts < 100 {
			conflicts++
			continue
		}
		if err != nil {
			return fmt.Errorf("writing blob access times: %w", err)
		}
		for _, sha := range done {
			delete(updates, sha)
		}
	}
	return nil
}
