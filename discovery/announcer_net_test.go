package discovery

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAnnouncerSeenByAvahiBrowseOnEachVLAN(t *testing.T) {
	vlans := newVLANs(t, 3)
	var daemons []*avahiDaemon
	for _, v := range vlans {
		daemons = append(daemons, startAvahi(t, v, true))
	}
	var names []string
	for _, v := range vlans {
		names = append(names, v.gwIf)
	}
	a, err := NewAnnouncer(AnnouncerOptions{Interfaces: names, Instance: "Wardgate test", Host: "wardgate-test", Port: 8443, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewAnnouncer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		stop()
		a.Close()
	})

	// Listen for the goodbye on the first VLAN before anything stops.
	goodbye := listenForGoodbye(t, vlans[0], "Wardgate test")

	for i, v := range vlans {
		var lines [][]string
		waitFor(t, 20*time.Second, func() (bool, string) {
			lines = daemons[i].browse(t, GatewayServiceType)
			return len(lines) > 0, "avahi-browse resolved no " + GatewayServiceType + " service on " + v.devNS
		})
		for _, f := range lines {
			// =;IFACE;PROTO;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT
			if len(f) < 10 {
				t.Fatalf("avahi-browse line %q has %d fields, want 10", strings.Join(f, ";"), len(f))
			}
			// avahi-browse -p writes bytes outside [A-Za-z0-9-] as \DDD.
			if name := unescapePresentation(f[3]); name != "Wardgate test" || f[6] != "wardgate-test.local" || f[8] != "8443" {
				t.Errorf("VLAN %s: resolved name %q host %q port %q, want Wardgate test, wardgate-test.local, 8443", v.tag, name, f[6], f[8])
			}
			if f[7] != v.gwAddr.String() {
				t.Errorf("VLAN %s: avahi-browse resolved address %s, want only this VLAN's %s", v.tag, f[7], v.gwAddr)
			}
			if !strings.Contains(f[9], `"txtvers=1"`) || !strings.Contains(f[9], `"api=8443"`) {
				t.Errorf("VLAN %s: TXT %s, want txtvers=1 and api=8443", v.tag, f[9])
			}
		}
	}

	if err := stop(); err != nil {
		t.Errorf("Announcer.Run: %v", err)
	}
	select {
	case <-goodbye:
	case <-time.After(5 * time.Second):
		t.Error("no goodbye for the gateway service within 5s of stopping the announcer")
	}
}

// listenForGoodbye opens an mDNS socket on v's device side and returns a
// channel that is closed when a goodbye (PTR with TTL 0) for instance
// arrives.
func listenForGoodbye(t testing.TB, v *vlan, instance string) <-chan struct{} {
	t.Helper()
	var conn *mdnsConn
	err := inNetns(v.devNS, func() error {
		n, err := resolveInterface(v.devIf)
		if err != nil {
			return err
		}
		conn, err = listenMDNS([]netInterface{n})
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s: %v", v.devNS, err)
	}
	t.Cleanup(func() { conn.close() })
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 9000)
		for {
			n, _, err := conn.read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			resp, err := parseResponse(buf[:n], serviceFQDN(GatewayServiceType))
			if err != nil {
				continue
			}
			for _, p := range resp.ptrs {
				if p.instance == instance && p.ttl == 0 {
					close(got)
					return
				}
			}
		}
	}()
	return got
}
