package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/pki"
)

// collector is a syslog receiver on loopback that reads RFC 6587
// octet-counted frames and keeps the messages.
type collector struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	conn net.Conn
	got  chan struct{}
}

func newCollector(t *testing.T, conf *tls.Config) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	c := &collector{ln: ln, got: make(chan struct{}, 1024)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			go c.read(conn)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); c.drop() })
	return c
}

func (c *collector) read(conn net.Conn) {
	br := bufio.NewReader(conn)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || size <= 0 || size > 1<<20 {
			return
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, string(msg))
		c.mu.Unlock()
		c.got <- struct{}{}
	}
}

func (c *collector) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		if len(c.msgs) >= n {
			out := append([]string(nil), c.msgs...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.got:
		case <-deadline:
			t.Fatalf("collector got %d messages; want %d", len(c.msgs), n)
		}
	}
}

var rfc5424 = regexp.MustCompile(`^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z test-host wardgate - [!-~]{1,32} \[wardgate@32473 seq="(\d+)" hash="[0-9a-f]{64}" prev="[0-9a-f]*" actor="[^"]*" subject="[^"]*"( d\.[!-~]+="(?:[^"\\\]]|\\.)*")*\] \x{FEFF}\{.*\}$`)

func TestSyslogForwarding(t *testing.T) {
	ca, err := pki.NewAuthority("syslog test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}, Lifetime: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cases := []struct {
		name    string
		network string
		server  *tls.Config
		client  *tls.Config
	}{
		{"tcp", "tcp", nil, nil},
		{"tls", "tls", &tls.Config{Certificates: []tls.Certificate{pair}}, &tls.Config{RootCAs: pool, ServerName: "localhost"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, filepath.Join(t.TempDir(), "db"))
			t.Cleanup(func() { _ = db.Close() })
			s, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			col := newCollector(t, tc.server)
			ctx := context.Background()
			record := func(i int) {
				t.Helper()
				if err := s.Record(ctx, Record{Actor: "token:abc", Action: "approval.grant", Subject: "infusion-pump/3.2.0/pump.img", Details: map[string]string{"group": fmt.Sprint("icu ", i), "odd]": `a"b\c`}}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				record(i)
			}
			f, err := NewForwarder(SyslogOptions{Store: s, Network: tc.network, Addr: col.ln.Addr().String(), TLS: tc.client,
				Hostname: "test-host", RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- f.Run(ctx) }()
			t.Cleanup(func() {
				_ = f.Close()
				_ = f.Close()
				if err := <-done; err != nil {
					t.Errorf("Run returned %v", err)
				}
			})
			col.waitFor(t, 3)
			waitUntil(t, func() bool { return f.Delivered() == 3 })
			// The collector drops the connection; later records still arrive,
			// in order, after the forwarder reconnects.
			col.drop()
			for i := 3; i < 8; i++ {
				record(i)
			}
			// Delivery is at least once: an entry written just as the
			// connection broke is sent again, so count distinct entries.
			waitUntil(t, func() bool { return f.Delivered() == 8 })
			seen := map[string]bool{}
			waitUntil(t, func() bool {
				col.mu.Lock()
				defer col.mu.Unlock()
				for _, m := range col.msgs {
					sub := rfc5424.FindStringSubmatch(m)
					if sub == nil {
						t.Fatalf("message is not the RFC 5424 form expected:\n%s", m)
					}
					seen[sub[1]] = true
				}
				return len(seen) == 8
			})
			if c, _ := s.Cursor("syslog"); c != 8 {
				t.Errorf("stored cursor = %d; want 8", c)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewForwarderRejectsBadOptions(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	t.Cleanup(func() { _ = db.Close() })
	s, _ := Open(db)
	cases := []struct {
		name string
		opts SyslogOptions
		want string
	}{
		{"no store", SyslogOptions{Network: "tcp", Addr: "127.0.0.1:514"}, "needs an audit store"},
		{"udp", SyslogOptions{Store: s, Network: "udp", Addr: "127.0.0.1:514"}, `"udp" is unknown`},
		{"no port", SyslogOptions{Store: s, Network: "tcp", Addr: "collector"}, "not host:port"},
	}
	for _, tc := range cases {
		if _, err := NewForwarder(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}
