package main

import (
	"context"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/cmd/wardhub/hub"
	"github.com/wardgate/wardgate/cmd/wardhub/repo"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/store"
)

func cmdServe(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	repoDir := fs.String("repo", "", "TUF repository folder to serve (required)")
	listen := fs.String("listen", "127.0.0.1:4443", "UDP address for gateway connections (QUIC)")
	listenTCP := fs.String("listen-tcp", "", "TCP address for the HTTP/2 fallback; empty means the same as -listen, \"none\" disables it")
	certLifetime := fs.Duration("cert-lifetime", hub.DefaultCertLifetime, "lifetime of gateway certificates issued at enrolment and renewal")
	admin := fs.String("admin", "127.0.0.1:4480", "TCP address for /metrics, /v1/stats and the analytics API; empty disables")
	fresh := fs.Bool("new", false, "create a new hub identity (gateway CA) when -data has none")
	keys := fs.String("keys", "", "repository keys folder; when it exists the hub re-signs the timestamp before it expires (default REPO-keys)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repoDir == "" {
		return fmt.Errorf("serve needs -repo: the folder `wardhub repo init` created")
	}
	if _, err := os.Stat(filepath.Join(*repoDir, "metadata", "root.json")); err != nil {
		return fmt.Errorf("-repo %s is not a TUF repository: create it with `wardhub repo init`", *repoDir)
	}
	// A mistyped -data would otherwise mint a new gateway CA, and every
	// enrolled gateway would stop trusting the hub.
	if _, err := os.Stat(filepath.Join(*data, "ca", "gateway-ca.pem")); err != nil && !*fresh {
		return fmt.Errorf("hub data folder %s has no gateway CA: check -data, or pass -new to create a new hub identity", *data)
	}
	db, err := store.Open(filepath.Join(*data, "db"), log)
	if err != nil {
		return err
	}
	defer db.Close()
	an, err := analytics.Open(db, analytics.Options{Logger: log})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := hub.New(hub.Options{
		DataDir:       *data,
		RepoDir:       *repoDir,
		ListenAddr:    *listen,
		TCPListenAddr: *listenTCP,
		CertLifetime:  *certLifetime,
		AdminAddr:     *admin,
		DB:            db,
		Telemetry:     an,
		AdminHandler:  an.Handler(),
		Logger:        log,
		Registerer:    reg,
		Gatherer:      reg,
	})
	if err != nil {
		return err
	}
	if *keys == "" {
		*keys = repo.DefaultKeysDir(*repoDir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	if _, err := os.Stat(*keys); err == nil {
		go func() {
			defer close(done)
			keepTimestampFresh(ctx, *repoDir, *keys, log)
		}()
	} else {
		close(done)
		log.Warn("no repository keys: the timestamp is not re-signed and gateways stop offering releases when it expires", "keys", *keys)
	}
	err = srv.Run(ctx)
	cancel()
	<-done
	return err
}

// keepTimestampFresh re-signs the repository's timestamp once half of
// its lifetime has passed, so gateways never see it expire while the hub
// runs. Only the timestamp role changes; its key is the one online key.
func keepTimestampFresh(ctx context.Context, repoDir, keysDir string, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		err := repo.WithLock(repoDir, func() error {
			r, err := repo.Open(repoDir, keysDir)
			if err != nil {
				return err
			}
			if time.Until(r.TimestampExpires()) > repo.TimestampLifetime/2 {
				return nil
			}
			if err := r.RefreshTimestamp(); err != nil {
				return err
			}
			log.Info("timestamp re-signed", "expires", r.TimestampExpires())
			return nil
		})
		if err != nil {
			log.Error("re-signing the timestamp failed; retrying in a minute", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func cmdEnroll(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	repoDir := fs.String("repo", "", "TUF repository whose root the gateway will trust (required)")
	out := fs.String("out", "", "folder to write the gateway's credentials bundle to (required)")
	lifetime := fs.Duration("lifetime", 90*24*time.Hour, "certificate lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repoDir == "" || *out == "" {
		return fmt.Errorf("enroll needs -repo and -out")
	}
	siteID, err := hub.Enroll(*data, *repoDir, *out, *lifetime)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled site %s: credentials in %s\n", siteID, *out)
	return nil
}

func cmdDeviceCert(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("device-cert", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	manufacturer := fs.String("manufacturer", "", "manufacturer name, the certificate's O (required)")
	serial := fs.String("serial", "", "device serial number, the certificate's CN (required)")
	out := fs.String("out", "", "folder for device.pem and device.key (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *manufacturer == "" || *serial == "" || *out == "" {
		return fmt.Errorf("device-cert needs -manufacturer, -serial and -out")
	}
	ca, err := hub.DeviceCA(*data)
	if err != nil {
		return err
	}
	pair, err := ca.IssuePair(pki.Template{
		Subject:  pkix.Name{CommonName: *serial, Organization: []string{*manufacturer}},
		Lifetime: 5 * 365 * 24 * time.Hour,
		Client:   true,
	})
	if err != nil {
		return err
	}
	if err := pki.WritePair(filepath.Join(*out, "device.pem"), filepath.Join(*out, "device.key"), pair); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued device certificate for %s/%s in %s\n", *manufacturer, *serial, *out)
	return nil
}

func cmdAnalytics(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("analytics", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder (the hub must not be running)")
	format := fs.String("format", "table", "output format: table, json or csv")
	filters := map[string]*string{}
	for _, name := range []string{"manufacturer", "model", "version", "device_class", "kind", "name", "from", "to", "group"} {
		help := "only rows whose " + name + " is this value"
		switch name {
		case "from", "to":
			help = "period bound, an RFC 3339 time or YYYY-MM-DD"
		case "group":
			help = "comma-separated dimensions to keep: period, manufacturer, model, version, device_class, metric"
		}
		filters[name] = fs.String(name, "", help)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	values := url.Values{}
	for name, v := range filters {
		if *v != "" {
			values.Set(name, *v)
		}
	}
	q, err := analytics.ParseQuery(values)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(filepath.Join(*data, "db"), log)
	if err != nil {
		return err
	}
	defer db.Close()
	an, err := analytics.Open(db, analytics.Options{Logger: log})
	if err != nil {
		return err
	}
	return an.WriteReport(stdout, q, *format)
}
