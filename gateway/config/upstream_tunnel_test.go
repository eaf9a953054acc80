package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway/config"
)

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in      string
		want    config.Bandwidth
		wantErr bool
	}{
		{"0", 0, false},
		{"20Mbit/s", 2_500_000, false},
		{"2.5MB/s", 2_500_000, false},
		{"512KiB/s", 512 << 10, false},
		{"100kbps", 12_500, false},
		{"1GiB/s", 1 << 30, false},
		{" 64 kB/s ", 64_000, false},
		{"20", 0, true},
		{"20Mb/s", 0, true},
		{"fast", 0, true},
		{"-5MB/s", 0, true},
		{"1.2.3MB/s", 0, true},
		{"1bit/s", 0, true},
		{"99999999999999999999GB/s", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := config.ParseBandwidth(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseBandwidth(%q) error = %v, want error %t", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseBandwidth(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseBandwidth(f *testing.F) {
	for _, s := range []string{"0", "20Mbit/s", "2.5MB/s", "512KiB/s", "1e9B/s", "..B/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseBandwidth(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseBandwidth(%q) = %d, negative", s, b)
		}
		// What String writes must read back as the same rate.
		again, err := config.ParseBandwidth(b.String())
		if err != nil || again != b {
			t.Fatalf("ParseBandwidth(%q) = %d, but its String %q reads back as %d, %v", s, b, b.String(), again, err)
		}
	})
}

func TestTunnelSettings(t *testing.T) {
	tests := []struct {
		name    string
		section string
		wantErr string
	}{
		{"defaults", "", ""},
		{"tcp through a proxy with credentials", "transport = \"tcp\"\nproxy = \"http://proxy.local:3128\"\nproxy_username = \"wg\"\nproxy_password_file = \"proxy.pw\"\nbandwidth_limit = \"10Mbit/s\"", ""},
		{"direct", "proxy = \"direct\"", ""},
		{"bad transport", "transport = \"udp\"", "tunnel.transport"},
		{"socks proxy", "proxy = \"socks5://p:1080\"", "tunnel.proxy"},
		{"password in url", "proxy = \"http://u:secret@p:3128\"", "proxy_password_file"},
		{"user without password file", "proxy_username = \"wg\"", "tunnel.proxy_password_file"},
		{"tiny cap", "bandwidth_limit = \"1kB/s\"", "tunnel.bandwidth_limit"},
		{"bad cap", "bandwidth_limit = \"lots\"", "bandwidth"},
		{"reprobe too often", "quic_reprobe_interval = \"10ms\"", "tunnel.quic_reprobe_interval"},
		{"bad tcp hub", "tcp_hub = \"hub\"", "tunnel.tcp_hub"},
		{"unknown key", "udp_only = true", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "wardgate.toml")
			text := "data_dir = \"" + t.TempDir() + "\"\n[tunnel]\n" + tc.section + "\n"
			if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(name)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Load error = %v, want one naming %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the proxy password", err)
			}
		})
	}
}
