package discovery

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// avahiDaemon is an avahi-daemon running in a VLAN's device namespace,
// with a private mount namespace whose /run is a tmpfs and whose
// /etc/avahi/services is the test's own folder.
type avahiDaemon struct {
	v      *vlan
	cmd    *exec.Cmd
	output *lockedBuffer
	dir    string
	exited chan struct{}
}

// avahiService is one static service file.
type avahiService struct {
	name, serviceType string
	port              int
	txt               []string
}

func (s avahiService) xml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" standalone='no'?>\n<!DOCTYPE service-group SYSTEM \"avahi-service.dtd\">\n")
	fmt.Fprintf(&b, "<service-group>\n  <name>%s</name>\n  <service>\n    <type>%s</type>\n    <port>%d</port>\n", xmlEscape(s.name), s.serviceType, s.port)
	for _, t := range s.txt {
		fmt.Fprintf(&b, "    <txt-record>%s</txt-record>\n", xmlEscape(t))
	}
	b.WriteString("  </service>\n</service-group>\n")
	return b.String()
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// requireAvahi fails t when avahi is missing: the network tests run as
// root only under "make test", which installs it.
func requireAvahi(t testing.TB, withBrowse bool) {
	t.Helper()
	tools := []string{"avahi-daemon", "unshare"}
	if withBrowse {
		tools = append(tools, "avahi-browse", "dbus-daemon", "nsenter")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the Debian packages avahi-daemon, avahi-utils and dbus (make test does)", tool)
		}
	}
}

// startAvahi starts avahi-daemon on v's device side publishing services,
// with a private D-Bus when withDBus is true, and waits until every
// service is established. It stops the daemon when the test ends.
func startAvahi(t testing.TB, v *vlan, withDBus bool, services ...avahiService) *avahiDaemon {
	t.Helper()
	requireAvahi(t, withDBus)
	dir := t.TempDir()
	svcDir := filepath.Join(dir, "services")
	if err := os.Mkdir(svcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range services {
		if err := os.WriteFile(filepath.Join(svcDir, fmt.Sprintf("s%d.service", i)), []byte(s.xml()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dbus := "no"
	if withDBus {
		dbus = "yes"
	}
	conf := fmt.Sprintf(`[server]
host-name=avahi-%s
use-ipv4=yes
use-ipv6=no
allow-interfaces=%s
enable-dbus=%s
disallow-other-stacks=no
ratelimit-interval-usec=0
[wide-area]
enable-wide-area=no
[publish]
publish-addresses=yes
publish-hinfo=no
publish-workstation=no
publish-domain=no
[reflector]
enable-reflector=no
`, v.tag, v.devIf, dbus)
	confPath := filepath.Join(dir, "avahi-daemon.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/avahi-daemon /run/dbus; " +
		"mount --bind " + svcDir + " /etc/avahi/services; "
	if withDBus {
		script += "dbus-daemon --system --fork; "
	}
	script += "exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f " + confPath
	a := &avahiDaemon{v: v, output: newLockedBuffer(), dir: dir, exited: make(chan struct{})}
	// ip netns exec, unshare and sh all exec the next program, so the
	// command's PID is avahi-daemon's and nsenter can join its mount
	// namespace.
	a.cmd = exec.Command("ip", "netns", "exec", v.devNS, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	a.cmd.Stdout, a.cmd.Stderr = a.output, a.output
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("starting avahi-daemon in %s: %v", v.devNS, err)
	}
	go func() {
		a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() { a.stop(t) })
	waitFor(t, 15*time.Second, func() (bool, string) {
		select {
		case <-a.exited:
			t.Fatalf("avahi-daemon exited early:\n%s", a.output.String())
		default:
		}
		out := a.output.String()
		n := strings.Count(out, "successfully established")
		return strings.Contains(out, "Server startup complete") && n >= len(services),
			fmt.Sprintf("avahi-daemon established %d of %d services:\n%s", n, len(services), out)
	})
	return a
}

// stop ends avahi-daemon with SIGTERM, which makes it send goodbyes, and
// kills it after 5 seconds. The D-Bus daemon is ended with the namespace.
func (a *avahiDaemon) stop(t testing.TB) {
	select {
	case <-a.exited:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(5 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
}

// browse runs avahi-browse -rpt for serviceType in the daemon's
// namespaces and returns its resolved ("=") lines split into fields.
func (a *avahiDaemon) browse(t testing.TB, serviceType string) [][]string {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(a.cmd.Process.Pid), "-m", "-n",
		"timeout", "20", "avahi-browse", "-rpt", serviceType)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("avahi-browse -rpt %s in %s: %v\n%s\navahi-daemon output:\n%s", serviceType, a.v.devNS, err, out, a.output.String())
	}
	var lines [][]string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "=;") {
			lines = append(lines, strings.Split(l, ";"))
		}
	}
	return lines
}
