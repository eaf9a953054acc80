package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Tunnel configures how the tunnel reaches the hub: the transport, the
// TCP fallback and its proxy, QUIC re-probing, and the bandwidth cap.
type Tunnel struct {
	// Transport is "auto" (QUIC, falling back to HTTP/2 over TCP when
	// UDP gets no response), "quic" or "tcp".
	Transport string `toml:"transport"`
	// TCPHub is the hub's TCP address for HTTP/2; empty means the same
	// host:port as upstream.hub.
	TCPHub string `toml:"tcp_hub"`
	// Proxy is the HTTP CONNECT proxy for the TCP transport: empty uses
	// HTTPS_PROXY (and NO_PROXY) from the environment, "direct" uses no
	// proxy, anything else is "host:port" or "http://host:port".
	Proxy string `toml:"proxy"`
	// ProxyUsername, when set, sends Basic proxy credentials with the
	// password read from ProxyPasswordFile.
	ProxyUsername string `toml:"proxy_username"`
	// ProxyPasswordFile holds the proxy password, so that the config
	// file holds no secret; relative paths are under data_dir.
	ProxyPasswordFile string `toml:"proxy_password_file"`
	// QUICReprobeInterval is how often QUIC is tried again while the
	// tunnel runs over TCP.
	QUICReprobeInterval Duration `toml:"quic_reprobe_interval"`
	// BandwidthLimit caps the tunnel's request and response bodies
	// together; update fetches go ahead of telemetry.
	BandwidthLimit Bandwidth `toml:"bandwidth_limit"`
}

// Transport preferences of Tunnel.Transport.
const (
	TransportAuto = "auto"
	TransportQUIC = "quic"
	TransportTCP  = "tcp"
	// ProxyDirect turns the environment's proxy off.
	ProxyDirect = "direct"
)

func (t Tunnel) validate() error {
	switch t.Transport {
	case TransportAuto, TransportQUIC, TransportTCP:
	default:
		return fmt.Errorf("tunnel.transport %q must be auto, quic or tcp", t.Transport)
	}
	if t.TCPHub != "" {
		if _, _, err := net.SplitHostPort(t.TCPHub); err != nil {
			return fmt.Errorf("tunnel.tcp_hub %q is not host:port: %w", t.TCPHub, err)
		}
	}
	if t.Proxy != "" && t.Proxy != ProxyDirect {
		if err := checkProxy(t.Proxy); err != nil {
			return err
		}
	}
	if t.ProxyUsername != "" && t.ProxyPasswordFile == "" {
		return fmt.Errorf("tunnel.proxy_username %q is set but tunnel.proxy_password_file is not: set it to the file that contains the password", t.ProxyUsername)
	}
	if time.Duration(t.QUICReprobeInterval) < time.Second {
		return fmt.Errorf("tunnel.quic_reprobe_interval %s is below 1s: raise it", time.Duration(t.QUICReprobeInterval))
	}
	if t.BandwidthLimit != 0 && t.BandwidthLimit < 8<<10 {
		return fmt.Errorf("tunnel.bandwidth_limit %s is below 8KiB/s, too little for the tunnel's control traffic: raise it or set \"0\" for no cap", t.BandwidthLimit)
	}
	return nil
}

func checkProxy(p string) error {
	if !strings.Contains(p, "://") {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("tunnel.proxy %q is neither host:port nor an http:// URL", p)
		}
		return nil
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "http" || u.Hostname() == "" {
		return fmt.Errorf("tunnel.proxy %q must be host:port or http://host:port (CONNECT over plain HTTP to the proxy)", redactProxy(p))
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			return fmt.Errorf("tunnel.proxy %q contains a password: put the user in tunnel.proxy_username and the password in the file tunnel.proxy_password_file names", redactProxy(p))
		}
	}
	return nil
}

func redactProxy(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.User == nil {
		return p
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// Bandwidth is a rate in bytes per second, written with its unit:
// "0" (no cap), "20Mbit/s", "2.5MB/s", "512KiB/s", "100kbps".
type Bandwidth int64

// bandwidthUnits maps each accepted unit to bytes per second.
var bandwidthUnits = map[string]float64{
	"B/s": 1, "kB/s": 1e3, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9,
	"KiB/s": 1 << 10, "MiB/s": 1 << 20, "GiB/s": 1 << 30,
	"bit/s": 1.0 / 8, "kbit/s": 1e3 / 8, "Mbit/s": 1e6 / 8, "Gbit/s": 1e9 / 8,
	"bps": 1.0 / 8, "kbps": 1e3 / 8, "Mbps": 1e6 / 8, "Gbps": 1e9 / 8,
}

// ParseBandwidth reads a Bandwidth.
func ParseBandwidth(s string) (Bandwidth, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return 0, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("bandwidth %q needs a number and a unit, such as \"20Mbit/s\" or \"2MB/s\", or \"0\" for no cap", s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bandwidth %q has no valid number", s)
	}
	mult, ok := bandwidthUnits[unit]
	if !ok {
		return 0, fmt.Errorf("bandwidth %q has unknown unit %q: use B/s, kB/s, MB/s, KiB/s, MiB/s, kbit/s, Mbit/s or Gbit/s", s, unit)
	}
	bps := v * mult
	if bps > math.MaxInt64/2 {
		return 0, fmt.Errorf("bandwidth %q is too large", s)
	}
	if bps > 0 && bps < 1 {
		return 0, fmt.Errorf("bandwidth %q is below one byte per second", s)
	}
	return Bandwidth(math.Round(bps)), nil
}

// UnmarshalText reads a Bandwidth.
func (b *Bandwidth) UnmarshalText(text []byte) error {
	v, err := ParseBandwidth(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText writes the rate in bytes per second, or "0".
func (b Bandwidth) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String writes the rate in bytes per second, or "0" for no cap.
func (b Bandwidth) String() string {
	if b == 0 {
		return "0"
	}
	return strconv.FormatInt(int64(b), 10) + "B/s"
}
