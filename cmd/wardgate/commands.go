package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/store"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*cfgPath); err == nil && !*force {
		return fmt.Errorf("config %s exists: pass -force to overwrite it", *cfgPath)
	}
	text := config.Example
	if *data != "" {
		abs, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		text = bytes.Replace(text, []byte(`data_dir = "/var/lib/wardgate"`), []byte(fmt.Sprintf("data_dir = %q", abs)), 1)
	}
	if err := os.MkdirAll(filepath.Dir(*cfgPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*cfgPath, text, 0o640); err != nil {
		return fmt.Errorf("writing config: %w", err)
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
	fmt.Fprintf(stdout, "wrote %s; data folder %s; device API CA %s\n", *cfgPath, cfg.DataDir, gateway.DeviceAPICA(cfg.DataDir))
	return nil
}

func cmdEnroll(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	bundle := fs.String("bundle", "", "credentials bundle folder from `wardhub enroll` (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bundle == "" {
		return errors.New("enroll needs -bundle")
	}
	cfg, err := loadConfig(*cfgPath, explicitFlag(fs, "config"))
	if err != nil {
		return err
	}
	site, err := gateway.ImportCredentials(cfg, *bundle)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled as %s; credentials in %s\n", site, cfg.CredentialsDir())
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

func adminGet(ctx context.Context, addr, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the gateway's admin listener at %s (is `wardgate serve` running?): %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("admin API %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9090", "admin listener of the running gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var st struct {
		Site              string `json:"site"`
		TunnelConnected   bool   `json:"tunnel_connected"`
		TunnelConnections int    `json:"tunnel_connections"`
		TunnelError       string `json:"tunnel_error"`
		Mirror            struct {
			LastRefresh      time.Time `json:"last_refresh"`
			LastError        string    `json:"last_error"`
			TimestampVersion int64     `json:"timestamp_version"`
			TimestampExpires time.Time `json:"timestamp_expires"`
			Targets          int       `json:"targets"`
		} `json:"mirror"`
	}
	if err := adminGet(ctx, *admin, "/v1/status", &st); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "site\t%s\n", st.Site)
	fmt.Fprintf(tw, "tunnel\tconnected=%t connections=%d %s\n", st.TunnelConnected, st.TunnelConnections, st.TunnelError)
	fmt.Fprintf(tw, "metadata\tversion %d, refreshed %s, expires %s\n", st.Mirror.TimestampVersion, st.Mirror.LastRefresh.Format(time.RFC3339), st.Mirror.TimestampExpires.Format(time.RFC3339))
	if st.Mirror.LastError != "" {
		fmt.Fprintf(tw, "last refresh error\t%s\n", st.Mirror.LastError)
	}
	fmt.Fprintf(tw, "cached targets\t%d\n", st.Mirror.Targets)
	return tw.Flush()
}

func cmdDevices(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9090", "admin listener of the running gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var devs []struct {
		Manufacturer, Serial, Model, Version, State string
		HardwareRevision                            string    `json:"hardware_revision"`
		LastSeen                                    time.Time `json:"last_seen"`
	}
	if err := adminGet(ctx, *admin, "/v1/devices", &devs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MANUFACTURER\tSERIAL\tMODEL\tHW\tVERSION\tSTATE\tLAST SEEN")
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Manufacturer, d.Serial, d.Model, d.HardwareRevision, d.Version, d.State, d.LastSeen.Format(time.RFC3339))
	}
	return tw.Flush()
}

func cmdAudit(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("audit needs a subcommand: verify")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, explicitFlag(fs, "config"))
	if err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer db.Close()
	s, err := audit.Open(db)
	if err != nil {
		return err
	}
	n, err := s.Verify(ctx)
	if err != nil {
		return fmt.Errorf("audit chain verification failed after %d good entries: %w", n, err)
	}
	fmt.Fprintf(stdout, "audit chain intact: %d entries\n", n)
	return nil
}
