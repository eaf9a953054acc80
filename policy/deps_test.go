package policy

import (
	"go/build"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbiddenAnywhere reports whether a package, imported directly or
// transitively, would give policy networking or storage.
func forbiddenAnywhere(path string) bool {
	for _, prefix := range []string{
		"net", "crypto/tls", "crypto/x509", "database/", "github.com/dgraph-io/", "go.etcd.io/bbolt",
		"github.com/mattn/go-sqlite3", "modernc.org/sqlite", "github.com/syndtr/goleveldb", "github.com/cockroachdb/pebble",
		"github.com/quic-go/", "github.com/hashicorp/mdns", "github.com/miekg/dns", "github.com/theupdateframework/",
		"github.com/prometheus/", "golang.org/x/net", "os/exec", "plugin",
	} {
		if path == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(path, strings.TrimSuffix(prefix, "/")+"/") {
			return true
		}
	}
	return false
}

// forbiddenDirect lists packages that the standard library uses
// internally (fmt imports os) but that policy itself must not import,
// because they read or write files or the environment.
var forbiddenDirect = []string{"os", "os/signal", "io/fs", "io/ioutil", "path/filepath", "syscall", "embed", "log", "runtime/debug"}

func TestForbiddenImportRules(t *testing.T) {
	for _, path := range []string{"net", "net/http", "net/netip", "database/sql", "github.com/dgraph-io/badger/v4", "crypto/tls", "os/exec"} {
		if !forbiddenAnywhere(path) {
			t.Errorf("forbiddenAnywhere(%q) = false, want true", path)
		}
	}
	for _, path := range []string{"time", "crypto/ed25519", "encoding/json", "network-free/x", "netx"} {
		if forbiddenAnywhere(path) {
			t.Errorf("forbiddenAnywhere(%q) = true, want false", path)
		}
	}
}

func TestPolicyImportsNoNetworkingOrStorage(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatalf("reading the package's imports: %v", err)
	}
	for _, imp := range pkg.Imports {
		if slices.Contains(forbiddenDirect, imp) || forbiddenAnywhere(imp) {
			t.Errorf("policy imports %s directly; it must do no I/O (time comes from the Clock, data from the caller)", imp)
		}
	}
	deps := transitiveDeps(t)
	for _, dep := range deps {
		if forbiddenAnywhere(dep) {
			t.Errorf("policy depends on %s (directly or through another package); it must not reach networking or storage", dep)
		}
	}
	if !slices.Contains(deps, "time") {
		t.Fatalf("got %d dependencies without time, want the full list", len(deps))
	}
}

// transitiveDeps lists every package policy depends on, from
// `go list -deps` when the go command is available, else by walking
// the imports with go/build, which covers the standard library.
func transitiveDeps(t *testing.T) []string {
	t.Helper()
	if goCmd, err := exec.LookPath("go"); err == nil {
		out, err := exec.Command(goCmd, "list", "-deps", ".").Output()
		if err != nil {
			t.Fatalf("go list -deps: %v", err)
		}
		return strings.Fields(string(out))
	}
	t.Log("go command not found; walking imports with go/build")
	seen := map[string]bool{}
	var walk func(path, dir string)
	walk = func(path, dir string) {
		pkg, err := build.Import(path, dir, 0)
		if err != nil {
			t.Fatalf("importing %s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if !seen[imp] && imp != "C" && imp != "unsafe" {
				seen[imp] = true
				walk(imp, pkg.Dir)
			}
		}
	}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		seen[imp] = true
		walk(imp, pkg.Dir)
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	return out
}
