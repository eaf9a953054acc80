package blob

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that fills blobs
// until the parent kills it with SIGKILL. These variables carry the
// child's data directory and seed.
const (
	crashDirEnv  = "WARDGATE_BLOB_CRASH_DIR"
	crashSeedEnv = "WARDGATE_BLOB_CRASH_SEED"
	crashTrials  = 40
	// Trials stop after crashBudget once crashMinTrials have run.
	crashBudget    = 25 * time.Second
	crashMinTrials = 10
	crashMaxSize   = 256 << 10
	crashBound     = 2 << 20
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		if err := crashChild(dir, seed); err != nil {
			fmt.Println("ERROR", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild fills blobs of every outcome (good, corrupted, short,
// aborted, restarted) forever, printing one line per step so that the
// parent can kill it at a random step. Now and then it damages a stored
// blob file in place, which the restarted store must find. It also reads
// back blobs and prints BAD if one it is served fails its hash.
func crashChild(dir string, seed uint64) error {
	db, err := openBadger(filepath.Join(dir, "badger"))
	if err != nil {
		return err
	}
	s, err := Open(filepath.Join(dir, "blobs"), db, Options{MaxBytes: crashBound})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	step := func(p string) {
		fmt.Fprintln(out, p)
		out.Flush()
	}
	s.hook = step
	go s.Run(context.Background())
	step("open")
	rng := rand.New(rand.NewPCG(seed, 7))
	var committed []string
	for i := 0; ; i++ {
		if len(committed) > 0 && rng.IntN(8) == 0 {
			// Damage a stored blob in place, as lost writes after a power
			// cut would. It must not be served after the restart.
			j := rng.IntN(len(committed))
			if damage(s.blobPath(committed[j]), rng) {
				step("damaged")
			}
			committed = slices.Delete(committed, j, j+1)
		}
		b := content(rng.Uint64(), 1+rng.IntN(crashMaxSize))
		d := digestOf(b, rng.IntN(2) == 0)
		kind := rng.IntN(5)
		write := b
		switch kind {
		case 1: // corrupted in transit
			write = bytes.Clone(b)
			write[rng.IntN(len(write))] ^= 1
		case 2: // truncated upstream body
			write = b[:rng.IntN(len(b))]
		}
		f, producer, err := s.BeginOrJoin(d)
		if err != nil || !producer {
			continue
		}
		if kind == 4 { // a first attempt, then a restart from zero
			if _, err := f.Write(b[:len(b)/2]); err != nil {
				return err
			}
			if err := f.Restart(); err != nil {
				return err
			}
		}
		for off := 0; off < len(write); {
			n := min(1+rng.IntN(32<<10), len(write)-off)
			if _, err := f.Write(write[off : off+n]); err != nil {
				return err
			}
			off += n
			if kind == 3 && off > len(write)/2 {
				f.Abort(errors.New("upstream went away"))
				break
			}
		}
		if err := f.Commit(); err == nil {
			committed = append(committed, d.Hex())
		} else if kind == 0 || kind == 4 {
			return fmt.Errorf("commit of a correct blob: %w", err)
		}
		if len(committed) > 0 {
			sha := committed[rng.IntN(len(committed))]
			if err := checkServed(s, sha); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotReady) {
				step("BAD " + err.Error())
			}
		}
	}
}

// damage flips one byte of a file; it reports false if the file is gone.
func damage(path string, rng *rand.Rand) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false
	}
	off := rng.Int64N(st.Size())
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return false
	}
	b[0] ^= 0x80
	_, err = f.WriteAt(b[:], off)
	return err == nil
}

func openBadger(dir string) (*badgerDB, error) { return openBadgerDB(dir) }

