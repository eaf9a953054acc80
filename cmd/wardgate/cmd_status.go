package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/console"
)

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	af := newAdminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := af.config()
	if err != nil {
		return err
	}
	c, err := af.client(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var st gateway.Status
	if err := c.do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return err
	}
	return printStatus(stdout, st)
}

// printStatus writes the one-screen summary.
func printStatus(w io.Writer, st gateway.Status) error {
	now := st.Time
	site := st.Site
	if site == "" {
		site = "not enrolled"
	}
	fmt.Fprintf(w, "Wardgate gateway, site %s, at %s\n\n", site, now.Format("2006-01-02 15:04:05 MST"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	tunnel := st.TunnelState
	if st.TunnelTransport != "" && st.TunnelState == "connected" {
		tunnel += " over " + st.TunnelTransport
	}
	tunnel += fmt.Sprintf(" (%d connections opened)", st.TunnelConnections)
	if st.TunnelError != "" && st.TunnelState != "connected" {
		tunnel += "; last error: " + oneLine(st.TunnelError, 80)
	}
	fmt.Fprintf(tw, "tunnel\t%s\n", tunnel)
	m := st.Mirror
	meta := fmt.Sprintf("version %d, %d targets, refreshed %s", m.TimestampVersion, m.Targets, since(now, m.LastRefresh))
	if !m.TimestampExpires.IsZero() {
		meta += ", expires " + until(now, m.TimestampExpires)
	}
	fmt.Fprintf(tw, "metadata\t%s\n", meta)
	if m.LastError != "" {
		fmt.Fprintf(tw, "  refresh error\t%s\n", oneLine(m.LastError, 100))
	}
	bound := "no bound"
	if st.Cache.MaxBytes > 0 {
		bound = "of " + sizeText(st.Cache.MaxBytes)
	}
	free := "unknown"
	if st.Cache.FreeBytes >= 0 {
		free = sizeText(st.Cache.FreeBytes)
	}
	fmt.Fprintf(tw, "cache\t%d blobs, %s %s; disk free %s\n", st.Cache.Blobs, sizeText(st.Cache.StoredBytes), bound, free)
	tq := st.Telemetry
	tel := fmt.Sprintf("%d batches (%s of %s) queued, %d uploads waiting", tq.Batches, sizeText(tq.Bytes), sizeText(tq.MaxBytes), tq.PendingUploads)
	if tq.OldestSeconds > 0 {
		tel += fmt.Sprintf(", oldest %s", (time.Duration(tq.OldestSeconds) * time.Second).Round(time.Second))
	}
	if tq.Refusing != "" {
		tel += "; REFUSING: " + tq.Refusing
	}
	fmt.Fprintf(tw, "telemetry\t%s\n", tel)
	var states []string
	for _, k := range slices.Sorted(maps.Keys(st.DevicesByState)) {
		states = append(states, fmt.Sprintf("%s %d", k, st.DevicesByState[k]))
	}
	fmt.Fprintf(tw, "devices\t%d (%s)\n", st.Devices, strings.Join(states, ", "))
	fmt.Fprintf(tw, "rollouts\t%d active\n", st.ActiveRollouts)
	aud := fmt.Sprintf("%d records", st.AuditHead)
	if st.AuditSyslog != "" {
		aud += "; syslog " + st.AuditSyslog
	}
	fmt.Fprintf(tw, "audit\t%s\n", aud)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Alerts) == 0 {
		_, err := fmt.Fprintln(w, "\nno alerts")
		return err
	}
	fmt.Fprintln(w, "\nalerts:")
	for _, a := range st.Alerts {
		fmt.Fprintf(w, "  %-8s %s\n", a.Level, oneLine(a.Message, 110))
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func since(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func until(now, t time.Time) string {
	d := t.Sub(now).Round(time.Minute)
	if d < 0 {
		return "EXPIRED " + (-d).String() + " ago"
	}
	return "in " + d.String()
}

func cmdDevices(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	af := newAdminFlags(fs)
	model := fs.String("model", "", "only this model")
	state := fs.String("state", "", "only this state (present, stale, departed, retired)")
	q := fs.String("q", "", "only devices whose serial, model or version contains this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := af.config()
	if err != nil {
		return err
	}
	c, err := af.client(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var devs []console.DeviceRow
	if err := c.do(ctx, "GET", "/v1/devices?"+url.Values{"model": {*model}, "state": {*state}, "q": {*q}}.Encode(), nil, &devs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MANUFACTURER\tSERIAL\tMODEL\tHW\tVERSION\tGROUPS\tSTATE\tLAST SEEN")
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Manufacturer, d.Serial, d.Model, d.HardwareRevision, d.Version, strings.Join(d.Groups, ","), d.State, d.LastSeen.Format(time.RFC3339))
	}
	return tw.Flush()
}
