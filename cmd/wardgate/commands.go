package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
)

// loadConfig reads the config file. When the file was not named on the
// command line and does not exist, the embedded defaults apply.
func loadConfig(name string, explicit bool) (config.Config, error) {
	_, err := os.Stat(name)
	if !explicit && errors.Is(err, fs.ErrNotExist) {
		return config.Default(), nil
	}
	return config.Load(name)
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", defaultConfigPath, "config file; without one the embedded defaults apply")
}

func explicitFlag(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func cmdInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	data := fs.String("data", "", "data folder to write into the config (default /var/lib/wardgate)")
	force := fs.Bool("force", false, "overwrite an existing config file")
	keep := fs.Bool("keep-config", false, "keep an existing config file and only create the keys and the first admin token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, statErr := os.Stat(*cfgPath)
	if statErr == nil && !*force && !*keep {
		return fmt.Errorf("config %s exists: pass -force to overwrite it, or -keep-config to keep it", *cfgPath)
	}
	write := statErr != nil || *force
	text := config.Example
	if *data != "" {
		abs, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		text = bytes.Replace(text, []byte(`data_dir = "/var/lib/wardgate"`), []byte(fmt.Sprintf("data_dir = %q", abs)), 1)
	}
	if write {
		if err := os.MkdirAll(filepath.Dir(*cfgPath), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*cfgPath, text, 0o640); err != nil {
			return fmt.Errorf("writing config: %w", err)
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	if _, err := gateway.EnsureDeviceAPICert(cfg); err != nil {
		return err
	}
	if err := bootstrapToken(context.Background(), cfg, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; data folder %s; device API CA %s\n", *cfgPath, cfg.DataDir, gateway.DeviceAPICA(cfg.DataDir))
	return nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, explicitFlag(fs, "config"))
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	g, err := gateway.New(cfg, log)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
