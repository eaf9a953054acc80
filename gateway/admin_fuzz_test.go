package gateway_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
)

func FuzzParseToken(f *testing.F) {
	f.Add("wgt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("wgt_0123456789ab_")
	f.Add("Bearer wgt_")
	f.Add("wgt_ZZZZZZZZZZZZ_AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := gateway.ParseToken(s)
		if err != nil {
			if id != "" || secret != "" {
				t.Fatalf("ParseToken(%q) failed but returned id %q", s, id)
			}
			return
		}
		if len(id) != 12 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("ParseToken(%q) accepted id %q", s, id)
		}
		if got := "wgt_" + id + "_" + secret; got != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q) = %q, %q: does not rebuild the token", s, id, secret)
		}
	})
}

func FuzzParseBackupManifest(f *testing.F) {
	good, _ := json.Marshal(gateway.BackupManifest{Format: 1, DBBytes: 10, Blobs: 1, BlobBytes: 5})
	f.Add(good)
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"db_bytes":-1}`))
	f.Add([]byte(`{"format":1,"extra":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := gateway.ParseBackupManifest(data)
		if err == nil && (m.Format != 1 || m.TotalBytes() < 0) {
			t.Fatalf("accepted manifest %+v", m)
		}
	})
}

// FuzzRestoreBackup feeds damaged archives to the restore: it must fail
// with an error, or succeed, and never write outside the data folder.
func FuzzRestoreBackup(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	man, _ := json.Marshal(gateway.BackupManifest{Format: 1, FileBytes: 3})
	_ = tw.WriteHeader(&tar.Header{Name: "wardgate-backup.json", Mode: 0o600, Size: int64(len(man)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(man)
	_ = tw.WriteHeader(&tar.Header{Name: "files/../../escape", Mode: 0o600, Size: 3, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("abc"))
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "data")
		_, _ = gateway.RestoreBackup(context.Background(), bytes.NewReader(data), dir, slog.New(slog.DiscardHandler), nil)
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.Name() != "data" {
				t.Fatalf("restore wrote %s outside the data folder", e.Name())
			}
		}
	})
}
