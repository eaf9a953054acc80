package main

import (
	"flag"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cmd/internal/cliflag"
	"github.com/wardgate/wardgate/cmd/wardhub/repo"
)

func cmdRepoInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("repo init", flag.ContinueOnError)
	keys := fs.String("keys", "", "folder for the private keys (default DIR-keys)")
	dir, err := parseWithDir(fs, args)
	if err != nil {
		return err
	}
	if *keys == "" {
		*keys = repo.DefaultKeysDir(dir)
	}
	r, err := repo.Init(dir, *keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created TUF repository %s (root version %d), keys in %s\n", dir, r.RootVersion(), *keys)
	return nil
}

func cmdRepoAdd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("repo add", flag.ContinueOnError)
	keys := fs.String("keys", "", "folder of the private keys (default DIR-keys)")
	target := fs.String("target", "", "target path, such as pump/3.2.0/image.bin (default PRODUCT/VERSION/FILE-NAME)")
	product := fs.String("product", "", "product name (required)")
	version := fs.String("version", "", "release version (required)")
	models := fs.String("models", "", "comma-separated device models the release fits (required)")
	hw := fs.String("hw-revisions", "", "comma-separated hardware revisions it supports (default all)")
	sbom := fs.String("sbom", "", "SBOM file that ships with the release")
	channel := fs.String("channel", "stable", "release channel")
	requires := fs.String("requires", "", "semicolon-separated COMPONENT=CONSTRAINT prerequisites, such as \"bootloader=>=2.0.0\"")
	security := fs.Bool("security-fix", false, "mark the release as a security fix")
	rollback := fs.Bool("allow-rollback", false, "allow installing over a newer version")
	duration := fs.Duration("install-duration", 10*time.Minute, "expected install time")
	if err := cliflag.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("repo add needs DIR and FILE, got %d arguments", fs.NArg())
	}
	dir, file := fs.Arg(0), fs.Arg(1)
	for _, req := range []struct{ flag, value string }{{"-product", *product}, {"-version", *version}, {"-models", *models}} {
		if strings.TrimSpace(req.value) == "" {
			return fmt.Errorf("repo add needs %s", req.flag)
		}
	}
	if !validVersion.MatchString(*version) {
		return fmt.Errorf("invalid -version %q: use a version such as 3.2.0 or 3.2.0-rc.1", *version)
	}
	if len(splitList(*models, ",")) == 0 {
		return fmt.Errorf("invalid -models %q: name at least one device model", *models)
	}
	if strings.TrimSpace(*hw) != "" && len(splitList(*hw, ",")) == 0 {
		return fmt.Errorf("invalid -hw-revisions %q: name at least one revision, or leave it out for every revision", *hw)
	}
	if *duration <= 0 {
		return fmt.Errorf("invalid -install-duration %s: it must be positive", *duration)
	}
	if *keys == "" {
		*keys = repo.DefaultKeysDir(dir)
	}
	if *target == "" {
		*target = path.Join(*product, *version, filepath.Base(file))
	}
	var r *repo.Repo
	err := repo.WithLock(dir, func() error {
		var err error
		r, err = repo.Open(dir, *keys)
		if err != nil {
			return err
		}
		meta := cache.TargetMeta{
			Kind:              cache.KindRelease,
			Product:           *product,
			Version:           *version,
			Channel:           *channel,
			Models:            splitList(*models, ","),
			HardwareRevisions: splitList(*hw, ","),
			SecurityFix:       *security,
			AllowRollback:     *rollback,
			InstallDuration:   cache.Duration(*duration),
		}
		if *requires != "" {
			meta.Requires = map[string]string{}
			for _, kv := range splitList(*requires, ";") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" || v == "" {
					return fmt.Errorf("invalid -requires entry %q: use COMPONENT=CONSTRAINT", kv)
				}
				meta.Requires[k] = v
			}
		}
		if *sbom != "" {
			meta.SBOM = path.Join(path.Dir(*target), filepath.Base(*sbom))
			sbomMeta := cache.TargetMeta{Kind: cache.KindSBOM, Release: *target}
			if err := r.AddTarget(meta.SBOM, *sbom, sbomMeta); err != nil {
				return err
			}
		}
		if err := r.AddTarget(*target, file, meta); err != nil {
			return err
		}
		return r.Publish()
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s %s as %s (targets version %d)\n", *product, *version, *target, r.TargetsVersion())
	return nil
}

// validVersion accepts dotted release versions with an optional
// pre-release or build suffix, such as 3.2.0, 5.1 or 3.2.0-rc.1+b7.
var validVersion = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?(\+[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$`)

func parseWithDir(fs *flag.FlagSet, args []string) (string, error) {
	if err := cliflag.Parse(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s needs exactly one folder argument", fs.Name())
	}
	return fs.Arg(0), nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
