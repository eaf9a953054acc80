package repo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newRepo(t *testing.T) (*Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, DefaultKeysDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishAndReopen(t *testing.T) {
	r, dir := newRepo(t)
	if err := r.AddTarget("p/1.0.0/img", writeFile(t, "img", "firmware"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, DefaultKeysDir(dir))
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	if _, ok := again.Targets()["p/1.0.0/img"]; !ok {
		t.Errorf("reopened repository lacks the published target")
	}
	if got := again.TargetsVersion(); got != 2 {
		t.Errorf("targets version %d, want 2", got)
	}
}

func TestOpenRejectsEditedMetadata(t *testing.T) {
	r, dir := newRepo(t)
	if err := r.AddTarget("p/1.0.0/img", writeFile(t, "img", "firmware"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "metadata", "2.targets.json")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), `"length": 8`, `"length": 9`, 1)
	if edited == string(data) {
		t.Fatal("test setup: length field not found")
	}
	if err := os.WriteFile(name, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, DefaultKeysDir(dir))
	if err == nil || !strings.Contains(err.Error(), "signature check") {
		t.Errorf("Open of edited metadata: got %v, want a signature check error", err)
	}
}

func TestOpenRejectsForeignKeys(t *testing.T) {
	_, dir := newRepo(t)
	_, other := newRepo(t)
	_, err := Open(dir, DefaultKeysDir(other))
	if err == nil || !strings.Contains(err.Error(), "is not a root key") {
		t.Errorf("Open with another repository's keys: got %v, want a key mismatch error", err)
	}
}

func TestAddTargetRejects(t *testing.T) {
	r, _ := newRepo(t)
	img := writeFile(t, "img", "firmware")
	if err := r.AddTarget("p/1.0.0/img", img, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target, file, want string
	}{
		{"changed content", "p/1.0.0/img", writeFile(t, "other", "other bytes"), "already published"},
		{"traversal", "p/../img", img, "invalid target path"},
		{"newline", "p/1.0.0/a\nb", img, "invalid target path"},
		{"escaped", "a/%2e%2e/b", img, "invalid target path"},
		{"long part", "p/" + strings.Repeat("x", 130), img, "at most 120 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.AddTarget(tt.target, tt.file, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AddTarget(%q): got %v, want an error containing %q", tt.target, err, tt.want)
			}
		})
	}
	if err := r.AddTarget("p/1.0.0/img", img, nil); err != nil {
		t.Errorf("re-adding identical content: %v", err)
	}
}

func TestRefreshTimestampUnderLock(t *testing.T) {
	r, dir := newRepo(t)
	before := r.TimestampExpires()
	err := WithLock(dir, func() error {
		again, err := Open(dir, DefaultKeysDir(dir))
		if err != nil {
			return err
		}
		return again.RefreshTimestamp()
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := Open(dir, DefaultKeysDir(dir))
	if err != nil {
		t.Fatalf("reopening after the re-sign: %v", err)
	}
	if !after.TimestampExpires().After(before) && !after.TimestampExpires().Equal(before) {
		t.Errorf("timestamp expiry moved back from %s to %s", before, after.TimestampExpires())
	}
	if got, want := after.timestamp.Signed.Version, r.timestamp.Signed.Version+1; got != want {
		t.Errorf("timestamp version %d, want %d", got, want)
	}
}

func TestAddTargetKeepsReleasedMetadata(t *testing.T) {
	r, _ := newRepo(t)
	img := writeFile(t, "img", "firmware")
	first := json.RawMessage(`{"wardgate":{"kind":"release","version":"1.0.0","models":["IP-200"],"hardware_revisions":["B"]}}`)
	if err := r.AddTarget("p/1.0.0/img", img, &first); err != nil {
		t.Fatal(err)
	}
	widened := json.RawMessage(`{"wardgate":{"kind":"release","version":"1.0.0","models":["IP-200","MON-5"]}}`)
	if err := r.AddTarget("p/1.0.0/img", img, &widened); err == nil || !strings.Contains(err.Error(), "other metadata") {
		t.Errorf("re-adding with other metadata: got %v, want an error", err)
	}
	same := json.RawMessage(`{"wardgate": {"models": ["IP-200"], "kind": "release", "version": "1.0.0", "hardware_revisions": ["B"]}}`)
	if err := r.AddTarget("p/1.0.0/img", img, &same); err != nil {
		t.Errorf("re-adding identical metadata: %v", err)
	}
}

func TestOpenRejectsEditedRootCopy(t *testing.T) {
	_, dir := newRepo(t)
	name := filepath.Join(dir, "metadata", "1.root.json")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, append(data, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, DefaultKeysDir(dir)); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("Open with an edited 1.root.json: got %v, want an error", err)
	}
}