// checkServed opens a blob the way the gateway serves it and checks that
// its bytes hash to its name and its recorded length and SHA-512.
func checkServed(s *Store, sha string) error {
	f, size, err := s.Open(sha)
	if err != nil {
		return err
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(h256, h512), f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", sha, err)
	}
	if n != size {
		return fmt.Errorf("blob %s: served %d bytes, size %d", sha, n, size)
	}
	if got := hexOf(h256.Sum(nil)); got != sha {
		return fmt.Errorf("blob %s: served bytes hash to %s", sha, got)
	}
	s.mu.Lock()
	want512 := s.blobs[sha].sha512
	s.mu.Unlock()
	if want512 != nil && !bytes.Equal(h512.Sum(nil), want512) {
		return fmt.Errorf("blob %s: served bytes have SHA-512 %x, recorded %x", sha, h512.Sum(nil), want512)
	}
	return nil
}

// TestCrashDuringFills kills a filling child process with SIGKILL at
// random steps, then reopens its data directory and checks that every
// blob the store serves matches its hash and that no temp file is left.
func TestCrashDuringFills(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary many times; skipped with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (set %s to repeat)", seed, crashSeedEnv)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	served, trials, start := 0, 0, time.Now()
	for trial := range crashTrials {
		killAfter := rng.IntN(400)
		lines, err := runAndKill(t, exe, dir, rng.Uint64(), killAfter)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "BAD") || strings.HasPrefix(l, "ERROR") {
				t.Fatalf("trial %d: child reported %q", trial, l)
			}
		}
		served += checkAfterCrash(t, dir, trial, trial%2 == 0)
		trials++
		if time.Since(start) > crashBudget && trials >= crashMinTrials {
			// A loaded machine runs fewer trials rather than a slow suite.
			break
		}
	}
	if served == 0 {
		t.Fatalf("no blob survived any of %d trials; the test checked nothing", trials)
	}
	t.Logf("%d blobs checked over %d trials", served, trials)
}

// runAndKill starts the child and kills it after it printed killAfter
// lines (or when it ends by itself).
func runAndKill(t *testing.T, exe, dir string, seed uint64, killAfter int) ([]string, error) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting child: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for len(lines) < killAfter && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return lines, fmt.Errorf("killing child: %w", err)
	}
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
		err = nil
	}
	if err != nil {
		return lines, fmt.Errorf("child ended with %v; last lines %q", err, lines[max(0, len(lines)-3):])
	}
	return lines, nil
}

// checkAfterCrash reopens the store the child left and checks it. It
// returns how many blobs it read.
func checkAfterCrash(t *testing.T, dir string, trial int, clean bool) int {
	t.Helper()
	db, err := openBadger(filepath.Join(dir, "badger"))
	if err != nil {
		t.Fatalf("trial %d: %v", trial, err)
	}
	defer db.Close()
	s, err := Open(filepath.Join(dir, "blobs"), db, Options{MaxBytes: crashBound})
	if err != nil {
		t.Fatalf("trial %d: reopening after SIGKILL: %v", trial, err)
	}
	defer s.abandon()
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("trial %d: temp files after reopen: %v", trial, names)
	}
	s.mu.Lock()
	var shas []string
	for sha := range s.blobs {
		shas = append(shas, sha)
	}
	s.mu.Unlock()
	// Nothing unverified is served while verification has not run.
	for _, sha := range shas {
		err := checkServed(s, sha)
		if err != nil && !errors.Is(err, ErrNotReady) {
			t.Fatalf("trial %d: before verification: %v", trial, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	select {
	case <-s.Ready():
	case <-time.After(guard):
		t.Fatalf("trial %d: verification did not finish", trial)
	}
	cancel()
	<-done
	n := 0
	for _, sha := range shas {
		err := checkServed(s, sha)
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrNotFound):
			// Removed by verification.
		default:
			t.Fatalf("trial %d: %v", trial, err)
		}
	}
	if clean {
		if err := s.Close(); err != nil {
			t.Fatalf("trial %d: Close: %v", trial, err)
		}
	}
	return n
}
