package tunnel

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// maxProxyResponse bounds the proxy's response to CONNECT.
const maxProxyResponse = 16 << 10

// Proxy is an HTTP CONNECT proxy for the TCP transport.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr string
	// Username and Password, when Username is set, are sent as Basic
	// proxy credentials.
	Username, Password string
}

// ParseProxy reads a proxy address: "host:port" or
// "http://[user:password@]host[:port]" (port 80 when absent). HTTPS to
// the proxy itself is not supported: the tunnel's own TLS runs inside
// the CONNECT tunnel.
func ParseProxy(raw string) (*Proxy, error) {
	if raw == "" {
		return nil, errors.New("proxy address is empty")
	}
	if !strings.Contains(raw, "://") {
		if _, _, err := net.SplitHostPort(raw); err != nil {
			return nil, fmt.Errorf("proxy %q is neither host:port nor an http:// URL: %w", raw, err)
		}
		return &Proxy{Addr: raw}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("proxy %q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("proxy %q uses scheme %q: only http:// CONNECT proxies are supported", redact(u), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("proxy %q has no host", redact(u))
	}
	p := &Proxy{Addr: u.Host}
	if u.Port() == "" {
		p.Addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if u.User != nil {
		p.Username = u.User.Username()
		p.Password, _ = u.User.Password()
	}
	return p, nil
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}

// ProxyFromEnvironment returns the proxy that HTTPS_PROXY (or
// https_proxy) names for hubAddr, honouring NO_PROXY, or nil for a direct
// connection. The environment is read on every call.
func ProxyFromEnvironment(hubAddr string) (*Proxy, error) {
	u, err := httpproxy.FromEnvironment().ProxyFunc()(&url.URL{Scheme: "https", Host: hubAddr})
	if err != nil {
		return nil, fmt.Errorf("reading HTTPS_PROXY: %w", err)
	}
	if u == nil {
		return nil, nil
	}
	return ParseProxy(u.String())
}

// String names the proxy without its password.
func (p *Proxy) String() string {
	if p.Username != "" {
		return p.Username + "@" + p.Addr
	}
	return p.Addr
}

// ProxyError is a proxy's refusal of CONNECT.
type ProxyError struct {
	Proxy  string
	Target string
	Status int
	// Reason is the status line's text.
	Reason string
}

func (e *ProxyError) Error() string {
	switch e.Status {
	case http.StatusProxyAuthRequired:
		return fmt.Sprintf("proxy %s refused CONNECT to %s: %d %s: set tunnel.proxy_username and tunnel.proxy_password_file to credentials the proxy accepts", e.Proxy, e.Target, e.Status, e.Reason)
	case http.StatusForbidden:
		return fmt.Sprintf("proxy %s refused CONNECT to %s: %d %s: the proxy's policy must allow the hub's address", e.Proxy, e.Target, e.Status, e.Reason)
	}
	return fmt.Sprintf("proxy %s refused CONNECT to %s: %d %s", e.Proxy, e.Target, e.Status, e.Reason)
}

// Dial opens a TCP connection to the proxy and sends it a CONNECT to
// target. The returned connection carries the tunnel's bytes to target.
func (p *Proxy) Dial(ctx context.Context, target string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.Addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to proxy %s: %w", p.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wardgate\r\n", target, target)
	if p.Username != "" {
		cred := base64.StdEncoding.EncodeToString([]byte(p.Username + ":" + p.Password))
		fmt.Fprintf(&b, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sending CONNECT to proxy %s: %w", p.Addr, err)
	}
	br := bufio.NewReaderSize(io.LimitReader(conn, maxProxyResponse), 4096)
	status, reason, err := readConnectResponse(br)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading proxy %s's response to CONNECT: %w", p.Addr, err)
	}
	if status != http.StatusOK {
		conn.Close()
		return nil, &ProxyError{Proxy: p.Addr, Target: target, Status: status, Reason: reason}
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The client speaks first in TLS, so a proxy has nothing of the
		// hub's to send yet. A proxy that sent something is not a CONNECT
		// proxy.
		conn.Close()
		return nil, fmt.Errorf("proxy %s sent data after its CONNECT response, before the gateway sent anything", p.Addr)
	}
	return conn, nil
}

// readConnectResponse reads an HTTP/1.x status line and headers, ignoring
// the headers, and returns the status code and reason. It reads nothing
// past the blank line, so the tunnel's bytes stay in the connection.
func readConnectResponse(br *bufio.Reader) (int, string, error) {
	line, err := readLine(br)
	if err != nil {
		return 0, "", err
	}
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
		return 0, "", fmt.Errorf("status line %q is not HTTP/1.x", truncate(line, 80))
	}
	code, reason, _ := strings.Cut(rest, " ")
	if len(code) != 3 || code[0] < '1' || code[0] > '5' {
		return 0, "", fmt.Errorf("status line %q has no valid status code", truncate(line, 80))
	}
	status := 0
	for _, ch := range code {
		if ch < '0' || ch > '9' {
			return 0, "", fmt.Errorf("status line %q has no valid status code", truncate(line, 80))
		}
		status = status*10 + int(ch-'0')
	}
	for {
		h, err := readLine(br)
		if err != nil {
			return 0, "", fmt.Errorf("reading headers: %w", err)
		}
		if h == "" {
			return status, strings.TrimSpace(reason), nil
		}
	}
}

// readLine reads one CRLF- or LF-terminated line of at most 4 KiB.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("line longer than 4 KiB")
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
