package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/config"
)

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	af := newAdminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("backup needs the output file: wardgate backup FILE")
	}
	out := fs.Arg(0)
	cfg, err := af.config()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".part-*")
	if err != nil {
		return fmt.Errorf("creating the backup file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	prog := newProgress(stderr, "backup")
	var m gateway.BackupManifest
	off, err := openOffline(cfg)
	switch {
	case err == nil:
		defer off.Close()
		m, err = gateway.WriteBackup(ctx, tmp, gateway.BackupSource{DB: off.db, DataDir: cfg.DataDir, Site: readSite(cfg.CredentialsDir()), Audit: off.audit},
			func(p gateway.Progress) { prog.update(p.Done, p.Total, p.Item) })
		if err != nil {
			return err
		}
		_ = off.audit.Record(ctx, audit.Record{Actor: cliActor(), Action: "backup.create", Subject: "data", Details: map[string]string{"file": out, "blobs": fmt.Sprint(m.Blobs)}})
	case errors.Is(err, errGatewayRunning):
		if m, err = backupOnline(ctx, af, cfg, tmp, prog); err != nil {
			return err
		}
	default:
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("moving the backup into place: %w", err)
	}
	prog.finish(fmt.Sprintf("wrote %s: database %s, %d blobs (%s), %d files, audit head %d", out, sizeText(m.DBBytes), m.Blobs, sizeText(m.BlobBytes), m.Files, m.AuditHead))
	return nil
}

// backupOnline streams a backup from the running gateway's admin API. The
// manifest comes first, so its sizes drive the progress bar.
func backupOnline(ctx context.Context, af *adminFlags, cfg config.Config, w io.Writer, prog *progress) (gateway.BackupManifest, error) {
	var m gateway.BackupManifest
	c, err := af.client(cfg)
	if err != nil {
		return m, err
	}
	resp, err := c.raw(ctx, "GET", "/v1/backup", nil)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	cw := &countingWriter{w: w}
	tr := tar.NewReader(io.TeeReader(resp.Body, cw))
	if hdr, err := tr.Next(); err != nil || hdr.Size > 1<<20 {
		return m, fmt.Errorf("the gateway's backup stream does not start with a manifest: %v", err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return m, err
	}
	if m, err = gateway.ParseBackupManifest(data); err != nil {
		return m, err
	}
	cw.fn = func(n int64) { prog.update(n, m.TotalBytes(), "receiving") }
	if _, err := io.Copy(cw, resp.Body); err != nil {
		return m, fmt.Errorf("receiving the backup: %w", err)
	}
	if st := resp.Trailer.Get("X-Wardgate-Backup-Status"); st != "ok" {
		return m, fmt.Errorf("the gateway reports the backup %s", strings.TrimSpace(st))
	}
	return m, nil
}

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("restore needs the backup file: wardgate restore FILE")
	}
	cfg, err := loadConfig(*cfgPath, explicitFlag(fs, "config"))
	if err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	prog := newProgress(stderr, "restore")
	m, err := gateway.RestoreBackup(ctx, f, cfg.DataDir, slog.New(slog.DiscardHandler), func(p gateway.Progress) { prog.update(p.Done, p.Total, p.Item) })
	if err != nil {
		return err
	}
	off, err := openOffline(cfg)
	if err != nil {
		return err
	}
	defer off.Close()
	n, verr := off.audit.Verify(ctx)
	_ = off.audit.Record(ctx, audit.Record{Actor: cliActor(), Action: "backup.restore", Subject: "data", Details: map[string]string{
		"file": fs.Arg(0), "created": m.Created.Format("2006-01-02T15:04:05Z"), "site": m.Site, "chain_ok": fmt.Sprint(verr == nil)}})
	prog.finish(fmt.Sprintf("restored the backup of %s (site %s) into %s: %d blobs, %d files; audit chain %d entries", m.Created.Format("2006-01-02 15:04 MST"), m.Site, cfg.DataDir, m.Blobs, m.Files, n))
	if verr != nil {
		return fmt.Errorf("the restored audit chain does not verify: %w", verr)
	}
	fmt.Fprintln(stdout, "restore done; start the gateway (systemctl start wardgate); blobs are re-verified on start")
	return nil
}

func readSite(creds string) string {
	b, err := os.ReadFile(filepath.Join(creds, "site-id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
