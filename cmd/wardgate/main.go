// Command wardgate is the hospital edge gateway appliance.
//
//	wardgate init [-config FILE] [-data DIR]   write a commented config and the keys
//	wardgate enroll -bundle DIR [-config FILE] store the hub's credentials bundle
//	wardgate serve [-config FILE]              run the gateway
//	wardgate status [-admin ADDR]              print a one-screen summary
//	wardgate devices [-admin ADDR]             list the device inventory
//	wardgate audit verify [-config FILE]       check the audit chain (gateway stopped)
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
)

// defaultConfigPath is where the Debian package installs the config.
const defaultConfigPath = "/etc/wardgate/wardgate.toml"

const usage = `usage: wardgate COMMAND [flags]

commands:
  init      write a commented config file and the gateway's keys
  enroll    store the credentials bundle that the hub issued
  serve     run the gateway (embedded defaults when there is no config file)
  status    print a one-screen summary of a running gateway
  devices   list the device inventory of a running gateway
  audit     verify the audit chain: audit verify
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "wardgate:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "init":
		return cmdInit(args[1:], stdout)
	case "enroll":
		return cmdEnroll(args[1:], stdout)
	case "serve":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cmdServe(ctx, args[1:], stderr)
	case "status":
		return cmdStatus(ctx, args[1:], stdout)
	case "devices":
		return cmdDevices(ctx, args[1:], stdout)
	case "audit":
		return cmdAudit(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
