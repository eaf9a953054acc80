// Package store opens the gateway's one badger database with memory
// bounded for an appliance: badger's defaults take hundreds of
// megabytes, which a gateway that also caches blobs cannot spare.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Open opens (creating if needed) the database in dir. Writes are synced
// before they return, so an acknowledged write survives power loss.
func Open(dir string, log *slog.Logger) (*badger.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating database folder: %w", err)
	}
	if err := checkFree(dir); err != nil {
		return nil, err
	}
	if err := RemoveEmptyMemtables(dir, log); err != nil {
		return nil, err
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log.With("component", "badger")}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening database in %s (is another process using it?): %w", dir, err)
	}
	return db, nil
}

// RemoveEmptyMemtables deletes the empty memtable files ("NNNNN.mem") in
// dir. badger creates such a file and then sizes it, so a process killed
// between the two leaves it empty. badger v4 then fails the next Open with
// "Create a new file" (z.NewFile, dgraph-io/badger#2207). An empty
// memtable holds no writes, so removing it loses nothing.
func RemoveEmptyMemtables(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new database has nothing to remove
	}
	if err != nil {
		return fmt.Errorf("listing database folder %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".mem" {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("removing empty memtable %s left by an interrupted write: %w", p, err)
		}
		log.Warn("removed an empty memtable file left by an interrupted write", "file", p)
	}
	return nil
}

// MinFreeBytes is the free space the database's file system must have
// at start. badger memory-maps sparse files, so opening it on a full file
// system can kill the process with SIGBUS instead of returning an error.
const MinFreeBytes = 64 << 20

func checkFree(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking free space in %s: %w", dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < MinFreeBytes {
		return fmt.Errorf("only %d MiB free in %s, the database needs at least %d MiB: free space on that file system, then start again", free>>20, dir, MinFreeBytes>>20)
	}
	return nil
}

// badgerLogger sends badger's logs to slog; its info lines go to debug
// because it logs routine compactions at info.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log.Debug(fmt.Sprintf(f, a...)) }
