// Command wardhub is the manufacturer's side of Wardgate: it creates and
// publishes the TUF repository of releases, enrols gateways, and serves
// gateways over QUIC.
//
//	wardhub repo init DIR
//	wardhub repo add DIR FILE -target PATH -product P -version V -models M[,M] [-sbom FILE]
//	wardhub enroll -data HUBDATA -repo DIR -out BUNDLE
//	wardhub token create -data HUBDATA [-ttl 72h] [-note TEXT] [-hub ADDR]
//	wardhub revoke -data HUBDATA [-reason TEXT] SITE
//	wardhub sites -data HUBDATA
//	wardhub device-cert -data HUBDATA -manufacturer M -serial S -out DIR
//	wardhub serve -data HUBDATA -repo DIR [-listen ADDR] [-admin ADDR]
//	wardhub stats [-admin ADDR]
//	wardhub analytics -data HUBDATA [-format json|csv]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "wardhub:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: wardhub COMMAND [flags]

commands:
  repo init DIR        create a TUF repository in DIR, keys in DIR-keys
  repo add DIR FILE    publish FILE as a release target (see -h)
  enroll               issue a gateway's credentials bundle for a site
  token create         mint a one-time enrolment token for a gateway
  revoke SITE          revoke a site; the hub refuses it from then on
  sites                list enrolled sites
  device-cert          issue a device client certificate (for tests and demos)
  serve                serve gateways over QUIC
  stats                print what a running hub has seen
  analytics            print stored analytics
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	switch args[0] {
	case "repo":
		if len(args) < 2 {
			return errors.New("repo needs a subcommand: init or add")
		}
		switch args[1] {
		case "init":
			return cmdRepoInit(args[2:], stdout)
		case "add":
			return cmdRepoAdd(args[2:], stdout)
		}
		return fmt.Errorf("unknown repo subcommand %q: use init or add", args[1])
	case "enroll":
		return cmdEnroll(args[1:], stdout)
	case "token":
		return cmdToken(args[1:], stdout)
	case "revoke":
		return cmdRevoke(args[1:], stdout)
	case "sites":
		return cmdSites(args[1:], stdout)
	case "device-cert":
		return cmdDeviceCert(args[1:], stdout)
	case "serve":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cmdServe(ctx, args[1:], log)
	case "stats":
		return cmdStats(ctx, args[1:], stdout)
	case "analytics":
		return cmdAnalytics(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
