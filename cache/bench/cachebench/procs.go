package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/cache"
	"github.com/wardgate/wardgate/cache/blob"
)

// listen binds 127.0.0.1:0 and writes the address to file, for the
// orchestrator to read.
func listen(file string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file+".tmp", []byte(ln.Addr().String()), 0o600); err != nil {
		return nil, err
	}
	return ln, os.Rename(file+".tmp", file)
}

// runUpstream serves a repository folder like the hub does, optionally at
// a bounded rate per response, and counts the body bytes sent per path
// (GET /stats).
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	dir := fs.String("dir", "", "repository folder")
	addrFile := fs.String("addr-file", "", "file to write the listen address to")
	rate := fs.Int64("rate", 0, "bytes per second per response; 0 is unlimited")
	_ = fs.Parse(args)
	var mu sync.Mutex
	sent := map[string]int64{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(sent)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		f, err := os.Open(filepath.Join(*dir, filepath.FromSlash(p)))
		if err != nil || strings.Contains(p, "..") {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		cw := &countingWriter{ResponseWriter: w, rate: *rate, start: time.Now()}
		http.ServeContent(cw, r, "", time.Time{}, f)
		mu.Lock()
		sent[p] += cw.n
		mu.Unlock()
	})
	ln, err := listen(*addrFile)
	if err != nil {
		return err
	}
	return http.Serve(ln, mux)
}

type countingWriter struct {
	http.ResponseWriter
	n     int64
	rate  int64
	start time.Time
}

func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if c.rate > 0 && len(chunk) > 64<<10 {
			chunk = p[:64<<10]
		}
		n, err := c.ResponseWriter.Write(chunk)
		c.n += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
		if c.rate > 0 {
			due := c.start.Add(time.Duration(float64(c.n) / float64(c.rate) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
	}
	return written, nil
}

// runGateway runs the gateway's serving path: badger bounded like the
// gateway's store, the blob store and the TUF mirror refreshed from the
// upstream, with the device routes on plain HTTP and on HTTPS.
func runGateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	dir := fs.String("dir", "", "data folder")
	upstreamURL := fs.String("upstream", "", "upstream repository URL")
	rootFile := fs.String("root", "", "trusted root.json")
	addrFile := fs.String("addr-file", "", "file for the HTTP address")
	tlsAddrFile := fs.String("tls-addr-file", "", "file for the HTTPS address")
	prefetch := fs.String("prefetch", "", "comma-separated targets to cache before serving")
	http2 := fs.Bool("http2", false, "offer HTTP/2 on the HTTPS listener, which the gateway's device API does not")
	_ = fs.Parse(args)
	root, err := os.ReadFile(*rootFile)
	if err != nil {
		return err
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(*dir, "db")).WithLogger(nil).WithSyncWrites(true).
		WithMemTableSize(16 << 20).WithNumMemtables(2).WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20).WithValueLogFileSize(64 << 20).WithNumCompactors(2))
	if err != nil {
		return err
	}
	bs, err := blob.Open(filepath.Join(*dir, "blobs"), db, blob.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	go func() { _ = bs.Run(ctx) }()
	m, err := cache.NewMirror(cache.MirrorOptions{
		Name: "default", DB: db, Blobs: bs, Client: &http.Client{}, BaseURL: *upstreamURL, TrustedRoot: root,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	if err := m.Refresh(ctx); err != nil {
		return err
	}
	if *prefetch != "" {
		if err := m.Prefetch(ctx, strings.Split(*prefetch, ",")...); err != nil {
			return err
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		esc := r.URL.EscapedPath()
		if sha, ok := strings.CutPrefix(esc, "/v1/blobs/sha256/"); ok {
			t, found := m.TargetBySHA256(sha)
			if !found {
				http.NotFound(w, r)
				return
			}
			m.ServeTargetBlob(w, r, t)
			return
		}
		if p, ok := strings.CutPrefix(esc, "/tuf/default/targets/"); ok {
			m.ServeTarget(w, r, p)
			return
		}
		http.NotFound(w, r)
	})
	ln, err := listen(*addrFile)
	if err != nil {
		return err
	}
	tln, err := listen(*tlsAddrFile)
	if err != nil {
		return err
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnContext: cache.ConnContext}
	// Like the gateway's device API, HTTPS offers HTTP/1.1 only unless
	// -http2 is set for the comparison.
	tsrv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnContext: cache.ConnContext,
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	if *http2 {
		tsrv.TLSConfig.NextProtos, tsrv.TLSNextProto = nil, nil
	}
	go func() { _ = tsrv.ServeTLS(tln, "", "") }()
	go func() { _ = srv.Serve(ln) }()
	// SIGTERM closes in order, so the blob store records a clean shutdown
	// and the next start serves at once instead of re-hashing every blob.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	_ = srv.Close()
	_ = tsrv.Close()
	_ = m.Close()
	_ = bs.Close()
	return db.Close()
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wardgate.local"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"wardgate.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
