package tunnel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/tunnel"
)

// bulkSize is the size of one transfer in BenchmarkBulkTransfer.
const bulkSize = 64 << 20

// discard drops what it is given; it has no ReadFrom, so every copy in
// the benchmark goes through the same 64 KiB buffer.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func drain(r io.Reader) (int64, error) {
	return io.CopyBuffer(discard{}, r, make([]byte, 64<<10))
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// transfersPerOp is how many bulk transfers one benchmark op makes, so
// that a single op (as `make bench` runs) lasts about a second.
const transfersPerOp = 4

// measure makes one untimed transfer to warm the connection up, then
// transfersPerOp transfers per b.N, and reports throughput (from
// SetBytes) and bytes moved per CPU-second of the whole process, which
// holds both ends.
func measure(b *testing.B, transfer func() (int64, error)) {
	b.Helper()
	one := func() int64 {
		n, err := transfer()
		if err != nil {
			b.Fatal(err)
		}
		if n != bulkSize {
			b.Fatalf("transferred %d bytes, want %d", n, bulkSize)
		}
		return n
	}
	one()
	b.SetBytes(bulkSize * transfersPerOp)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	var total int64
	for range b.N {
		for range transfersPerOp {
			total += one()
		}
	}
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(total)/cpu.Seconds()/1e6, "MB/cpu-s")
}

// BenchmarkBulkTransfer moves 64 MiB over loopback four ways. Through the
// tunnel, the real hub serves a target file over HTTP/3 or over HTTP/2.
// The baselines are a bare quic-go stream and TLS over TCP. Every server
// copies the same file in 256 KiB writes, as the hub does.
func BenchmarkBulkTransfer(b *testing.B) {
	h := newTestHub(b, nil)
	h.addTarget("bulk.bin", bulkSize)
	file := filepath.Join(h.repo, "targets", "bulk.bin")
	h.start()
	for _, transport := range []string{tunnel.TransportQUIC, tunnel.TransportTCP} {
		b.Run("tunnel-"+transport, func(b *testing.B) {
			// A site of its own: two clients with one site's credentials
			// would take the hub's one connection from each other.
			conf, _ := h.credentials(time.Hour)
			c, _ := h.client(conf, func(o *tunnel.Options) { o.Transport = transport })
			defer c.Close()
			waitFor2(b, c.Connected)
			measure(b, func() (int64, error) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/tuf/targets/bulk.bin", nil)
				resp, err := c.RoundTrip(req)
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				return drain(resp.Body)
			})
		})
	}
	srvTLS, cliTLS := benchTLS(b)
	b.Run("quic-stream", func(b *testing.B) {
		addr := serveQUIC(b, srvTLS, file)
		ctx := context.Background()
		conn, err := quic.DialAddr(ctx, addr, cliTLS, &quic.Config{KeepAlivePeriod: tunnel.DefaultKeepAlivePeriod, MaxIdleTimeout: tunnel.DefaultMaxIdleTimeout})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		measure(b, func() (int64, error) {
			str, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return 0, err
			}
			if _, err := str.Write([]byte{1}); err != nil {
				return 0, err
			}
			_ = str.Close()
			return drain(str)
		})
	})
	b.Run("tls-tcp", func(b *testing.B) {
		addr := serveTLS(b, srvTLS, file)
		measure(b, func() (int64, error) {
			c, err := tls.Dial("tcp", addr, cliTLS)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			return drain(c)
		})
	})
}

