package telemetry_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: gave up", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file in dir until the file system has less than leave
// bytes free (or is full).
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xA5}, 256<<10)
	for freeBytes(t, dir) >= leave {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	return path
}

func TestCrashDataDirOnFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a tmpfs for the data directory needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=48m,mode=0700"); err != nil {
		t.Skipf("skipping: mounting a tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dataDir := filepath.Join(mnt, "db")
	const reserve = 8 << 20

	h := newHub(t)
	g := newGatewayProc(t, dataDir, h.srv.URL+"/v1/telemetry", "TG_SMALLDB=1", "TG_MINFREE="+itoa(reserve), "TG_MAXBYTES="+itoa(1<<30))
	g.start()
	f := startFleet(6, func() string { return *g.addr.Load() })
	waitFor(t, 20*time.Second, "first acknowledgements", func() bool { return f.ackedEvents.Load() > 1000 })

	// Something else fills the file system: first below the gateway's
	// reserve, then to the last byte.
	filler := fill(t, mnt, reserve/4)
	before503 := f.count(503)
	waitFor(t, 20*time.Second, "503 responses on a nearly full disk", func() bool { return f.count(503) > before503+20 })
	fill(t, mnt, 1)
	if free := freeBytes(t, mnt); free > 64<<10 {
		t.Fatalf("filling the tmpfs: %d bytes still free", free)
	}
	if msg := f.lastErrBody.Load(); msg == nil || !strings.Contains(*msg, "storage is full") {
		t.Errorf("503 body: got %v, want it to say the storage is full", msg)
	}
	// Stay full across a period boundary, so the relay meets it too.
	time.Sleep(1500 * time.Millisecond)
	if !g.alive() {
		t.Fatal("gateway died on a full disk")
	}
	if !strings.Contains(g.stderr.String(), "telemetry queue rejecting device batches") {
		t.Errorf("gateway log on a full disk: got %q, want the rejection logged", g.stderr.String())
	}
	// A crash while full: the restart fails with a clear error instead of
	// letting badger fault on its sparse memory-mapped files.
	g.kill()
	if err := g.tryStart(); err == nil || !strings.Contains(err.Error(), "free") {
		t.Errorf("restart on a full disk: got %v, want a clear free-space error", err)
	}
	acked := f.ackedEvents.Load()

	// Space returns: ingest resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	g.start()
	waitFor(t, 20*time.Second, "acknowledgements after space returned", func() bool { return f.ackedEvents.Load() > acked+1000 })
	f.finish(t)
	g.stop()
	if n := f.noRetryAfter.Load(); n != 0 {
		t.Errorf("503 responses without Retry-After: got %d, want 0", n)
	}
	checkExactlyOnce(t, h, f)
	t.Logf("503 responses while full: %d", f.count(503)-before503)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
