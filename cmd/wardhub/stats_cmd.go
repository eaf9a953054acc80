package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/cmd/wardhub/hub"
)

// cmdStats prints what a running hub has seen: gateway connections,
// uploads, and telemetry events per model.
func cmdStats(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:4480", "admin address of the running hub")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var st hub.Stats
	if err := getJSON(ctx, "http://"+*admin+"/v1/stats", &st); err != nil {
		return err
	}
	var cells struct {
		Rows []analytics.Row `json:"rows"`
	}
	if err := getJSON(ctx, "http://"+*admin+"/v1/analytics/cells?group=manufacturer,model,version", &cells); err != nil {
		return err
	}
	rows := cells.Rows
	fmt.Fprintf(stdout, "gateway connections opened:  %d\n", st.ConnectionsAccepted)
	sites := slices.Sorted(maps.Keys(st.ConnectionsBySite))
	for _, site := range sites {
		fmt.Fprintf(stdout, "  %-40s %d\n", site, st.ConnectionsBySite[site])
	}
	fmt.Fprintf(stdout, "telemetry uploads stored:    %d (%d duplicates ignored)\n", st.TelemetryBatches, st.TelemetryDuplicates)
	fmt.Fprintf(stdout, "install outcomes received:   %d\n", st.InstallResults)
	var total uint64
	for _, r := range rows {
		total += r.Events
		fmt.Fprintf(stdout, "  %-14s %-10s %-8s %6d events\n", r.Manufacturer, r.Model, r.Version, r.Events)
	}
	fmt.Fprintf(stdout, "telemetry events received:   %d\n", total)
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the hub's admin listener (is `wardhub serve` running?): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
