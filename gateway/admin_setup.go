package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/console"
	"github.com/wardgate/wardgate/policy"
)

// adminState is the admin listener's part of a gateway: API tokens,
// approvals and rollouts, the console, audit forwarding and retention,
// and the last audited offer decisions.
type adminState struct {
	tokens     *Tokens
	rollouts   *rolloutManager
	console    *console.Server
	syslog     *audit.Forwarder
	offerAudit *offerAudit

	mu         sync.Mutex
	exposure   ExposureSource
	lastVerify string
	fails      failLimiter

	// chainOK is 1 after a verification that passed, 0 after one that
	// failed and -1 before the first.
	chainOK float64
}

// ExposureSource answers exposure questions for the console and the
// admin API; the gateway shows "no advisories loaded" without one.
type ExposureSource interface {
	// Exposure returns the devices exposed to a CVE or GHSA id and the
	// fleet's risk summary; an empty id requests the summary alone.
	Exposure(ctx context.Context, id string) (console.Exposure, error)
}

// SetExposureSource installs the exposure source.
func (g *Gateway) SetExposureSource(src ExposureSource) {
	g.admin.mu.Lock()
	defer g.admin.mu.Unlock()
	g.admin.exposure = src
}

// Tokens returns the API token store.
func (g *Gateway) Tokens() *Tokens { return g.admin.tokens }

// newPolicyEvaluator builds the evaluator from the [policy] settings.
func newPolicyEvaluator(cfg config.Config) (*policy.Evaluator, error) {
	pc, err := policyConfig(cfg.Policy)
	if err != nil {
		return nil, err
	}
	return policy.NewEvaluator(pc, systemClock{})
}

// setupAdmin is called at the end of New, after the listeners are bound.
func (g *Gateway) setupAdmin() error {
	a := &adminState{tokens: OpenTokens(g.db), offerAudit: newOfferAudit(), chainOK: -1}
	g.admin = a
	if err := g.audit.Register(g.reg); err != nil {
		return fmt.Errorf("registering audit metrics: %w", err)
	}
	intact := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wardgate_audit_chain_intact",
		Help: "1 when the last audit chain verification passed, 0 when it found a broken record, -1 before the first (at start, then daily)."},
		func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.chainOK
		})
	if err := g.reg.Register(intact); err != nil {
		return fmt.Errorf("registering audit metrics: %w", err)
	}
	var err error
	if a.rollouts, err = newRolloutManager(g); err != nil {
		return err
	}
	if fe, err := newFleetExposure(g); err != nil {
		g.log.Warn("exposure reports unavailable", "err", err)
	} else {
		a.exposure = fe
	}
	if s := g.cfg.Audit.Syslog; s.Address != "" {
		var tc *tls.Config
		if s.Transport == "tls" {
			tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
			if s.CA != "" {
				pem, err := os.ReadFile(config.Path(g.cfg.DataDir, s.CA))
				if err != nil {
					return fmt.Errorf("reading audit.syslog.ca: %w", err)
				}
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pem) {
					return fmt.Errorf("audit.syslog.ca %s contains no PEM certificate: use a PEM bundle of the collector's CA", s.CA)
				}
			}
		}
		a.syslog, err = audit.NewForwarder(audit.SyslogOptions{Store: g.audit, Network: s.Transport, Addr: s.Address, TLS: tc,
			AppName: s.AppName, Logger: g.log, Registerer: g.reg})
		if err != nil {
			return err
		}
	}
	if g.cfg.Admin.Console {
		a.console, err = console.New(console.Options{Backend: consoleBackend{g}, SessionLifetime: time.Duration(g.cfg.Admin.SessionLifetime), Logger: g.log})
		if err != nil {
			return err
		}
	}
	if c := g.cfg.Admin; c.TLSCert != "" && g.adminLn != nil {
		pair, err := tls.LoadX509KeyPair(config.Path(g.cfg.DataDir, c.TLSCert), config.Path(g.cfg.DataDir, c.TLSKey))
		if err != nil {
			return fmt.Errorf("loading admin.tls_cert and admin.tls_key: %w", err)
		}
		g.adminLn = tls.NewListener(g.adminLn, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	}
	return nil
}

// runAdmin runs audit forwarding, retention and rollout ticks until ctx
// ends.
func (g *Gateway) runAdmin(ctx context.Context) {
	a := g.admin
	var wg sync.WaitGroup
	if a.syslog != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.syslog.Run(ctx)
		}()
	}
	if keep := time.Duration(g.cfg.Audit.Retention); keep > 0 {
		var limit func() uint64
		if a.syslog != nil {
			limit = a.syslog.Delivered
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.audit.Retain(ctx, keep, limit, func(res audit.PruneResult, err error) {
				switch {
				case err != nil && !errors.Is(err, context.Canceled):
					g.log.Error("audit retention failed", "err", err)
				case res.Removed > 0:
					g.log.Info("audit records past retention pruned", "first", res.First, "last", res.Last, "removed", res.Removed)
				}
				if res.HeldBack > 0 {
					g.log.Warn("audit records past retention kept: the syslog collector has not received them", "held_back", res.HeldBack)
				}
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.rollouts.run(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.verifyLoop(ctx)
	}()
	wg.Wait()
	if a.syslog != nil {
		_ = a.syslog.Close()
	}
}

// verifyLoop verifies the audit chain shortly after start and then once a
// day, logging and alerting on a broken record.
func (g *Gateway) verifyLoop(ctx context.Context) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := g.verifyAudit(ctx); err != nil && ctx.Err() == nil {
			g.log.Error("audit chain verification failed", "good_entries", n, "err", err)
		}
		t.Reset(24 * time.Hour)
	}
}

// rolloutCheckIn feeds a device's check-in to its rollouts.
func (g *Gateway) rolloutCheckIn(ctx context.Context, device, version string) {
	if g.admin == nil {
		return
	}
	g.admin.rollouts.deviceEvent(ctx, "", policy.Event{Kind: policy.EventCheckIn, At: time.Now().UTC(), Device: device, Version: version})
}

// rolloutInstall feeds a device's install report to the rollouts of target.
func (g *Gateway) rolloutInstall(ctx context.Context, device, target string, ok bool, detail string) {
	if g.admin == nil {
		return
	}
	g.admin.rollouts.deviceEvent(ctx, target, policy.Event{Kind: policy.EventInstall, At: time.Now().UTC(), Device: device, OK: ok, Detail: detail})
}
