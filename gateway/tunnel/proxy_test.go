package tunnel_test

import (
	"testing"

	"github.com/wardgate/wardgate/gateway/tunnel"
)

func TestParseProxy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    tunnel.Proxy
		wantErr bool
	}{
		{"host and port", "proxy.hospital.local:3128", tunnel.Proxy{Addr: "proxy.hospital.local:3128"}, false},
		{"url without port", "http://proxy.local", tunnel.Proxy{Addr: "proxy.local:80"}, false},
		{"url with credentials", "http://svc-wardgate:s%40cret@10.0.0.5:8080", tunnel.Proxy{Addr: "10.0.0.5:8080", Username: "svc-wardgate", Password: "s@cret"}, false},
		{"ipv6", "http://[fd00::5]:3128", tunnel.Proxy{Addr: "[fd00::5]:3128"}, false},
		{"https proxy", "https://proxy.local:443", tunnel.Proxy{}, true},
		{"socks", "socks5://proxy.local:1080", tunnel.Proxy{}, true},
		{"bare host", "proxy.local", tunnel.Proxy{}, true},
		{"empty", "", tunnel.Proxy{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tunnel.ParseProxy(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseProxy(%q) error = %v, want error %t", tc.in, err, tc.wantErr)
			}
			if err == nil && *got != tc.want {
				t.Errorf("ParseProxy(%q) = %+v, want %+v", tc.in, *got, tc.want)
			}
		})
	}
}

func TestProxyFromEnvironment(t *testing.T) {
	tests := []struct {
		name, httpsProxy, noProxy, hub string
		want                           string
	}{
		{"set", "http://user:pw@proxy.local:3128", "", "hub.example.com:443", "user@proxy.local:3128"},
		{"unset", "", "", "hub.example.com:443", ""},
		{"no_proxy match", "http://proxy.local:3128", "example.com", "hub.example.com:443", ""},
		{"no_proxy other", "http://proxy.local:3128", "other.org", "hub.example.com:443", "proxy.local:3128"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HTTPS_PROXY", tc.httpsProxy)
			t.Setenv("https_proxy", tc.httpsProxy)
			t.Setenv("NO_PROXY", tc.noProxy)
			t.Setenv("no_proxy", tc.noProxy)
			p, err := tunnel.ProxyFromEnvironment(tc.hub)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if p != nil {
				got = p.String()
			}
			if got != tc.want {
				t.Errorf("proxy = %q, want %q", got, tc.want)
			}
		})
	}
}
