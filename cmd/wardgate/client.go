package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/store"
)

// adminFlags are the flags of every command that may talk to a running
// gateway: its config (for the admin address and token file), or the
// address and token given directly.
type adminFlags struct {
	fs       *flag.FlagSet
	cfgPath  *string
	admin    *string
	token    *string
	insecure *bool
}

func newAdminFlags(fs *flag.FlagSet) *adminFlags {
	return &adminFlags{
		fs:       fs,
		cfgPath:  configFlag(fs),
		admin:    fs.String("admin", "", "admin listener of the running gateway, host:port (default: admin.listen from the config)"),
		token:    fs.String("token", "", "API token (default: $WARDGATE_TOKEN, then admin.token_file from the config)"),
		insecure: fs.Bool("insecure", false, "skip verifying the admin listener's TLS certificate (self-signed appliances)"),
	}
}

func (f *adminFlags) config() (config.Config, error) {
	return loadConfig(*f.cfgPath, explicitFlag(f.fs, "config"))
}

// adminClient talks to the admin API of a running gateway.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func (f *adminFlags) client(cfg config.Config) (*adminClient, error) {
	addr := *f.admin
	if addr == "" {
		addr = cfg.Admin.Listen
	}
	if addr == "" {
		return nil, errors.New("the admin listener is off (admin.listen is empty): pass -admin or set admin.listen")
	}
	scheme := "http"
	if cfg.Admin.TLSCert != "" {
		scheme = "https"
	}
	if strings.Contains(addr, "://") {
		scheme, addr, _ = strings.Cut(addr, "://")
	}
	tok := *f.token
	if tok == "" {
		tok = os.Getenv("WARDGATE_TOKEN")
	}
	if tok == "" && cfg.Admin.TokenFile != "" {
		b, err := os.ReadFile(config.Path(cfg.CredentialsDir(), cfg.Admin.TokenFile))
		if err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case *f.insecure:
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // requested with -insecure
	case scheme == "https" && cfg.Admin.TLSCert != "":
		// The appliance's own certificate is trusted next to the system
		// roots, so a self-signed admin certificate works on the box.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(config.Path(cfg.DataDir, cfg.Admin.TLSCert)); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &adminClient{base: scheme + "://" + addr, token: tok, http: &http.Client{Transport: tr}}, nil
}

// do sends a request and decodes a JSON response into out (when not nil).
// A non-2xx response becomes an error with the gateway's message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// raw sends a request and returns a 2xx response for the caller to read.
func (c *adminClient) raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.token == "" {
		return nil, errors.New("no API token: pass -token, set WARDGATE_TOKEN, or keep the token from `wardgate init` in admin.token_file")
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching the gateway's admin listener at %s (is `wardgate serve` running?): %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, fmt.Errorf("admin API %s %s: %s: %s", method, path, resp.Status, msg)
	}
	return resp, nil
}

// errGatewayRunning means the database is locked by a running gateway.
var errGatewayRunning = errors.New("the gateway is running")

// offline is the data folder of a stopped gateway, opened by a command.
type offline struct {
	db     *badger.DB
	audit  *audit.Store
	tokens *gateway.Tokens
}

// openOffline opens the database of a stopped gateway. It returns
// errGatewayRunning when `wardgate serve` holds it.
func openOffline(cfg config.Config) (*offline, error) { return openData(cfg, false) }

// openData is openOffline that, with create, makes a new database.
func openData(cfg config.Config, create bool) (*offline, error) {
	dir := filepath.Join(cfg.DataDir, "db")
	if _, err := os.Stat(dir); err != nil && !create {
		return nil, fmt.Errorf("no gateway database in %s: run `wardgate init` first, or pass -config: %w", cfg.DataDir, err)
	}
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		if strings.Contains(err.Error(), "directory lock") || strings.Contains(err.Error(), "resource temporarily unavailable") {
			return nil, fmt.Errorf("%w: %w", errGatewayRunning, err)
		}
		return nil, err
	}
	a, err := audit.Open(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &offline{db: db, audit: a, tokens: gateway.OpenTokens(db)}, nil
}

func (o *offline) Close() error { return o.db.Close() }

// cliActor names the person at the command line in audit records.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli:" + name
}

// wait bounds a request to a running gateway.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}
