package tunnel_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/tunnel"
	"github.com/wardgate/wardgate/gateway/tunnel/nettest"
)

// uploader posts batches prefix-0, prefix-1, ... one after another, each
// with its own deadline, until stopped, and records how each went.
type uploader struct {
	c        *tunnel.Client
	prefix   string
	deadline time.Duration
	bodySize int

	mu      sync.Mutex
	ok      []string
	failed  map[string]error
	overran []string
	stop    chan struct{}
	done    chan struct{}
}

func startUploader(c *tunnel.Client, prefix string, deadline time.Duration, bodySize int) *uploader {
	u := &uploader{c: c, prefix: prefix, deadline: deadline, bodySize: bodySize, failed: map[string]error{}, stop: make(chan struct{}), done: make(chan struct{})}
	go u.run()
	return u
}

func (u *uploader) run() {
	defer close(u.done)
	for i := 0; ; i++ {
		select {
		case <-u.stop:
			return
		default:
		}
		key := fmt.Sprintf("%s-%d", u.prefix, i)
		// A failed batch is sent again with the same key, as the
		// telemetry relay does, until it is stored.
		for {
			start := time.Now()
			err := u.send(key)
			took := time.Since(start)
			u.mu.Lock()
			if took > u.deadline+2*time.Second {
				u.overran = append(u.overran, fmt.Sprintf("%s took %s", key, took.Round(time.Millisecond)))
			}
			if err == nil {
				u.ok = append(u.ok, key)
				delete(u.failed, key)
			} else {
				u.failed[key] = err
			}
			u.mu.Unlock()
			if err == nil {
				break
			}
			select {
			case <-u.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (u *uploader) send(key string) error {
	if u.bodySize == 0 {
		return upload(u.c, key, u.deadline)
	}
	ctx, cancel := context.WithTimeout(context.Background(), u.deadline)
	defer cancel()
	body := bytes.Repeat([]byte("x"), u.bodySize)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://wardhub/v1/telemetry", bytes.NewReader(body))
	req.Header.Set("Idempotency-Key", key)
	resp, err := u.c.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hub answered %s", resp.Status)
	}
	return nil
}

// finish stops the uploader and checks that no request overran its
// deadline and that the hub stored every acknowledged batch once.
func (u *uploader) finish(t *testing.T, h *testHub, site string) {
	t.Helper()
	close(u.stop)
	<-u.done
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, o := range u.overran {
		t.Errorf("request hung past its deadline of %s: %s", u.deadline, o)
	}
	if len(u.ok) == 0 {
		t.Errorf("no upload of %s succeeded", u.prefix)
	}
	for _, k := range u.ok {
		if !h.sink.has(site, k) {
			t.Errorf("upload %s was acknowledged but the hub did not store it", k)
		}
	}
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	for k, n := range h.sink.arrivals {
		if strings.HasPrefix(k, site+"/"+u.prefix+"-") && n > 1 {
			t.Logf("batch %s reached the hub %d times and was stored once", k, n)
		}
	}
}

func TestHubRestartMidTransfer(t *testing.T) {
	tests := []struct {
		name string
		kill bool
	}{
		{"crash", true},
		{"clean stop", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHub(t, nil)
			want := h.addTarget("monitor.img", 3<<20)
			h.start()
			conf, site := h.credentials(time.Hour)
			c, reg := h.client(conf, func(o *tunnel.Options) { o.BandwidthLimit = 1 << 20 })
			waitFor(t, 10*time.Second, "the tunnel to connect", c.Connected)
			// A 1 MiB upload is slowed by the cap and by the fetch ahead
			// of it, so it is in flight when the hub goes.
			up := startUploader(c, "restart", 15*time.Second, 1<<20)
			fetchErr := make(chan error, 1)
			go func() {
				data, err := fetch(c, "monitor.img", 30*time.Second)
				if err == nil && !bytes.Equal(data, want) {
					err = fmt.Errorf("fetched %d bytes that differ from the hub's %d", len(data), len(want))
				}
				fetchErr <- err
			}()
			time.Sleep(time.Second)
			if tc.kill {
				h.kill()
			} else {
				h.shutdown()
			}
			time.Sleep(200 * time.Millisecond)
			h.start()
			restarted := time.Now()
			select {
			case err := <-fetchErr:
				// A clean stop drains requests for up to 2 s, so the
				// fetch may finish; a crash cuts it.
				if err == nil && tc.kill {
					t.Fatal("fetch across the hub crash succeeded; want the transfer to be cut")
				}
				if took := time.Since(restarted); tc.kill && took > 5*time.Second {
					t.Errorf("fetch failed %s after the hub came back, want it to fail fast", took.Round(time.Millisecond))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("fetch still hanging 20s after the hub restarted")
			}
			waitFor(t, 10*time.Second, "the tunnel to reconnect", c.Connected)
			if back := time.Since(restarted); back > 5*time.Second {
				t.Errorf("tunnel back %s after the hub restarted, want within 5s", back)
			}
			data, err := fetch(c, "monitor.img", 30*time.Second)
			if err != nil || !bytes.Equal(data, want) {
				t.Errorf("fetch after the restart: %d bytes, err %v", len(data), err)
			}
			time.Sleep(500 * time.Millisecond)
			up.finish(t, h, site)
			cause := "closed_by_peer"
			if tc.kill {
				cause = "stateless_reset"
			}
			if v := metricValue(t, reg, "wardgate_tunnel_reconnects_total", "cause", cause); v < 1 {
				t.Errorf("wardgate_tunnel_reconnects_total{cause=%q} = %v, want at least 1", cause, v)
			}
			if got := c.MaxOpen(); got != 1 {
				t.Errorf("gateway had %d connections open at once, want 1", got)
			}
		})
	}
}

// relayClient is a client whose QUIC path goes through a UDP relay.
func relayClient(t *testing.T, h *testHub, opts func(*tunnel.Options)) (*tunnel.Client, *nettest.UDPRelay, string) {
	t.Helper()
	relay, err := nettest.NewUDPRelay(h.hubAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	conf, site := h.credentials(time.Hour)
	c, _ := h.client(conf, func(o *tunnel.Options) {
		o.Addr = relay.Addr()
		o.TCPAddr = h.hubAddr()
		if opts != nil {
			opts(o)
		}
	})
	return c, relay, site
}

func TestUDPBlackhole(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	// Shorter liveness than the defaults keeps the test short; the
	// half-open test runs with the defaults.
	c, relay, site := relayClient(t, h, func(o *tunnel.Options) {
		o.KeepAlivePeriod, o.MaxIdleTimeout = time.Second, 4*time.Second
	})
	waitFor(t, 10*time.Second, "the tunnel to connect", c.Connected)
	up := startUploader(c, "blackhole", 3*time.Second, 0)
	time.Sleep(300 * time.Millisecond)
	relay.Block(true, true)
	noticed := waitFor(t, 8*time.Second, "the tunnel to notice the dead path", func() bool { return !c.Connected() })
	t.Logf("dead path noticed after %s", noticed)
	time.Sleep(2 * time.Second)
	relay.Block(false, false)
	back := waitFor(t, 10*time.Second, "the tunnel to come back", c.Connected)
	if back > 5*time.Second {
		t.Errorf("tunnel back %s after the path recovered, want within 5s", back)
	}
	time.Sleep(time.Second)
	up.finish(t, h, site)
}

func TestPacketLoss30Percent(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	want := h.addTarget("sbom.json", 256<<10)
	h.start()
	c, relay, site := relayClient(t, h, nil)
	relay.SetLoss(0.3, 0.3)
	waitFor(t, 20*time.Second, "the tunnel to connect through 30% loss", c.Connected)
	up := startUploader(c, "lossy", 10*time.Second, 0)
	data, err := fetch(c, "sbom.json", 30*time.Second)
	if err != nil || !bytes.Equal(data, want) {
		t.Errorf("fetch through 30%% loss: %d bytes, err %v; want %d bytes", len(data), err, len(want))
	}
	time.Sleep(3 * time.Second)
	relay.SetLoss(0, 0)
	waitFor(t, 5*time.Second, "the tunnel after the loss ends", c.Connected)
	up.finish(t, h, site)
	if fwd, dropped := relay.Counts(); dropped == 0 || fwd == 0 {
		t.Errorf("relay forwarded %d and dropped %d datagrams, want both", fwd, dropped)
	}
	if got := c.MaxOpen(); got != 1 {
		t.Errorf("gateway had %d connections open at once, want 1", got)
	}
}

func TestHalfOpenPath(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	c, relay, site := relayClient(t, h, nil)
	waitFor(t, 10*time.Second, "the tunnel to connect", c.Connected)
	up := startUploader(c, "halfopen", 4*time.Second, 0)
	watch := watchOpen(h, c, site)
	time.Sleep(300 * time.Millisecond)
	// The hub's packets vanish; the gateway's still arrive. Nothing
	// sends a reset.
	relay.Block(false, true)
	noticed := waitFor(t, 15*time.Second, "the tunnel to notice the half-open path", func() bool { return !c.Connected() })
	if noticed > 12*time.Second {
		t.Errorf("half-open path noticed after %s, want about 10s", noticed)
	}
	relay.Block(false, false)
	back := waitFor(t, 10*time.Second, "the tunnel to come back", c.Connected)
	if back > 5*time.Second {
		t.Errorf("tunnel back %s after the path recovered, want within 5s", back)
	}
	time.Sleep(time.Second)
	up.finish(t, h, site)
	gw, hubOpen := watch()
	if gw > 1 || hubOpen > 1 {
		t.Errorf("open connections: gateway at most %d, hub at most %d; want 1 each", gw, hubOpen)
	}
}

func TestOnlyTCPThroughProxy(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	proxy, err := nettest.NewConnectProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.RequireAuth("wardgate", "s3cret")
	c, relay, site := relayClient(t, h, func(o *tunnel.Options) {
		o.Transport = tunnel.TransportAuto
		o.Proxy = &tunnel.Proxy{Addr: proxy.Addr(), Username: "wardgate", Password: "s3cret"}
		o.ReprobeInterval = time.Second
	})
	relay.Block(true, true)
	watch := watchOpen(h, c, site)
	waitFor(t, 20*time.Second, "the tunnel to fall back to TCP", c.Connected)
	st := c.Status()
	if st.Transport != tunnel.TransportTCP || st.Via != proxy.Addr() || st.QUICBlockedSince.IsZero() {
		t.Errorf("status = transport %q via %q quic blocked since %v; want tcp via %s with QUIC marked blocked", st.Transport, st.Via, st.QUICBlockedSince, proxy.Addr())
	}
	up := startUploader(c, "proxied", 5*time.Second, 0)
	time.Sleep(time.Second)
	connects, _, targets := proxy.Stats()
	if connects == 0 || len(targets) == 0 || targets[0] != h.hubAddr() {
		t.Errorf("proxy relayed %d CONNECTs to %v, want at least one to %s", connects, targets, h.hubAddr())
	}
	relay.Block(false, false)
	back := waitFor(t, 10*time.Second, "the tunnel to move back to QUIC", func() bool { return c.Transport() == tunnel.TransportQUIC })
	if back > 5*time.Second {
		t.Errorf("QUIC back %s after UDP returned, want within 5s", back)
	}
	time.Sleep(time.Second)
	up.finish(t, h, site)
	gw, hubOpen := watch()
	if gw != 1 || hubOpen != 1 {
		t.Errorf("open connections: gateway at most %d, hub at most %d; want 1 each", gw, hubOpen)
	}
	if st := h.server().Stats(); st.MaxOpenBySite[site] != 1 || st.Superseded != 0 {
		t.Errorf("hub saw at most %d connections of the site at once and superseded %d, want 1 and 0", st.MaxOpenBySite[site], st.Superseded)
	}
}

func TestProxyRefusesCredentials(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	proxy, err := nettest.NewConnectProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.RequireAuth("wardgate", "right")
	conf, _ := h.credentials(time.Hour)
	c, _ := h.client(conf, func(o *tunnel.Options) {
		o.Transport = tunnel.TransportTCP
		o.Proxy = &tunnel.Proxy{Addr: proxy.Addr(), Username: "wardgate", Password: "wrong"}
	})
	waitFor(t, 10*time.Second, "the proxy's refusal", func() bool { return c.LastError() != nil })
	msg := c.LastError().Error()
	if !strings.Contains(msg, "407") || !strings.Contains(msg, proxy.Addr()) || !strings.Contains(msg, "proxy_username") {
		t.Errorf("error %q, want the 407, the proxy's address and the config keys to set", msg)
	}
}

func TestTLSInspectingProxy(t *testing.T) {
	h := newTestHub(t, nil)
	h.start()
	tests := []struct {
		name     string
		byHubCA  bool
		wantKind string
		wantText string
	}{
		{"foreign certificate", false, "foreign_certificate", "Hospital Inspection CA"},
		{"client certificate stripped", true, "client_certificate_stripped", "received no client certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy, err := nettest.NewConnectProxy()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			proxy.Inspect(inspectionCert(t, h, tc.byHubCA))
			conf, _ := h.credentials(time.Hour)
			c, reg := h.client(conf, func(o *tunnel.Options) {
				o.Transport = tunnel.TransportTCP
				o.Proxy = &tunnel.Proxy{Addr: proxy.Addr()}
			})
			waitFor(t, 10*time.Second, "TLS inspection to be detected", func() bool { return c.Status().State == tunnel.StateInspected })
			st := c.Status()
			if !strings.Contains(st.TLSInspection, tc.wantText) || !strings.Contains(st.TLSInspection, proxy.Addr()) {
				t.Errorf("status says %q, want it to name %q and the proxy %s", st.TLSInspection, tc.wantText, proxy.Addr())
			}
			if v := metricValue(t, reg, "wardgate_tunnel_tls_inspection", "kind", tc.wantKind); v != 1 {
				t.Errorf("wardgate_tunnel_tls_inspection{kind=%q} = %v, want 1", tc.wantKind, v)
			}
			// No quiet retry loop: the next attempt waits about a minute.
			before, _, _ := proxy.Stats()
			time.Sleep(2 * time.Second)
			if after, _, _ := proxy.Stats(); after != before {
				t.Errorf("gateway tried the inspecting proxy %d more times in 2s, want none", after-before)
			}
		})
	}
}

func TestControlChannelGarbage(t *testing.T) {
	lines := []string{
		"garbage that is not json",
		"\x00\x01\x02\xff\xfe",
		`{"type":"format-disk","version":1}`,
		`{"type":`,
		strings.Repeat("A", 200<<10),
		`[1,2,3]`,
		`{"type":"metadata","version":42}`,
	}
	fake := newFakeHub(t, lines)
	var mu sync.Mutex
	var got []tunnel.Notice
	c, reg := fake.client(t, func(n tunnel.Notice) {
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	waitFor(t, 10*time.Second, "the valid notice after the garbage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	if len(got) != 1 || got[0] != (tunnel.Notice{Type: "metadata", Version: 42}) {
		t.Errorf("notices delivered %+v, want only the metadata notice", got)
	}
	mu.Unlock()
	for reason, want := range map[string]float64{"malformed": 4, "oversized": 1, "unknown_type": 1} {
		if v := metricValue(t, reg, "wardgate_tunnel_invalid_notices_total", "reason", reason); v != want {
			t.Errorf("wardgate_tunnel_invalid_notices_total{reason=%q} = %v, want %v", reason, v, want)
		}
	}
	if !c.Connected() || c.Dials() != 1 {
		t.Errorf("after the garbage: connected %t with %d dials, want the first connection still up", c.Connected(), c.Dials())
	}
	if err := upload(c, "after-garbage", 5*time.Second); err != nil {
		t.Errorf("upload after the garbage: %v", err)
	}
}
