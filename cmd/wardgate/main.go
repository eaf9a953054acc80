// Command wardgate is the hospital edge gateway appliance.
//
//	wardgate init [-config FILE] [-data DIR]   write a commented config and the keys
//	wardgate enroll -hub ADDR -token TOKEN -hub-ca FILE   enrol with a one-time token
//	wardgate enroll -bundle DIR [-config FILE] store a bundle from `wardhub enroll`
//	wardgate serve [-config FILE]              run the gateway
//	wardgate status [-admin ADDR]              print a one-screen summary
//	wardgate devices [-admin ADDR]             list the device inventory
//	wardgate audit verify|export [flags]       check the audit chain; export a time range
//	wardgate token create|list|revoke [flags]  manage API tokens for the admin API and console
//	wardgate backup [-config FILE] FILE        write a consistent backup, also while running
//	wardgate restore [-config FILE] FILE       restore a backup into a fresh data folder
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
  enroll    enrol with the hub: -hub ADDR -token TOKEN -hub-ca FILE, or -bundle DIR
  serve     run the gateway (embedded defaults when there is no config file)
  status    print a one-screen summary of a running gateway
  devices   list the device inventory of a running gateway
  explain   explain the policy decision: explain MANUFACTURER/SERIAL RELEASE
  sbom      components of a device or release, or license findings (-licenses)
  exposure  devices exposed to a vulnerability: exposure CVE-... or GHSA-...
  advisories  import OSV or VEX files: advisories import FILE...
  audit     verify the audit chain or export it: audit verify, audit export
  token     manage API tokens: token create, token list, token revoke
  backup    write a consistent backup of the data folder: backup FILE
  restore   restore a backup into a fresh data folder: restore FILE
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
		return cmdAudit(ctx, args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(ctx, args[1:], stdout)
	case "sbom":
		return cmdSBOM(ctx, args[1:], stdout)
	case "exposure":
		return cmdExposure(ctx, args[1:], stdout)
	case "advisories":
		return cmdAdvisories(ctx, args[1:], stdout)
	case "token":
		return cmdToken(ctx, args[1:], stdout, stderr)
	case "backup":
		return cmdBackup(ctx, args[1:], stdout, stderr)
	case "restore":
		return cmdRestore(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
