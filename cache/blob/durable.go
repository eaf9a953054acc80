package blob

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

const markerName = "clean-shutdown"

// commit makes a verified fill durable and visible: fsync the temp file,
// rename it into its fan-out folder, fsync that folder, write the index
// record, and only then publish it in memory.
func (s *Store) commit(f *Fill, file *os.File) error {
	if file == nil {
		return fmt.Errorf("temp file already closed")
	}
	if err := file.Sync(); err != nil {
		return fmt.Errorf("syncing temp file: %w", err)
	}
	s.at("synced")
	fan := filepath.Join(s.blobDir, f.sha[:2])
	if err := mkdirSynced(fan); err != nil {
		return err
	}
	final := filepath.Join(fan, f.sha)
	s.waitRemoved(f.sha)
	if err := os.Rename(f.tmpPath, final); err != nil {
		return fmt.Errorf("renaming temp file into place: %w", err)
	}
	s.at("renamed")
	undo := func(cause error) error {
		if err := os.Remove(final); err != nil {
			s.log.Error("removing blob that failed to commit", "sha256", f.sha, "err", err)
		}
		return cause
	}
	if err := syncDir(fan); err != nil {
		return undo(err)
	}
	s.at("dir-synced")
	now := s.now()
	rec := record{Length: f.d.Length, SHA512: f.d.SHA512, Created: now, LastAccess: now}
	if err := s.putRecord(f.sha, rec); err != nil {
		return undo(err)
	}
	s.at("indexed")
	s.mu.Lock()
	if s.fills[f.sha] == f {
		delete(s.fills, f.sha)
		s.reserved -= f.d.Length
		s.m.fills.Dec()
	}
	s.blobs[f.sha] = &entry{length: rec.Length, sha512: rec.SHA512, created: now, lastAccess: now, verified: true, indexed: true}
	s.stored += rec.Length
	s.m.setStored(s.stored, len(s.blobs))
	s.mu.Unlock()
	s.emit(Event{Kind: EventCommitted, SHA256: f.sha, Length: rec.Length})
	return nil
}

// putRecord writes one record and the updated totals in one transaction.
func (s *Store) putRecord(sha string, rec record) error {
	return s.updateIndex(func(txn *badger.Txn, t *totals) error {
		old, err := txn.Get(recordKey(sha))
		switch {
		case err == nil:
			if prev, err := old.ValueCopy(nil); err == nil {
				if r, err := decodeRecord(prev); err == nil {
					t.Bytes -= r.Length
					t.Blobs--
				}
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		t.Bytes += rec.Length
		t.Blobs++
		return txn.Set(recordKey(sha), encodeRecord(rec))
	})
}

// deleteRecord removes one record and updates the totals.
func (s *Store) deleteRecord(sha string) error {
	return s.updateIndex(func(txn *badger.Txn, t *totals) error {
		old, err := txn.Get(recordKey(sha))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if prev, err := old.ValueCopy(nil); err == nil {
			if r, err := decodeRecord(prev); err == nil {
				t.Bytes -= r.Length
				t.Blobs--
			}
		}
		return txn.Delete(recordKey(sha))
	})
}

// updateIndex runs fn in a transaction that also rewrites the totals,
// retrying on conflicts with concurrent index writers.
func (s *Store) updateIndex(fn func(txn *badger.Txn, t *totals) error) error {
	for attempt := 0; ; attempt++ {
		err := s.db.Update(func(txn *badger.Txn) error {
			var t totals
			item, err := txn.Get([]byte(totalsKey))
			switch {
			case err == nil:
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if t, err = decodeTotals(v); err != nil {
					t = totals{}
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
			if err := fn(txn, &t); err != nil {
				return err
			}
			t.Bytes, t.Blobs = max(t.Bytes, 0), max(t.Blobs, 0)
			return txn.Set([]byte(totalsKey), encodeTotals(t))
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 100 {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing blob index: %w", err)
		}
		return nil
	}
}

// syncDir fsyncs a folder so that renames and removals in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening folder %s to sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}

// mkdirSynced creates dir if needed and, when it did, fsyncs its parent.
func mkdirSynced(dir string) error {
	err := os.Mkdir(dir, 0o750)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating folder %s: %w", dir, err)
	}
	return syncDir(filepath.Dir(dir))
}

// writeMarker records a clean shutdown.
func writeMarker(dir string) error {
	path := filepath.Join(dir, markerName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("writing clean-shutdown marker: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing clean-shutdown marker: %w", err)
	}
	return syncDir(dir)
}

// takeMarker reports whether the clean-shutdown marker was present and
// removes it durably, so that a crash from now on is noticed.
func takeMarker(dir string) (bool, error) {
	path := filepath.Join(dir, markerName)
	err := os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing clean-shutdown marker: %w", err)
	}
	return true, syncDir(dir)
}
