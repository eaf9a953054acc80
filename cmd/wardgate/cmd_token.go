package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/console"
)

const tokenUsage = `usage: wardgate token COMMAND [flags]

  create -name NAME -role viewer|operator|approver|admin [-ttl 720h]
  list
  revoke ID

On a stopped gateway these work on its data folder directly (as root or
the wardgate user); on a running one they go through the admin API with
an admin token (-token, $WARDGATE_TOKEN or admin.token_file).
`

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	af := newAdminFlags(fs)
	switch args[0] {
	case "create":
		name := fs.String("name", "", "who or what the token is for, such as a person's name (required)")
		role := fs.String("role", "viewer", "viewer, operator, approver or admin")
		ttl := fs.Duration("ttl", 0, "lifetime such as 720h; 0 means no expiry")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		r, err := console.ParseRole(*role)
		if err != nil {
			return err
		}
		return tokenCreate(ctx, af, *name, r, *ttl, stdout)
	case "list":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return tokenList(ctx, af, stdout)
	case "revoke":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("token revoke needs the token's id (see `wardgate token list`)")
		}
		return tokenRevoke(ctx, af, fs.Arg(0), stdout)
	}
	return fmt.Errorf("unknown token command %q\n%s", args[0], tokenUsage)
}

func tokenCreate(ctx context.Context, af *adminFlags, name string, role gateway.Role, ttl time.Duration, stdout io.Writer) error {
	cfg, err := af.config()
	if err != nil {
		return err
	}
	off, err := openOffline(cfg)
	if err == nil {
		defer off.Close()
		secret, info, err := gateway.CreateToken(ctx, off.tokens, off.audit, cliActor(), name, role, ttl)
		if err != nil {
			return err
		}
		printNewToken(stdout, secret, info)
		return nil
	}
	if !errors.Is(err, errGatewayRunning) {
		return err
	}
	c, err := af.client(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req := gateway.TokenRequest{Name: name, Role: role}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	var resp gateway.TokenResponse
	if err := c.do(ctx, "POST", "/v1/tokens", req, &resp); err != nil {
		return err
	}
	printNewToken(stdout, resp.Token, resp.Info)
	return nil
}

func printNewToken(w io.Writer, secret string, info gateway.TokenInfo) {
	fmt.Fprintf(w, "created token %s for %q with role %s", info.ID, info.Name, info.Role)
	if !info.ExpiresAt.IsZero() {
		fmt.Fprintf(w, ", expires %s", info.ExpiresAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\n%s\nThe token is shown only now; the gateway keeps only its hash.\n", secret)
}

func tokenList(ctx context.Context, af *adminFlags, stdout io.Writer) error {
	cfg, err := af.config()
	if err != nil {
		return err
	}
	var list []gateway.TokenInfo
	off, err := openOffline(cfg)
	switch {
	case err == nil:
		defer off.Close()
		if list, err = off.tokens.List(ctx); err != nil {
			return err
		}
	case errors.Is(err, errGatewayRunning):
		c, err := af.client(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := withTimeout(ctx)
		defer cancel()
		if err := c.do(ctx, "GET", "/v1/tokens", nil, &list); err != nil {
			return err
		}
	default:
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tBY\tEXPIRES\tSTATUS")
	now := time.Now()
	for _, t := range list {
		status := "active"
		switch {
		case !t.RevokedAt.IsZero():
			status = "revoked " + t.RevokedAt.Format("2006-01-02")
		case !t.Active(now):
			status = "expired"
		}
		exp := "never"
		if !t.ExpiresAt.IsZero() {
			exp = t.ExpiresAt.Format("2006-01-02")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.Format("2006-01-02 15:04"), t.CreatedBy, exp, status)
	}
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, af *adminFlags, id string, stdout io.Writer) error {
	cfg, err := af.config()
	if err != nil {
		return err
	}
	off, err := openOffline(cfg)
	var info gateway.TokenInfo
	switch {
	case err == nil:
		defer off.Close()
		if info, err = gateway.RevokeToken(ctx, off.tokens, off.audit, cliActor(), id); err != nil {
			return err
		}
	case errors.Is(err, errGatewayRunning):
		c, err := af.client(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := withTimeout(ctx)
		defer cancel()
		if err := c.do(ctx, "POST", "/v1/tokens/"+id+"/revoke", nil, &info); err != nil {
			return err
		}
	default:
		return err
	}
	fmt.Fprintf(stdout, "revoked token %s (%s, %s)\n", info.ID, info.Name, info.Role)
	return nil
}

// bootstrapToken creates the first admin token when the store has none
// and writes it to admin.token_file. It is part of `wardgate init`.
func bootstrapToken(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	off, err := openData(cfg, true)
	if err != nil {
		return fmt.Errorf("opening the database for the first admin token: %w", err)
	}
	defer off.Close()
	list, err := off.tokens.List(ctx)
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.Role == gateway.RoleAdmin && t.Active(time.Now()) {
			fmt.Fprintf(stdout, "an admin token exists already (%s); create more with `wardgate token create`\n", t.ID)
			return nil
		}
	}
	secret, info, err := gateway.CreateToken(ctx, off.tokens, off.audit, cliActor(), "first admin (wardgate init)", gateway.RoleAdmin, 0)
	if err != nil {
		return err
	}
	if cfg.Admin.TokenFile == "" {
		printNewToken(stdout, secret, info)
		return nil
	}
	name := config.Path(cfg.CredentialsDir(), cfg.Admin.TokenFile)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(name, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the first admin token: %w", err)
	}
	fmt.Fprintf(stdout, "first admin token %s written to %s (mode 0600); log in to the console with it, create personal tokens, then revoke it\n", info.ID, name)
	return nil
}
