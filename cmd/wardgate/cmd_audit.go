package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
)

const auditUsage = `usage: wardgate audit COMMAND [flags]

  verify                                    check the hash chain; names the first broken record
  export [-from T] [-to T] [-format jsonl|csv] [-o FILE]
                                            write records in a time range (T: 2026-03-01 or RFC 3339)
`

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	af := newAdminFlags(fs)
	switch args[0] {
	case "verify":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return auditVerify(ctx, af, stdout)
	case "export":
		from := fs.String("from", "", "first time to include (2026-03-01 or RFC 3339)")
		to := fs.String("to", "", "time to stop before (2026-03-01 or RFC 3339)")
		format := fs.String("format", "jsonl", "jsonl or csv")
		out := fs.String("o", "", "output file (default standard output)")
		action := fs.String("action", "", "only actions containing this, such as approval.")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return auditExport(ctx, af, *from, *to, *format, *action, *out, stdout, stderr)
	}
	return fmt.Errorf("unknown audit command %q\n%s", args[0], auditUsage)
}

func auditVerify(ctx context.Context, af *adminFlags, stdout io.Writer) error {
	cfg, err := af.config()
	if err != nil {
		return err
	}
	off, err := openOffline(cfg)
	switch {
	case err == nil:
		defer off.Close()
		n, err := off.audit.Verify(ctx)
		if err != nil {
			return fmt.Errorf("audit chain verification failed after %d good entries: %w", n, err)
		}
		fmt.Fprintf(stdout, "audit chain intact: %d entries\n", n)
		return nil
	case errors.Is(err, errGatewayRunning):
		c, err := af.client(cfg)
		if err != nil {
			return err
		}
		var res gateway.VerifyResult
		if err := c.do(ctx, "POST", "/v1/audit/verify", nil, &res); err != nil {
			return err
		}
		if !res.OK {
			return fmt.Errorf("audit chain verification failed after %d good entries: %s", res.Entries, res.Error)
		}
		fmt.Fprintf(stdout, "audit chain intact: %d entries\n", res.Entries)
		return nil
	}
	return err
}

func auditExport(ctx context.Context, af *adminFlags, from, to, format, action, out string, stdout, stderr io.Writer) error {
	f, err := audit.ParseFormat(format)
	if err != nil {
		return err
	}
	fromT, err := gateway.ParseTime(from)
	if err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	toT, err := gateway.ParseTime(to)
	if err != nil {
		return fmt.Errorf("-to: %w", err)
	}
	cfg, err := af.config()
	if err != nil {
		return err
	}
	var w io.Writer = stdout
	var file *os.File
	if out != "" {
		if file, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	prog := newProgress(stderr, "audit export")
	cw := &countingWriter{w: w, fn: func(n int64) { prog.update(n, 0, "records") }}
	off, err := openOffline(cfg)
	switch {
	case err == nil:
		defer off.Close()
		res, err := off.audit.Export(ctx, cw, f, audit.Filter{From: fromT, To: toT, Action: action}, nil)
		if err != nil {
			return err
		}
		_ = off.audit.Record(ctx, audit.Record{Actor: cliActor(), Action: "audit.export", Subject: "audit", Details: map[string]string{
			"format": string(f), "entries": fmt.Sprint(res.Entries), "from": from, "to": to}})
		prog.finish(fmt.Sprintf("%d records (%d to %d)", res.Entries, res.FirstSeq, res.LastSeq))
	case errors.Is(err, errGatewayRunning):
		c, err := af.client(cfg)
		if err != nil {
			return err
		}
		q := url.Values{"format": {string(f)}, "from": {from}, "to": {to}, "action": {action}}
		resp, err := c.raw(ctx, "GET", "/v1/audit/export?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(cw, resp.Body); err != nil {
			return fmt.Errorf("receiving the export: %w", err)
		}
		prog.finish(sizeText(cw.n) + " received")
	default:
		return err
	}
	if file != nil {
		return file.Sync()
	}
	return nil
}
