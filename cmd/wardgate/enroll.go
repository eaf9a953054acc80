package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/gateway"
)

// cmdEnroll enrols the gateway with a hub. With a one-time token the
// gateway makes its key and has the hub sign it. With -bundle it imports
// credentials that `wardhub enroll` generated.
func cmdEnroll(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	hub := fs.String("hub", "", "hub address host:port (default: upstream.hub from the config)")
	token := fs.String("token", "", "one-time enrolment token from `wardhub token create`")
	hubCA := fs.String("hub-ca", "", "PEM file of the hub CA to trust")
	hubPin := fs.String("hub-ca-sha256", "", "SHA-256 fingerprint of the hub CA, instead of -hub-ca")
	force := fs.Bool("force", false, "replace an existing enrolment")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	bundle := fs.String("bundle", "", "import a credentials bundle folder from `wardhub enroll` instead of using a token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, explicitFlag(fs, "config"))
	if err != nil {
		return err
	}
	if *bundle != "" {
		if *token != "" {
			return errors.New("enroll takes either -bundle or -token, not both")
		}
		site, err := gateway.ImportCredentials(cfg, *bundle, *force)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enrolled as %s; credentials in %s\n", site, cfg.CredentialsDir())
		return nil
	}
	if *token == "" {
		return errors.New("enroll needs -token (from `wardhub token create`) or -bundle")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	site, err := gateway.Enroll(ctx, cfg, gateway.EnrollOptions{
		Hub: *hub, Token: *token, HubCAFile: *hubCA, HubCASHA256: *hubPin, Force: *force,
		Logger: newLogger(cfg.Log, os.Stderr).With("component", "enroll"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled as %s; credentials in %s\n", site, cfg.CredentialsDir())
	if cfg.Upstream.Hub == "" {
		fmt.Fprintf(stdout, "set upstream.hub = %q in the config so that `wardgate serve` connects to this hub\n", *hub)
	}
	return nil
}
