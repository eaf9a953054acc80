package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway/config"
)

// nfpmModule is the nfpm the Makefile's `package` target runs.
const nfpmModule = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0"

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

func runCmd(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// TestDebianPackage builds the .deb the way `make package` does, unpacks
// it with dpkg-deb and checks its files, maintainer scripts, conffile,
// systemd unit and sysctl drop-in.
func TestDebianPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed: the package test needs Debian's dpkg")
	}
	if testing.Short() {
		t.Skip("builds the package with nfpm: skipped with -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	stage := t.TempDir()
	runCmd(t, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(stage, "bin", "wardgate"), "./cmd/wardgate")
	copyFile(t, filepath.Join(root, "gateway/config/example.toml"), filepath.Join(stage, "bin/package/wardgate.toml"), 0o644)
	for _, f := range []string{"deploy/nfpm.yaml", "deploy/wardgate.service", "deploy/sysctl-wardgate.conf", "README.md", "docs/METRICS.md"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(stage, f), 0o644)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		copyFile(t, filepath.Join(root, "deploy/scripts", s), filepath.Join(stage, "deploy/scripts", s), 0o755)
	}
	deb := filepath.Join(stage, "wardgate.deb")
	runCmd(t, stage, []string{"VERSION=1.2.3", "ARCH=" + runtime.GOARCH}, "go", "run", nfpmModule, "package",
		"--config", "deploy/nfpm.yaml", "--packager", "deb", "--target", deb)

	ctl, files := filepath.Join(stage, "control"), filepath.Join(stage, "root")
	runCmd(t, stage, nil, "dpkg-deb", "-e", deb, ctl)
	runCmd(t, stage, nil, "dpkg-deb", "-x", deb, files)

	control := string(runCmd(t, stage, nil, "dpkg-deb", "-f", deb))
	for _, want := range []string{"Package: wardgate", "Version: 1.2.3", "Architecture: " + runtime.GOARCH, "Depends: adduser"} {
		if !strings.Contains(control, want) {
			t.Errorf("control lacks %q:\n%s", want, control)
		}
	}
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/wardgate/wardgate.toml" {
		t.Errorf("conffiles = %q, %v; want the config alone, so upgrades keep the site's edits", conffiles, err)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, s)
		st, err := os.Stat(p)
		if err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("maintainer script %s: %v, mode %v; want an executable", s, err, st.Mode())
			continue
		}
		runCmd(t, stage, nil, "sh", "-n", p)
	}
	postrm, _ := os.ReadFile(filepath.Join(ctl, "postrm"))
	if !bytes.Contains(postrm, []byte("purge)")) || !bytes.Contains(postrm, []byte("rm -rf /var/lib/wardgate")) {
		t.Errorf("postrm does not delete the data on purge:\n%s", postrm)
	}

	bin := filepath.Join(files, "usr/bin/wardgate")
	if out := runCmd(t, stage, nil, bin, "help"); !bytes.Contains(out, []byte("token")) {
		t.Errorf("packaged wardgate help lacks the token command:\n%s", out)
	}
	cfgData, err := os.ReadFile(filepath.Join(files, "etc/wardgate/wardgate.toml"))
	if err != nil || !bytes.Equal(cfgData, config.Example) {
		t.Errorf("packaged config differs from the embedded commented defaults (%v)", err)
	}
	if _, err := config.Load(filepath.Join(files, "etc/wardgate/wardgate.toml")); err != nil {
		t.Errorf("packaged config does not load: %v", err)
	}
	// deploy/wardgate.toml is a link to the embedded defaults, so the
	// example an installer reads is the config the gateway runs on.
	if deployCopy, err := os.ReadFile(filepath.Join(root, "deploy/wardgate.toml")); err != nil || !bytes.Equal(deployCopy, config.Example) {
		t.Errorf("deploy/wardgate.toml (%v) is not the commented default config of gateway/config/example.toml", err)
	}
	sysctl, _ := os.ReadFile(filepath.Join(files, "usr/lib/sysctl.d/60-wardgate.conf"))
	for _, want := range []string{"net.core.rmem_max = 7500000", "net.core.wmem_max = 7500000"} {
		if !bytes.Contains(sysctl, []byte(want)) {
			t.Errorf("sysctl drop-in lacks %q", want)
		}
	}
	unitPath := filepath.Join(files, "lib/systemd/system/wardgate.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=wardgate", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/wardgate",
		"PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "Restart=on-failure", "ProtectHome=yes"} {
		if !bytes.Contains(unit, []byte("\n"+want+"\n")) {
			t.Errorf("unit lacks %s", want)
		}
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify checks that ExecStart exists on this machine, so the
		// copy points at the unpacked binary.
		v := filepath.Join(stage, "wardgate.service")
		if err := os.WriteFile(v, bytes.ReplaceAll(unit, []byte("/usr/bin/wardgate"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", v).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze is not installed: the unit was not verified")
	}
}