func waitFor2(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("tunnel did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchTLS returns a server and a client config with mutual TLS 1.3, as
// the tunnel uses.
func benchTLS(b *testing.B) (*tls.Config, *tls.Config) {
	b.Helper()
	ca, err := pki.NewAuthority("bench CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: "wardhub"}, DNSNames: []string{"wardhub"}, Lifetime: time.Hour, Server: true})
	if err != nil {
		b.Fatal(err)
	}
	cli, err := hub.IssueGateway(ca, "site-bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{srv}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS13, NextProtos: []string{"bench"}},
		&tls.Config{Certificates: []tls.Certificate{cli}, RootCAs: ca.Pool(), ServerName: "wardhub", MinVersion: tls.VersionTLS13, NextProtos: []string{"bench"}}
}

// serveQUIC writes the file's bytes on every stream.
func serveQUIC(b *testing.B, conf *tls.Config, file string) string {
	b.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", conf, &quic.Config{KeepAlivePeriod: hub.KeepAlivePeriod, MaxIdleTimeout: hub.MaxIdleTimeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					str, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						defer str.Close()
						one := make([]byte, 1)
						if _, err := io.ReadFull(str, one); err != nil {
							return
						}
						f, err := os.Open(file)
						if err != nil {
							return
						}
						defer f.Close()
						_, _ = io.CopyBuffer(str, struct{ io.Reader }{f}, make([]byte, 256<<10))
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// serveTLS writes the file's bytes on every TLS connection.
func serveTLS(b *testing.B, conf *tls.Config, file string) string {
	b.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				f, err := os.Open(file)
				if err != nil {
					return
				}
				defer f.Close()
				_, _ = io.CopyBuffer(c, struct{ io.Reader }{f}, make([]byte, 256<<10))
			}(c)
		}
	}()
	return ln.Addr().String()
}

// overheadRounds is how many transfers each side makes in
// BenchmarkTunnelOverhead.
const overheadRounds = 8

// BenchmarkTunnelOverhead alternates 64 MiB transfers through the tunnel
// over QUIC and through a bare quic-go stream, so that both see the same
// machine load. It reports the tunnel's overhead in CPU per byte (the
// whole process's CPU time, both ends) and in median throughput.
func BenchmarkTunnelOverhead(b *testing.B) {
	h := newTestHub(b, nil)
	h.addTarget("bulk.bin", bulkSize)
	file := filepath.Join(h.repo, "targets", "bulk.bin")
	h.start()
	conf, _ := h.credentials(time.Hour)
	c, _ := h.client(conf, nil)
	waitFor2(b, c.Connected)
	srvTLS, cliTLS := benchTLS(b)
	addr := serveQUIC(b, srvTLS, file)
	ctx := context.Background()
	conn, err := quic.DialAddr(ctx, addr, cliTLS, &quic.Config{KeepAlivePeriod: tunnel.DefaultKeepAlivePeriod, MaxIdleTimeout: tunnel.DefaultMaxIdleTimeout})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	viaTunnel := func() (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/tuf/targets/bulk.bin", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return drain(resp.Body)
	}
	bare := func() (int64, error) {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return 0, err
		}
		if _, err := str.Write([]byte{1}); err != nil {
			return 0, err
		}
		_ = str.Close()
		return drain(str)
	}
	type side struct {
		cpu   time.Duration
		rates []float64
	}
	run := func(s *side, f func() (int64, error)) {
		// Each transfer starts with no garbage of the one before.
		runtime.GC()
		cpu0, start := cpuTime(b), time.Now()
		n, err := f()
		if err != nil || n != bulkSize {
			b.Fatalf("transfer: %d bytes, %v", n, err)
		}
		s.cpu += cpuTime(b) - cpu0
		s.rates = append(s.rates, float64(n)/time.Since(start).Seconds()/1e6)
	}
	var tun, raw side
	run(&tun, viaTunnel) // warm both connections up
	run(&raw, bare)
	tun, raw = side{}, side{}
	b.SetBytes(2 * bulkSize * overheadRounds)
	b.ResetTimer()
	for range b.N {
		for i := range overheadRounds {
			// Alternate which goes first, so neither always follows
			// the other.
			if i%2 == 0 {
				run(&tun, viaTunnel)
				run(&raw, bare)
			} else {
				run(&raw, bare)
				run(&tun, viaTunnel)
			}
		}
	}
	b.StopTimer()
	bytes := float64(bulkSize * overheadRounds * b.N)
	tunEff, rawEff := bytes/tun.cpu.Seconds()/1e6, bytes/raw.cpu.Seconds()/1e6
	tunMed, rawMed := median(tun.rates), median(raw.rates)
	b.ReportMetric(tunEff, "tunnel-MB/cpu-s")
	b.ReportMetric(rawEff, "quic-MB/cpu-s")
	b.ReportMetric(tunMed, "tunnel-MB/s")
	b.ReportMetric(rawMed, "quic-MB/s")
	b.ReportMetric((rawEff/tunEff-1)*100, "cpu-overhead-%")
	b.ReportMetric((rawMed/tunMed-1)*100, "throughput-overhead-%")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
