package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The network tests model a gateway attached to three clinical VLANs.
// TestMain re-runs the test binary inside a fresh "gateway" network
// namespace, so the browser, the announcer and their interface lookups all
// run there and nothing touches the host's interfaces or routes. Each test
// then creates one device namespace per VLAN, joined to the gateway
// namespace by a veth pair, and removes them in t.Cleanup.

// netnsEnv names the gateway namespace in the re-run test binary.
const netnsEnv = "WARDGATE_DISCOVERY_TEST_NETNS"

// gatewayNS is the gateway namespace this binary runs in, or "" when the
// network tests cannot run; netnsSkip then says why.
var gatewayNS, netnsSkip string

func TestMain(m *testing.M) {
	gatewayNS = os.Getenv(netnsEnv)
	if gatewayNS == "" {
		netnsSkip = netnsUnavailable()
		if netnsSkip == "" {
			os.Exit(rerunInNamespace())
		}
	}
	os.Exit(m.Run())
}

// netnsUnavailable returns why the network tests cannot run, or "".
func netnsUnavailable() string {
	for _, a := range os.Args[1:] {
		// A fuzzing run talks to its workers over pipes that a re-run
		// would break, and the fuzz targets need no network.
		if strings.HasPrefix(a, "-test.fuzz") {
			return "fuzzing run"
		}
	}
	if os.Geteuid() != 0 {
		return "network namespace tests need root (CI runs them as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "network namespace tests need the ip command (Debian package iproute2)"
	}
	return ""
}

// rerunInNamespace runs this test binary with the same arguments inside a
// new network namespace and returns its exit code.
func rerunInNamespace() int {
	ns := fmt.Sprintf("wgt-gw-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "creating network namespace %s: %v: %s\n", ns, err, out)
		return 1
	}
	defer deleteNamespace(ns)
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "setting lo up in %s: %v: %s\n", ns, err, out)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the test binary: %v\n", err)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, exe}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "starting the test binary in %s: %v\n", ns, err)
		return 1
	}
	go func() {
		for s := range signals {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(os.Stderr, "running the test binary in %s: %v\n", ns, err)
		return 1
	}
	return 0
}

// deleteNamespace kills every process left in ns, by PID, and deletes it.
func deleteNamespace(ns string) error {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("deleting network namespace %s: %v: %s", ns, err, out)
	}
	return nil
}

// requireNetns skips t when the network tests cannot run here.
func requireNetns(t testing.TB) {
	t.Helper()
	if gatewayNS == "" {
		t.Skipf("skipping network namespace test: %s", netnsSkip)
	}
}

// runCmd runs a command and fails t with its output when it fails.
func runCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// vlan is one modelled clinical VLAN: an interface in the gateway
// namespace and its veth peer in a device namespace.
type vlan struct {
	tag     string
	gwIf    string
	devNS   string
	devIf   string
	prefix  netip.Prefix
	gwAddr  netip.Addr
	devAddr netip.Addr
}

// hostAddr returns the address with host number n on the VLAN's /24.
func (v *vlan) hostAddr(n int) netip.Addr {
	b := v.prefix.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

var topologySeq atomic.Int32

// newVLANs creates n VLANs with unique interface and namespace names and
// removes them when the test ends, even when it fails.
func newVLANs(t testing.TB, n int) []*vlan {
	t.Helper()
	requireNetns(t)
	seq := int(topologySeq.Add(1))
	id := fmt.Sprintf("%04x", (os.Getpid()*31+seq)&0xffff)
	var vlans []*vlan
	for i := range n {
		v := &vlan{
			tag:    string(rune('a' + i)),
			gwIf:   fmt.Sprintf("wg%s%c", id, 'a'+i),
			devNS:  fmt.Sprintf("wgt-%s-%c", id, 'a'+i),
			devIf:  fmt.Sprintf("wd%s%c", id, 'a'+i),
			prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + seq%100), byte(i + 1), 0}), 24),
		}
		v.gwAddr, v.devAddr = v.hostAddr(1), v.hostAddr(2)
		runCmd(t, "ip", "netns", "add", v.devNS)
		t.Cleanup(func() {
			exec.Command("ip", "link", "del", v.gwIf).Run()
			if err := deleteNamespace(v.devNS); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		runCmd(t, "ip", "link", "add", v.gwIf, "type", "veth", "peer", "name", v.devIf, "netns", v.devNS)
		runCmd(t, "ip", "addr", "add", v.gwAddr.String()+"/24", "dev", v.gwIf)
		runCmd(t, "ip", "link", "set", v.gwIf, "up")
		runCmd(t, "ip", "-n", v.devNS, "link", "set", "lo", "up")
		runCmd(t, "ip", "-n", v.devNS, "addr", "add", v.devAddr.String()+"/24", "dev", v.devIf)
		runCmd(t, "ip", "-n", v.devNS, "link", "set", v.devIf, "up")
		runCmd(t, "ip", "-n", v.devNS, "route", "add", "224.0.0.0/4", "dev", v.devIf)
		vlans = append(vlans, v)
	}
	// hashicorp/mdns joins the group on the default multicast interface,
	// which needs a multicast route in the gateway namespace.
	runCmd(t, "ip", "route", "replace", "224.0.0.0/4", "dev", vlans[0].gwIf)
	return vlans
}

// inNetns runs fn on an OS thread that has entered the named network
// namespace. Sockets that fn opens stay in that namespace and may be used
// from any goroutine afterwards.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening network namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", ns, err)
			return
		}
		err = fn()
		// If the thread cannot return, it stays locked and exits with
		// this goroutine instead of running other goroutines in ns.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// newDeviceAnnouncer creates a DeviceAnnouncer on v's device side and
// closes it, with goodbyes, when the test ends.
func newDeviceAnnouncer(t testing.TB, v *vlan) *DeviceAnnouncer {
	t.Helper()
	var a *DeviceAnnouncer
	err := inNetns(v.devNS, func() error {
		var err error
		a, err = NewDeviceAnnouncer(DeviceAnnouncerOptions{Interface: v.devIf})
		return err
	})
	if err != nil {
		t.Fatalf("creating device announcer in %s: %v", v.devNS, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// lockedBuffer is a bytes.Buffer safe for a process writer and a reader.
type lockedBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{mu: make(chan struct{}, 1)} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}
