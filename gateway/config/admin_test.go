package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdminAuditPolicyValidation(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"short session", func(c *Config) { c.Admin.SessionLifetime = Duration(time.Second) }, "admin.session_lifetime"},
		{"cert without key", func(c *Config) { c.Admin.TLSCert = "admin.pem" }, "must be set together"},
		{"short retention", func(c *Config) { c.Audit.Retention = Duration(time.Hour) }, "audit.retention"},
		{"syslog over udp", func(c *Config) { c.Audit.Syslog.Address = "10.0.0.5:514"; c.Audit.Syslog.Transport = "udp" }, "tls or tcp"},
		{"syslog without port", func(c *Config) { c.Audit.Syslog.Address = "collector" }, "not host:port"},
		{"ca on tcp", func(c *Config) {
			c.Audit.Syslog.Address, c.Audit.Syslog.Transport, c.Audit.Syslog.CA = "collector:6514", "tcp", "ca.pem"
		}, "use tls"},
		{"bad wave", func(c *Config) { c.Policy.Rollout.Waves = []string{"150%"} }, "policy.rollout.waves"},
		{"wave count", func(c *Config) { c.Policy.Rollout.Waves = []string{"2", "25%"} }, ""},
		{"unnamed group", func(c *Config) { c.Policy.Groups = []Group{{Models: []string{"IP-200"}}} }, "has no name"},
		{"duplicate group", func(c *Config) { c.Policy.Groups = []Group{{Name: "icu"}, {Name: "icu"}} }, "used twice"},
		{"bad member", func(c *Config) { c.Policy.Groups = []Group{{Name: "icu", Devices: []string{"SN-1"}}} }, "MANUFACTURER/SERIAL"},
		{"short device timeout", func(c *Config) { c.Policy.Rollout.DeviceTimeout = Duration(time.Second) }, "device_timeout"},
	}
	for _, tc := range cases {
		c := Default()
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want no error", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestAdminDefaults(t *testing.T) {
	c := Default()
	if !c.Admin.Console || c.Admin.TokenFile != "admin.token" || time.Duration(c.Admin.SessionLifetime) != 8*time.Hour {
		t.Errorf("admin defaults %+v", c.Admin)
	}
	if c.Audit.Retention != 0 || c.Audit.Syslog.Transport != "tls" || c.Audit.Syslog.Address != "" {
		t.Errorf("audit defaults %+v", c.Audit)
	}
	if c.Policy.RequireApproval || len(c.Policy.Rollout.Waves) != 1 || c.Policy.Rollout.FailureThreshold != 1 {
		t.Errorf("policy defaults %+v", c.Policy)
	}
}
