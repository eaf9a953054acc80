package tunnel_test

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/tunnel"
	"github.com/wardgate/wardgate/gateway/tunnel/nettest"
)

// TestOneConnectionThroughManyFailures runs one gateway through a hub
// crash, a clean hub restart, UDP blocked with fallback through a proxy,
// a proxy that cuts its tunnels, and UDP's return, and counts the
// gateway's connections at both ends the whole time. Each failure is one
// the hub can see (a reset, a close, a TCP teardown), so the hub never
// has to close an older connection on its own.
func TestOneConnectionThroughManyFailures(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, nil)
	h.start()
	proxy, err := nettest.NewConnectProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	c, relay, site := relayClient(t, h, func(o *tunnel.Options) {
		o.Transport = tunnel.TransportAuto
		o.Proxy = &tunnel.Proxy{Addr: proxy.Addr()}
		o.ReprobeInterval = time.Second
	})
	watch := watchOpen(h, c, site)
	up := startUploader(c, "many", 8*time.Second, 0)
	// reconnected waits for a connection newer than the last one seen.
	seen := 0
	reconnected := func(transport, what string) {
		t.Helper()
		waitFor(t, 20*time.Second, what, func() bool { return c.Dials() > seen && c.Transport() == transport })
		seen = c.Dials()
	}
	reconnected(tunnel.TransportQUIC, "the first connection")

	h.kill()
	time.Sleep(300 * time.Millisecond)
	h.start()
	reconnected(tunnel.TransportQUIC, "the tunnel after a hub crash")

	h.shutdown()
	h.start()
	reconnected(tunnel.TransportQUIC, "the tunnel after a clean hub restart")

	// UDP goes away while the hub is restarting, so the gateway finds
	// QUIC silent and falls back to TCP through the proxy.
	h.shutdown()
	relay.Block(true, true)
	h.start()
	reconnected(tunnel.TransportTCP, "the fallback to TCP")

	proxy.CutAll()
	reconnected(tunnel.TransportTCP, "the tunnel after the proxy cut it")

	relay.Block(false, false)
	reconnected(tunnel.TransportQUIC, "the move back to QUIC")
	time.Sleep(time.Second)
	up.finish(t, h, site)

	gw, hubMax := watch()
	if gw != 1 || hubMax != 1 {
		t.Errorf("most connections open at once: gateway %d, hub %d; want 1 and 1", gw, hubMax)
	}
	if got := c.MaxOpen(); got != 1 {
		t.Errorf("gateway's own count of connections open at once = %d, want 1", got)
	}
	st := h.server().Stats()
	if st.MaxOpenBySite[site] != 1 || st.Superseded != 0 {
		t.Errorf("hub: at most %d connections of the site at once, %d superseded; want 1 and 0", st.MaxOpenBySite[site], st.Superseded)
	}
	if c.Dials() < 6 {
		t.Errorf("gateway dialled %d connections, want at least 6 across the failures", c.Dials())
	}
}
