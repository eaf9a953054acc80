package config

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// AdminSettings are the admin listener's settings beyond its address:
// the web console, its sessions, optional TLS and the file that holds
// the local command line's API token. They are keys of [admin].
type AdminSettings struct {
	// Console serves the web console on the admin listener.
	Console bool `toml:"console"`
	// SessionLifetime is how long a console login lasts.
	SessionLifetime Duration `toml:"session_lifetime"`
	// TLSCert and TLSKey, when both set, serve the admin listener over
	// HTTPS (relative paths are under DataDir); HSTS is then sent.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TokenFile is where `wardgate init` writes the first admin token and
	// where the command line looks for a token when none is given
	// (relative paths are under the credentials folder). Empty disables
	// both.
	TokenFile string `toml:"token_file"`
}

// Audit configures the audit trail's retention and syslog forwarding.
type Audit struct {
	// Retention is how long audit records are kept; "0s" keeps them
	// forever. Records past it are pruned only after the syslog forwarder
	// (when configured) delivered them, and every prune is itself
	// recorded in the chain.
	Retention Duration `toml:"retention"`
	Syslog    Syslog   `toml:"syslog"`
}

// Syslog configures RFC 5424 forwarding of audit records.
type Syslog struct {
	// Address is the collector's host:port; empty disables forwarding.
	Address string `toml:"address"`
	// Transport is "tls" (RFC 5425) or "tcp" (RFC 6587 octet counting).
	Transport string `toml:"transport"`
	// CA is a PEM bundle that verifies the collector's certificate
	// (relative paths are under DataDir); empty uses the system roots.
	CA string `toml:"ca"`
	// ServerName is the name the collector's certificate must carry;
	// empty means the host of Address.
	ServerName string `toml:"server_name"`
	// AppName is the RFC 5424 APP-NAME.
	AppName string `toml:"app_name"`
}

func (a AdminSettings) validate() error {
	if a.SessionLifetime < Duration(time.Minute) || a.SessionLifetime > Duration(30*24*time.Hour) {
		return fmt.Errorf("admin.session_lifetime %s must be between 1m and 720h", time.Duration(a.SessionLifetime))
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return errors.New("admin.tls_cert and admin.tls_key must be set together: set both for HTTPS or neither")
	}
	return nil
}

func (a Audit) validate() error {
	if a.Retention < 0 || (a.Retention > 0 && a.Retention < Duration(24*time.Hour)) {
		return fmt.Errorf("audit.retention %s must be \"0s\" (keep forever) or at least 24h", time.Duration(a.Retention))
	}
	if a.Syslog.Address == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(a.Syslog.Address); err != nil {
		return fmt.Errorf("audit.syslog.address %q is not host:port: %w", a.Syslog.Address, err)
	}
	switch a.Syslog.Transport {
	case "tls", "tcp":
	default:
		return fmt.Errorf("audit.syslog.transport %q must be tls or tcp", a.Syslog.Transport)
	}
	if a.Syslog.Transport == "tcp" && a.Syslog.CA != "" {
		return errors.New("audit.syslog.ca is set but audit.syslog.transport is tcp: use tls, or remove ca")
	}
	return nil
}
