package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("embedded defaults are invalid: %v", err)
	}
	if c.DataDir != "/var/lib/wardgate" {
		t.Errorf("default data_dir = %q, want /var/lib/wardgate", c.DataDir)
	}
}

func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/good.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.Hub != "hub.example.org:443" {
		t.Errorf("upstream.hub = %q", c.Upstream.Hub)
	}
	if got := time.Duration(c.Upstream.RefreshInterval); got != time.Minute {
		t.Errorf("refresh_interval = %s, want 1m", got)
	}
	if got := time.Duration(c.Upstream.RequestTimeout); got != 15*time.Second {
		t.Errorf("request_timeout = %s, want the default 15s", got)
	}
	if len(c.DeviceAPI.Listen) != 2 || c.DeviceAPI.Interfaces[1] != "vlan30" {
		t.Errorf("device_api = %+v", c.DeviceAPI)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"testdata/unknown-key.toml", []string{"line 5", `"upstream.refresh_intervall"`}},
		{"testdata/bad-duration.toml", []string{"line 4", `"an hour"`}},
		{"testdata/missing.toml", []string{"reading config"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(tt.file)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestValidateNamesValue(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"hub without port", func(c *Config) { c.Upstream.Hub = "hub.example.org" }, `upstream.hub "hub.example.org"`},
		{"listen without port", func(c *Config) { c.DeviceAPI.Listen = []string{"10.0.0.1"} }, `device_api.listen "10.0.0.1"`},
		{"cell threshold", func(c *Config) { c.Telemetry.MinCellDevices = 0 }, "telemetry.min_cell_devices 0"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, `log.level "loud"`},
		{"repository", func(c *Config) { c.Upstream.Repository = "a/b" }, `upstream.repository "a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %s", err, tt.want)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(string(Example))
	f.Add("data_dir = 1\n[upstream]\nhub = [")
	f.Fuzz(func(t *testing.T, text string) {
		var c Config
		_ = decode([]byte(text), &c)
	})
}
