package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyslogOptions configure a Forwarder.
type SyslogOptions struct {
	// Store is the audit chain to forward. Required.
	Store *Store
	// Network is "tcp" (RFC 6587 octet counting) or "tls" (RFC 5425).
	Network string
	// Addr is the collector's host:port.
	Addr string
	// TLS configures the "tls" network; its ServerName defaults to the
	// host of Addr.
	TLS *tls.Config
	// Hostname and AppName fill the RFC 5424 header (defaults: the
	// machine's host name and "wardgate").
	Hostname, AppName string
	// Name keys the delivery cursor in the store (default "syslog").
	Name string
	// RetryMin and RetryMax bound the reconnect backoff (defaults 1s and
	// 1m).
	RetryMin, RetryMax time.Duration
	// Logger (default slog.Default()) and Registerer (none when nil).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Forwarder sends every audit entry, in order, to a syslog collector as
// RFC 5424 messages, at least once: it keeps a delivery cursor in the
// store and resumes after it on reconnect and restart. Entries that were
// written to the socket just before a connection broke may be sent twice, and
// the seq and hash in each message let the collector drop duplicates.
type Forwarder struct {
	opts   SyslogOptions
	log    *slog.Logger
	dialer net.Dialer

	mu        sync.Mutex
	delivered uint64
	connected bool
	lastErr   error

	stop      chan struct{}
	stopOnce  sync.Once
	done      chan struct{}
	startOnce sync.Once

	mForwarded prometheus.Counter
	mErrors    prometheus.Counter
}

// NewForwarder checks opts and loads the delivery cursor.
func NewForwarder(opts SyslogOptions) (*Forwarder, error) {
	if opts.Store == nil {
		return nil, errors.New("syslog forwarder needs an audit store")
	}
	switch opts.Network {
	case "tcp", "tls":
	default:
		return nil, fmt.Errorf("syslog transport %q is unknown: use tcp or tls", opts.Network)
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("syslog address %q is not host:port: %w", opts.Addr, err)
	}
	if opts.Network == "tls" {
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.TLS != nil {
			c = opts.TLS.Clone()
		}
		if c.ServerName == "" {
			c.ServerName = host
		}
		opts.TLS = c
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.AppName == "" {
		opts.AppName = "wardgate"
	}
	if opts.Name == "" {
		opts.Name = "syslog"
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(time.Minute, opts.RetryMin)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Forwarder{
		opts:   opts,
		log:    opts.Logger.With("component", "audit-syslog", "addr", opts.Addr),
		dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		mForwarded: prometheus.NewCounter(prometheus.CounterOpts{Name: "wardgate_audit_syslog_forwarded_total",
			Help: "Audit records written to the syslog collector."}),
		mErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "wardgate_audit_syslog_errors_total",
			Help: "Failed connections or writes to the syslog collector."}),
	}
	if f.delivered, err = opts.Store.Cursor(opts.Name); err != nil {
		return nil, err
	}
	if reg := opts.Registerer; reg != nil {
		lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wardgate_audit_syslog_lag_records",
			Help: "Audit records not yet delivered to the syslog collector."}, func() float64 {
			return float64(opts.Store.Head().Seq - min(f.Delivered(), opts.Store.Head().Seq))
		})
		up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wardgate_audit_syslog_connected",
			Help: "1 while the gateway holds a connection to the syslog collector."}, func() float64 {
			if f.Connected() {
				return 1
			}
			return 0
		})
		for _, c := range []prometheus.Collector{f.mForwarded, f.mErrors, lag, up} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering syslog metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Delivered returns the sequence number of the last entry written to the
// collector.
func (f *Forwarder) Delivered() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered
}

// Connected reports whether the forwarder holds a connection.
func (f *Forwarder) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

// LastError returns the last connection or write error, or nil.
func (f *Forwarder) LastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Run forwards until ctx ends or Close is called.
func (f *Forwarder) Run(ctx context.Context) error {
	started := false
	f.startOnce.Do(func() { started = true })
	if !started {
		return errors.New("syslog forwarder is already running")
	}
	defer close(f.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := f.opts.RetryMin
	for ctx.Err() == nil {
		err := f.session(ctx)
		if ctx.Err() != nil {
			break
		}
		f.mErrors.Inc()
		f.mu.Lock()
		f.connected, f.lastErr = false, err
		f.mu.Unlock()
		f.log.Warn("syslog forwarding interrupted; retrying", "err", err, "delivered", f.Delivered(), "retry_in", backoff)
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, f.opts.RetryMax)
	}
	f.mu.Lock()
	f.connected = false
	f.mu.Unlock()
	return nil
}

// Close stops Run and waits for it. It is safe to call more than once,
// and before Run.
func (f *Forwarder) Close() error {
	f.stopOnce.Do(func() { close(f.stop) })
	started := true
	f.startOnce.Do(func() { started = false })
	if started {
		<-f.done
	}
	return nil
}

