// Command devicesim runs simulated medical devices against a Wardgate
// gateway for demos, tests and load runs.
//
//	devicesim -gateway https://127.0.0.1:8443 -gateway-ca CA.pem \
//	  -device-ca-cert device-ca.pem -device-ca-key device-ca.key \
//	  -profile IP-200:B:3.1.0:infusion-pump:8 [-profile ...] [-tuf-root root.json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/cmd/devicesim/sim"
	"github.com/wardgate/wardgate/gateway/pki"
)

type profiles []sim.Profile

func (p *profiles) String() string { return fmt.Sprint(*p) }

// Set parses MODEL:HW:VERSION:CLASS:COUNT.
func (p *profiles) Set(s string) error {
	f := strings.Split(s, ":")
	if len(f) != 5 {
		return fmt.Errorf("invalid profile %q: use MODEL:HW:VERSION:CLASS:COUNT", s)
	}
	n, err := strconv.Atoi(f[4])
	if err != nil || n < 1 || n > sim.MaxDevices {
		return fmt.Errorf("invalid device count %q in profile %q: use 1 to %d", f[4], s, sim.MaxDevices)
	}
	for i, part := range f[:3] {
		if strings.TrimSpace(part) == "" {
			return fmt.Errorf("invalid profile %q: %s is empty", s, []string{"MODEL", "HW", "VERSION"}[i])
		}
	}
	*p = append(*p, sim.Profile{Model: f[0], HardwareRevision: f[1], Version: f[2], DeviceClass: f[3], Count: n})
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "devicesim:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devicesim", flag.ContinueOnError)
	var ps profiles
	fs.Var(&ps, "profile", "device group MODEL:HW:VERSION:CLASS:COUNT (repeatable)")
	gw := fs.String("gateway", "https://127.0.0.1:8443", "gateway device API base URL")
	gwCA := fs.String("gateway-ca", "", "PEM CA that signed the gateway's device API certificate (required)")
	caCert := fs.String("device-ca-cert", "", "device CA certificate, PEM (required)")
	caKey := fs.String("device-ca-key", "", "device CA private key, PEM (required)")
	manufacturer := fs.String("manufacturer", "Acme Medical", "manufacturer name in each device certificate")
	prefix := fs.String("serial-prefix", "SIM", "prefix of the generated serial numbers")
	tufRoot := fs.String("tuf-root", "", "trusted TUF root; with it every -tuf-every-th device verifies with go-tuf")
	tufEvery := fs.Int("tuf-every", 4, "which devices run a go-tuf client (every Nth)")
	repo := fs.String("repository", "default", "repository name on the gateway's mirror paths")
	events := fs.Int("telemetry-events", 10, "telemetry events each device sends")
	concurrency := fs.Int("concurrency", 0, "devices running at once (0: all)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	jsonOut := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gwCA == "" || *caCert == "" || *caKey == "" {
		return errors.New("devicesim needs -gateway-ca, -device-ca-cert and -device-ca-key")
	}
	if len(ps) == 0 {
		return errors.New("devicesim needs at least one -profile")
	}
	pool, err := pki.LoadPool(*gwCA)
	if err != nil {
		return err
	}
	ca, err := pki.LoadAuthority(*caCert, *caKey)
	if err != nil {
		return err
	}
	var root []byte
	if *tufRoot != "" {
		if root, err = os.ReadFile(*tufRoot); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sum, err := sim.Run(ctx, sim.Options{
		GatewayURL:      strings.TrimSuffix(*gw, "/"),
		GatewayCA:       pool,
		DeviceCA:        ca,
		Manufacturer:    *manufacturer,
		SerialPrefix:    *prefix,
		Profiles:        ps,
		TUFRoot:         root,
		TUFEvery:        *tufEvery,
		Repository:      *repo,
		TelemetryEvents: *events,
		Concurrency:     *concurrency,
		Logger:          slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	printSummary(stdout, sum)
	if sum.Errors > 0 {
		return fmt.Errorf("%d simulated devices failed", sum.Errors)
	}
	return nil
}

func printSummary(w io.Writer, s sim.Summary) {
	fmt.Fprintf(w, "devices checked in:      %d\n", s.CheckedIn)
	fmt.Fprintf(w, "releases offered:        %d\n", s.Offered)
	fmt.Fprintf(w, "releases withheld:\n")
	for _, code := range s.SortedReasons() {
		example := ""
		for _, d := range s.Devices {
			for _, wh := range d.Withheld {
				if len(wh.Reasons) > 0 && wh.Reasons[0].Code == code && example == "" {
					example = wh.Reasons[0].Message
				}
			}
		}
		fmt.Fprintf(w, "  %-22s %3d  e.g. %q\n", code, s.WithheldByReason[code], example)
	}
	fmt.Fprintf(w, "downloads verified:      %d (hashes), %d of them also with go-tuf\n", s.DownloadsVerified, s.TUFVerified)
	fmt.Fprintf(w, "devices updated:         %d\n", s.Updated)
	fmt.Fprintf(w, "telemetry events sent:   %d\n", s.TelemetryEvents)
	if s.Errors > 0 {
		fmt.Fprintf(w, "device errors:           %d\n", s.Errors)
		for _, d := range s.Devices {
			if d.Err != "" {
				fmt.Fprintf(w, "  %s: %s\n", d.Serial, d.Err)
			}
		}
	}
}
