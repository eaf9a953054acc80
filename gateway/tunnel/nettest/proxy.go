package nettest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ConnectProxy is an HTTP CONNECT proxy on loopback.
type ConnectProxy struct {
	ln net.Listener

	mu       sync.Mutex
	username string
	password string
	refuse   int
	inspect  *tls.Certificate
	conns    map[net.Conn]struct{}
	connects int
	denied   int
	targets  []string
	closed   bool
	wg       sync.WaitGroup
}

// NewConnectProxy starts a proxy on a loopback port.
func NewConnectProxy() (*ConnectProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &ConnectProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *ConnectProxy) Addr() string { return p.ln.Addr().String() }

// RequireAuth makes the proxy answer 407 unless the request carries
// these Basic credentials.
func (p *ConnectProxy) RequireAuth(username, password string) {
	p.mu.Lock()
	p.username, p.password = username, password
	p.mu.Unlock()
}

// Refuse makes the proxy answer every CONNECT with status; 0 restores
// normal service.
func (p *ConnectProxy) Refuse(status int) {
	p.mu.Lock()
	p.refuse = status
	p.mu.Unlock()
}

// Inspect makes the proxy terminate the client's TLS with cert and open
// its own TLS session to the target, relaying the plaintext between
// them, as a TLS-inspecting proxy does. It sends no client certificate
// upstream, because it has none of the client's. Nil turns it off.
func (p *ConnectProxy) Inspect(cert *tls.Certificate) {
	p.mu.Lock()
	p.inspect = cert
	p.mu.Unlock()
}

// Stats returns how many CONNECTs were relayed and refused, and the
// targets asked for.
func (p *ConnectProxy) Stats() (connects, denied int, targets []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connects, p.denied, append([]string(nil), p.targets...)
}

// Active returns the number of client connections open now.
func (p *ConnectProxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// CutAll closes every open tunnel, as a proxy restart does.
func (p *ConnectProxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy and its tunnels.
func (p *ConnectProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.CutAll()
	p.wg.Wait()
	return err
}

func (p *ConnectProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
				c.Close()
			}()
			p.handle(c)
		}()
	}
}

func (p *ConnectProxy) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	p.mu.Lock()
	user, pass, refuse, inspect := p.username, p.password, p.refuse, p.inspect
	p.targets = append(p.targets, req.Host)
	p.mu.Unlock()
	deny := func(status int) {
		p.mu.Lock()
		p.denied++
		p.mu.Unlock()
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n", status, http.StatusText(status))
		if status == http.StatusProxyAuthRequired {
			io.WriteString(c, "Proxy-Authenticate: Basic realm=\"hospital\"\r\n")
		}
		io.WriteString(c, "\r\n")
	}
	switch {
	case req.Method != http.MethodConnect:
		deny(http.StatusMethodNotAllowed)
		return
	case refuse != 0:
		deny(refuse)
		return
	case user != "" && !basicOK(req.Header.Get("Proxy-Authorization"), user, pass):
		deny(http.StatusProxyAuthRequired)
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		deny(http.StatusBadGateway)
		return
	}
	defer up.Close()
	p.mu.Lock()
	p.connects++
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, up)
		p.mu.Unlock()
	}()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	var client net.Conn = &bufferedConn{Conn: c, r: br}
	var server net.Conn = up
	if inspect != nil {
		ct := tls.Server(client, &tls.Config{Certificates: []tls.Certificate{*inspect}, NextProtos: []string{"h2"}})
		if err := ct.Handshake(); err != nil {
			return
		}
		st := tls.Client(up, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ct.ConnectionState().NegotiatedProtocol}}) //nolint:gosec // an inspecting proxy of a test
		if err := st.Handshake(); err != nil {
			return
		}
		client, server = ct, st
	}
	relay(client, server)
}

func basicOK(header, user, pass string) bool {
	raw, ok := strings.CutPrefix(header, "Basic ")
	if !ok {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(raw)
	return err == nil && string(dec) == user+":"+pass
}

// relay copies both ways until either side ends, then closes both.
func relay(a, b net.Conn) {
	var once sync.Once
	done := make(chan struct{})
	stop := func() {
		once.Do(func() {
			a.Close()
			b.Close()
			close(done)
		})
	}
	go func() { _, _ = io.Copy(a, b); stop() }()
	go func() { _, _ = io.Copy(b, a); stop() }()
	<-done
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.r.Buffered() > 0 {
		return b.r.Read(p)
	}
	return b.Conn.Read(p)
}
