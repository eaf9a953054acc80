package store

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestOpenAfterEmptyMemtable checks that a database whose folder holds an
// empty memtable file, as a process killed while creating one leaves it,
// opens with every earlier write intact and without that file.
func TestOpenAfterEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "00042.mem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	db, err = Open(dir, log)
	if err != nil {
		t.Fatalf("opening the database with an empty memtable file: %v", err)
	}
	defer db.Close()
	var got []byte
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("k"))
		if err != nil {
			return err
		}
		got, err = item.ValueCopy(nil)
		return err
	})
	if err != nil || string(got) != "v" {
		t.Errorf("key k after reopening: %q, %v; want \"v\"", got, err)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("empty memtable file %s still exists (stat: %v)", empty, err)
	}
}
