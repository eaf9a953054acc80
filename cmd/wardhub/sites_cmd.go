package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/hub"
)

// cmdToken mints a one-time enrolment token and prints what the
// hospital's installer types on the gateway.
func cmdToken(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("token needs a subcommand: create")
	}
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	ttl := fs.Duration("ttl", 72*time.Hour, "how long the token stays valid")
	note := fs.String("note", "", "label recorded with the site, such as the hospital and ward")
	hubAddr := fs.String("hub", "HUB:443", "hub address to print in the enrol command")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	reg, err := hub.OpenRegistry(*data)
	if err != nil {
		return err
	}
	ca, err := hub.GatewayCA(*data)
	if err != nil {
		return err
	}
	token, err := reg.CreateToken(*ttl, *note)
	if err != nil {
		return err
	}
	fp := hub.CAFingerprint(ca.Cert)
	fmt.Fprintf(stdout, "token:          %s\n", token)
	fmt.Fprintf(stdout, "expires:        %s\n", time.Now().Add(*ttl).UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "hub CA sha256:  %s\n", fp)
	fmt.Fprintf(stdout, "on the gateway: wardgate enroll -hub %s -token %s -hub-ca-sha256 %s\n", *hubAddr, token, fp)
	return nil
}

// cmdRevoke revokes a site: a running hub closes its connections within
// a second and refuses it from then on.
func cmdRevoke(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	reason := fs.String("reason", "", "why, recorded and shown to the gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("revoke needs one site id: wardhub revoke [-reason TEXT] SITE")
	}
	reg, err := hub.OpenRegistry(*data)
	if err != nil {
		return err
	}
	s, err := reg.Revoke(fs.Arg(0), *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s at %s\n", s.ID, s.RevokedAt.Format(time.RFC3339))
	return nil
}

// cmdSites lists enrolled sites.
func cmdSites(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sites", flag.ContinueOnError)
	data := fs.String("data", "wardhub-data", "hub data folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg, err := hub.OpenRegistry(*data)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tENROLLED\tMETHOD\tCERT EXPIRES\tSTATE\tNOTE")
	for _, s := range reg.Sites() {
		state, expires := "active", ""
		if s.Revoked() {
			state = "revoked " + s.RevokedAt.Format(time.RFC3339)
		}
		if n := len(s.Certificates); n > 0 {
			expires = s.Certificates[n-1].NotAfter.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.EnrolledAt.Format(time.RFC3339), s.Method, expires, state, s.Note)
	}
	return tw.Flush()
}
