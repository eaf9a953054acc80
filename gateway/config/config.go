// Package config holds the gateway's configuration: one TOML file,
// decoded strictly so that an unknown key is an error naming the key and
// its line, with every default in one place and validation before any
// socket opens.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/wardgate/wardgate/cache/exposure"
)

// Example is the commented configuration that `wardgate init` writes.
// Its values are the defaults.
//
//go:embed example.toml
var Example []byte

// Config is the whole gateway configuration.
type Config struct {
	// DataDir holds the database, the blob cache, and the enrolment
	// credentials.
	DataDir   string    `toml:"data_dir"`
	Upstream  Upstream  `toml:"upstream"`
	Tunnel    Tunnel    `toml:"tunnel"`
	DeviceAPI DeviceAPI `toml:"device_api"`
	Admin     Admin     `toml:"admin"`
	Cache     Cache     `toml:"cache"`
	Mirror    Mirror    `toml:"mirror"`
	Audit     Audit     `toml:"audit"`
	Policy    Policy    `toml:"policy"`
	Telemetry Telemetry `toml:"telemetry"`
	Licenses  Licenses  `toml:"licenses"`
	Log       Log       `toml:"log"`
}

// Upstream configures the tunnel to the manufacturer's hub.
type Upstream struct {
	// Hub is the hub's UDP address, host:port.
	Hub string `toml:"hub"`
	// ServerName is the name the hub's certificate must carry.
	ServerName string `toml:"server_name"`
	// Credentials is the enrolment folder (relative paths are under
	// DataDir): gateway.pem, gateway.key, hub-ca.pem, root.json, site-id.
	Credentials string `toml:"credentials"`
	// Repository names the upstream TUF repository on the mirror's paths.
	Repository string `toml:"repository"`
	// RefreshInterval is how often TUF metadata is refreshed when no
	// notice arrives.
	RefreshInterval Duration `toml:"refresh_interval"`
	// RequestTimeout bounds each upstream request that is not a bulk
	// download.
	RequestTimeout Duration `toml:"request_timeout"`
}

// DeviceAPI configures the HTTPS API that devices use.
type DeviceAPI struct {
	// Listen lists the TCP addresses of the device API.
	Listen []string `toml:"listen"`
	// DeviceCA is the PEM bundle of the manufacturers' device CAs;
	// relative paths are under the credentials folder.
	DeviceCA string `toml:"device_ca"`
	// ServerName is the name on the gateway's device API certificate.
	ServerName string `toml:"server_name"`
	// Interfaces are the clinical VLAN interfaces for mDNS.
	Interfaces []string `toml:"interfaces"`
}

// Admin configures the admin listener.
type Admin struct {
	Listen string `toml:"listen"`
	AdminSettings
}

// Cache configures the blob cache.
type Cache struct {
	// MaxBytes bounds the blob cache; 0 means no bound.
	MaxBytes int64 `toml:"max_bytes"`
}

// Telemetry configures the analytics relay.
type Telemetry struct {
	// Period is the aggregation period.
	Period Duration `toml:"period"`
	// MinCellDevices is the small-cell threshold: a cell covering fewer
	// distinct devices is withheld.
	MinCellDevices int `toml:"min_cell_devices"`
	// PerDeviceManufacturers lists manufacturers whose devices' telemetry
	// also goes upstream one device at a time, under random pseudonyms.
	// Every such upload is audited.
	PerDeviceManufacturers []string `toml:"per_device_manufacturers"`
}

// Licenses is the hospital's license policy for the components in
// release SBOMs, as SPDX license identifiers.
type Licenses struct {
	// Allow lists the licenses the hospital accepts; empty accepts all
	// that Deny does not list.
	Allow []string `toml:"allow"`
	// Deny lists licenses that are findings wherever they appear.
	Deny []string `toml:"deny"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is "text" or "json".
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a string such as "5m".
type Duration time.Duration

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a form such as \"30s\" or \"5m\"", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default returns the configuration a gateway runs with when there is no
// config file.
func Default() Config {
	var c Config
	if err := decode(Example, &c); err != nil {
		panic(fmt.Sprintf("embedded example config is invalid: %v", err))
	}
	return c
}

// Load reads and validates the config file at name. A missing file is an
// error; callers that allow running on defaults check for it first.
func Load(name string) (Config, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	c := Default()
	if err := decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	return c, nil
}

func decode(data []byte, c *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(c)
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q", row, strings.Join(e.Key(), ".")))
		}
		return fmt.Errorf("%s (see `wardgate init` for the valid keys)", strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("line %d column %d: %s", row, col, de.Error())
	}
	return err
}

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data_dir is empty: set it to the folder for the gateway's data")
	}
	if c.Upstream.Hub != "" {
		if _, _, err := net.SplitHostPort(c.Upstream.Hub); err != nil {
			return fmt.Errorf("upstream.hub %q is not host:port: %w", c.Upstream.Hub, err)
		}
	}
	if c.Upstream.RefreshInterval < Duration(time.Second) {
		return fmt.Errorf("upstream.refresh_interval %s is below 1s", time.Duration(c.Upstream.RefreshInterval))
	}
	if c.Upstream.RequestTimeout <= 0 {
		return errors.New("upstream.request_timeout must be positive")
	}
	if c.Upstream.Repository == "" || strings.ContainsAny(c.Upstream.Repository, "/\\ ") {
		return fmt.Errorf("upstream.repository %q must be a plain name such as \"default\"", c.Upstream.Repository)
	}
	for _, l := range c.DeviceAPI.Listen {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return fmt.Errorf("device_api.listen %q is not host:port: %w", l, err)
		}
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			return fmt.Errorf("admin.listen %q is not host:port: %w", c.Admin.Listen, err)
		}
	}
	if c.Telemetry.Period < Duration(time.Second) {
		return fmt.Errorf("telemetry.period %s is below 1s", time.Duration(c.Telemetry.Period))
	}
	if c.Telemetry.MinCellDevices < 1 {
		return fmt.Errorf("telemetry.min_cell_devices %d must be at least 1", c.Telemetry.MinCellDevices)
	}
	if err := c.Tunnel.validate(); err != nil {
		return err
	}
	if err := c.Mirror.validate(); err != nil {
		return err
	}
	if err := c.Admin.AdminSettings.validate(); err != nil {
		return err
	}
	if err := c.Audit.validate(); err != nil {
		return err
	}
	if err := c.Policy.validate(); err != nil {
		return err
	}
	if err := (exposure.LicensePolicy{Allow: c.Licenses.Allow, Deny: c.Licenses.Deny}).Validate(); err != nil {
		return fmt.Errorf("licenses: %w", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q must be text or json", c.Log.Format)
	}
	return nil
}

// Path resolves name against base unless it is absolute.
func Path(base, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(base, name)
}

// CredentialsDir returns the enrolment folder.
func (c *Config) CredentialsDir() string { return Path(c.DataDir, c.Upstream.Credentials) }
