package tunnel_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway/tunnel"
)

func TestBothTransportsServeTheSameHub(t *testing.T) {
	tests := []struct{ transport string }{{tunnel.TransportQUIC}, {tunnel.TransportTCP}}
	for _, tc := range tests {
		t.Run(tc.transport, func(t *testing.T) {
			t.Parallel()
			h := newTestHub(t, nil)
			want := h.addTarget("pump.img", 300<<10)
			h.start()
			conf, site := h.credentials(time.Hour)
			var mu sync.Mutex
			var got []tunnel.Notice
			c, reg := h.client(conf, func(o *tunnel.Options) {
				o.Transport = tc.transport
				o.OnNotice = func(n tunnel.Notice) {
					mu.Lock()
					got = append(got, n)
					mu.Unlock()
				}
			})
			waitFor(t, 10*time.Second, "the tunnel to connect", c.Connected)
			if tr := c.Transport(); tr != tc.transport {
				t.Errorf("transport = %q, want %q", tr, tc.transport)
			}
			// The hub greets each control stream with the current state.
			waitFor(t, 5*time.Second, "the control stream's first notice", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) > 0
			})
			h.server().Notify(hub.Notice{Type: "withdrawn", Target: "pump.img"})
			waitFor(t, 2*time.Second, "the withdrawn notice", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, n := range got {
					if n.Type == "withdrawn" && n.Target == "pump.img" {
						return true
					}
				}
				return false
			})
			data, err := fetch(c, "pump.img", 10*time.Second)
			if err != nil || !bytes.Equal(data, want) {
				t.Fatalf("fetch: %d bytes, err %v; want the %d bytes on the hub", len(data), err, len(want))
			}
			if err := upload(c, "batch-1", 10*time.Second); err != nil {
				t.Fatalf("upload: %v", err)
			}
			if !h.sink.has(site, "batch-1") {
				t.Errorf("hub did not store batch-1 for %s", site)
			}
			st := c.Status()
			if st.State != tunnel.StateConnected || st.Site != site || st.Transport != tc.transport {
				t.Errorf("status = %+v, want connected over %s as %s", st, tc.transport, site)
			}
			if v := metricValue(t, reg, "wardgate_tunnel_transport", "transport", tc.transport); v != 1 {
				t.Errorf("wardgate_tunnel_transport{transport=%q} = %v, want 1", tc.transport, v)
			}
			if v := counterSum(t, reg, "wardgate_tunnel_bytes_total"); v < float64(len(want)) {
				t.Errorf("wardgate_tunnel_bytes_total = %v, want at least the %d bytes fetched", v, len(want))
			}
		})
	}
}

// metricValue returns the value of one labelled series of a metric
// family, or -1 when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// counterSum adds every series of a counter or gauge family.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else if m.GetGauge() != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestRevokedGatewayIsToldWhy(t *testing.T) {
	tests := []struct{ transport string }{{tunnel.TransportQUIC}, {tunnel.TransportTCP}}
	for _, tc := range tests {
		t.Run(tc.transport, func(t *testing.T) {
			t.Parallel()
			h := newTestHub(t, nil)
			h.start()
			conf, site := h.credentials(time.Hour)
			c, reg := h.client(conf, func(o *tunnel.Options) { o.Transport = tc.transport })
			waitFor(t, 10*time.Second, "the tunnel to connect", c.Connected)
			if _, err := h.server().Registry().Revoke(site, "appliance stolen"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the refusal", func() bool { return c.Status().State == tunnel.StateRefused })
			st := c.Status()
			if !strings.Contains(st.Refusal, "revoked") || !strings.Contains(st.Refusal, "appliance stolen") {
				t.Errorf("status refusal = %q, want it to say revoked and why", st.Refusal)
			}
			// A request fails at once with the reason, well before its
			// deadline.
			start := time.Now()
			err := upload(c, "after-revoke", 20*time.Second)
			var refused *tunnel.RefusedError
			if !errors.As(err, &refused) || refused.Code != hub.RejectRevoked {
				t.Fatalf("upload after revocation: %v, want a RefusedError %q", err, hub.RejectRevoked)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("upload after revocation took %s, want an immediate failure", took)
			}
			if v := metricValue(t, reg, "wardgate_tunnel_refused", "reason", hub.RejectRevoked); v != 1 {
				t.Errorf("wardgate_tunnel_refused{reason=revoked} = %v, want 1", v)
			}
			dials := c.Dials()
			time.Sleep(2 * time.Second)
			if got := c.Dials(); got > dials+1 {
				t.Errorf("refused gateway dialled %d more times in 2s, want at most 1", got-dials)
			}
		})
	}
}

func TestHubRefusesBadCertificates(t *testing.T) {
	h := newTestHub(t, nil)
	h.start()
	ca, err := hub.GatewayCA(h.data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		site     string
		lifetime time.Duration
		want     string
	}{
		{"expired", "", -time.Minute, hub.RejectExpired},
		{"unknown site", "site-00000000000000000000000000000000", time.Hour, hub.RejectUnknownSite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, site := h.credentials(time.Hour)
			if tc.site != "" {
				site = tc.site
			}
			pair, err := hub.IssueGateway(ca, site, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates[0] = pair
			c, _ := h.client(conf, nil)
			waitFor(t, 10*time.Second, "the refusal", func() bool { return c.Status().State == tunnel.StateRefused })
			var refused *tunnel.RefusedError
			if err := c.LastError(); !errors.As(err, &refused) || refused.Code != tc.want {
				t.Errorf("last error %v, want a refusal %q", err, tc.want)
			}
		})
	}
}