// session holds one connection and forwards until it fails or ctx ends.
func (f *Forwarder) session(ctx context.Context) error {
	var (
		conn net.Conn
		err  error
	)
	if f.opts.Network == "tls" {
		td := tls.Dialer{NetDialer: &f.dialer, Config: f.opts.TLS}
		conn, err = td.DialContext(ctx, "tcp", f.opts.Addr)
	} else {
		conn, err = f.dialer.DialContext(ctx, "tcp", f.opts.Addr)
	}
	if err != nil {
		return fmt.Errorf("connecting to syslog collector: %w", err)
	}
	defer conn.Close()
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stopWatch()
	f.mu.Lock()
	f.connected, f.lastErr = true, nil
	f.mu.Unlock()
	f.log.Info("connected to syslog collector", "from_seq", f.Delivered()+1)
	// A collector never sends anything, so a read that returns means the
	// connection is gone. TCP accepts writes into a connection the peer
	// has closed, so a batch counts as delivered only when the connection
	// is still up a moment after it was written; otherwise it is sent
	// again on the next connection.
	dead := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		if err == nil {
			err = errors.New("syslog collector sent data")
		}
		dead <- err
	}()
	var buf bytes.Buffer
	for {
		appended := f.opts.Store.Appended()
		from := f.Delivered() + 1
		var batch []Entry
		if err := f.opts.Store.ScanFrom(ctx, from, func(e Entry) bool {
			batch = append(batch, e)
			return len(batch) < 256
		}); err != nil {
			return err
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-dead:
				return fmt.Errorf("syslog collector closed the connection: %w", err)
			case <-appended:
				continue
			}
		}
		buf.Reset()
		for _, e := range batch {
			msg := FormatRFC5424(e, f.opts.Hostname, f.opts.AppName)
			buf.WriteString(strconv.Itoa(len(msg)))
			buf.WriteByte(' ')
			buf.Write(msg)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("writing to syslog collector: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-dead:
			return fmt.Errorf("syslog collector closed the connection after a write: %w", err)
		case <-time.After(confirmDelay):
		}
		last := batch[len(batch)-1].Seq
		if err := f.opts.Store.SetCursor(f.opts.Name, last); err != nil {
			return err
		}
		f.mu.Lock()
		f.delivered = last
		f.mu.Unlock()
		f.mForwarded.Add(float64(len(batch)))
	}
}

// confirmDelay is how long a connection must stay up after a write for
// the batch to count as delivered.
const confirmDelay = 200 * time.Millisecond

// sdID is the structured-data id of Wardgate's audit parameters; 32473
// is the private enterprise number reserved for documentation (RFC 5612).
const sdID = "wardgate@32473"

// FormatRFC5424 renders e as one RFC 5424 message: facility "log audit"
// (13), severity informational, MSGID the action, structured data with
// seq, hash, prev, actor and subject plus one parameter per detail, and a
// UTF-8 MSG (with BOM) holding the record as JSON.
func FormatRFC5424(e Entry, hostname, app string) []byte {
	var b bytes.Buffer
	const pri = 13*8 + 6
	b.WriteString("<" + strconv.Itoa(pri) + ">1 ")
	b.WriteString(e.Record.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	b.WriteByte(' ')
	b.WriteString(headerField(hostname, 255))
	b.WriteByte(' ')
	b.WriteString(headerField(app, 48))
	b.WriteString(" - ")
	b.WriteString(headerField(e.Record.Action, 32))
	b.WriteString(" [" + sdID)
	param := func(name, value string) {
		b.WriteByte(' ')
		b.WriteString(paramName(name))
		b.WriteString(`="`)
		b.WriteString(paramValue(value))
		b.WriteByte('"')
	}
	param("seq", strconv.FormatUint(e.Seq, 10))
	param("hash", e.Hash)
	param("prev", e.Prev)
	param("actor", e.Record.Actor)
	param("subject", e.Record.Subject)
	for _, k := range DetailKeys(e.Record) {
		param("d."+k, e.Record.Details[k])
	}
	b.WriteString("] \xef\xbb\xbf")
	msg, _ := json.Marshal(e.Record)
	b.Write(msg)
	return b.Bytes()
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n bytes, "-" when empty.
func headerField(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// paramName makes s a valid SD-NAME: printable US-ASCII other than '=',
// space, ']' and '"', at most 32 bytes.
func paramName(s string) string {
	out := make([]byte, 0, min(len(s), 32))
	for i := 0; i < len(s) && len(out) < 32; i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return "_"
	}
	return string(out)
}

// paramValue escapes '"', '\' and ']' as RFC 5424 section 6.3.3 requires
// and replaces invalid UTF-8.
func paramValue(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '"', '\\', ']':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
