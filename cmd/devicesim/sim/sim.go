// Package sim runs simulated medical devices against a gateway's device
// API. Each device has its own client certificate, model and version.
// It checks in, downloads its offer and checks the hashes, and some
// devices also verify the offer with a go-tuf client against the
// gateway's mirror. Then it "installs" the release, reports, checks in
// again on the new version, and sends telemetry.
package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/wire"
)

// Profile describes a group of identical devices.
type Profile struct {
	Model, HardwareRevision, Version, DeviceClass string
	Count                                         int
}

// Options configures a run.
type Options struct {
	// GatewayURL is the device API base, such as "https://127.0.0.1:8443".
	GatewayURL string
	// GatewayCA verifies the gateway's device API certificate.
	GatewayCA *x509.CertPool
	// DeviceCA issues each simulated device's client certificate, as a
	// manufacturer's factory would.
	DeviceCA     *pki.Authority
	Manufacturer string
	SerialPrefix string
	Profiles     []Profile
	// TUFRoot, when set, makes every TUFEvery-th device verify its
	// download with go-tuf against the mirror of Repository.
	TUFRoot    []byte
	TUFEvery   int
	Repository string
	// TelemetryEvents is how many events each device sends.
	TelemetryEvents int
	// Concurrency bounds devices running at once; 0 means all.
	Concurrency int
	Logger      *slog.Logger
}

// Result is the record of one simulated device's run.
type Result struct {
	Serial, Model, HardwareRevision string
	StartVersion, EndVersion        string
	Offered                         []string
	Withheld                        []wire.Withheld
	DownloadedBytes                 int64
	HashesVerified                  bool
	TUFVerified                     bool
	// Downloads maps each downloaded target to the SHA-256 of the bytes
	// received, hex.
	Downloads       map[string]string
	TelemetryEvents int
	Err             string
}

// Summary aggregates a run.
type Summary struct {
	Devices           []Result       `json:"devices"`
	CheckedIn         int            `json:"checked_in"`
	Offered           int            `json:"offered"`
	WithheldByReason  map[string]int `json:"withheld_by_reason"`
	DownloadsVerified int            `json:"downloads_verified"`
	TUFVerified       int            `json:"tuf_verified"`
	Updated           int            `json:"updated"`
	TelemetryEvents   int            `json:"telemetry_events"`
	Errors            int            `json:"errors"`
}

// MaxDevices bounds one run, so a typo cannot exhaust the machine's
// memory with device certificates.
const MaxDevices = 100000

// Run simulates every device of opts.Profiles and returns when all are
// done or ctx ends.
func Run(ctx context.Context, opts Options) (Summary, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.DeviceCA == nil || opts.GatewayCA == nil {
		return Summary{}, errors.New("devicesim needs the device CA and the gateway CA")
	}
	if opts.SerialPrefix == "" {
		opts.SerialPrefix = "SIM"
	}
	total := 0
	for _, p := range opts.Profiles {
		total += p.Count
	}
	if total > MaxDevices {
		return Summary{}, fmt.Errorf("%d devices requested; one run simulates at most %d", total, MaxDevices)
	}
	var devices []*device
	n := 0
	for _, p := range opts.Profiles {
		for i := 0; i < p.Count; i++ {
			if err := ctx.Err(); err != nil {
				return Summary{}, err
			}
			n++
			d, err := newDevice(opts, p, fmt.Sprintf("%s-%04d", opts.SerialPrefix, n), n)
			if err != nil {
				return Summary{}, err
			}
			devices = append(devices, d)
		}
	}
	limit := opts.Concurrency
	if limit <= 0 {
		limit = len(devices)
	}
	sem := make(chan struct{}, max(limit, 1))
	results := make([]Result, len(devices))
	var wg sync.WaitGroup
	for i, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = d.run(ctx)
		}()
	}
	wg.Wait()
	return summarize(results), ctx.Err()
}

func summarize(results []Result) Summary {
	s := Summary{Devices: results, WithheldByReason: map[string]int{}}
	for _, r := range results {
		if r.Err != "" {
			s.Errors++
		}
		if r.StartVersion != "" {
			s.CheckedIn++
		}
		s.Offered += len(r.Offered)
		for _, w := range r.Withheld {
			if len(w.Reasons) > 0 {
				s.WithheldByReason[w.Reasons[0].Code]++
			}
		}
		if r.HashesVerified {
			s.DownloadsVerified++
		}
		if r.TUFVerified {
			s.TUFVerified++
		}
		if r.EndVersion != r.StartVersion && r.EndVersion != "" {
			s.Updated++
		}
		s.TelemetryEvents += r.TelemetryEvents
	}
	return s
}

type device struct {
	opts    Options
	profile Profile
	serial  string
	useTUF  bool
	client  *http.Client
	version string
}

func newDevice(opts Options, p Profile, serial string, n int) (*device, error) {
	pair, err := opts.DeviceCA.IssuePair(pki.Template{
		Subject:  pkix.Name{CommonName: serial, Organization: []string{opts.Manufacturer}},
		Lifetime: 24 * time.Hour,
		Client:   true,
	})
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: opts.GatewayCA, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		MaxIdleConns:      2,
	}
	return &device{
		opts:    opts,
		profile: p,
		serial:  serial,
		useTUF:  len(opts.TUFRoot) > 0 && opts.TUFEvery > 0 && n%opts.TUFEvery == 0,
		client:  &http.Client{Transport: tr, Timeout: 60 * time.Second},
		version: p.Version,
	}, nil
}

func (d *device) run(ctx context.Context) Result {
	res := Result{Serial: d.serial, Model: d.profile.Model, HardwareRevision: d.profile.HardwareRevision, Downloads: map[string]string{}}
	defer d.client.CloseIdleConnections()
	err := d.lifecycle(ctx, &res)
	if err != nil {
		res.Err = err.Error()
		d.opts.Logger.Warn("simulated device failed", "serial", d.serial, "err", err)
	}
	return res
}

func (d *device) lifecycle(ctx context.Context, res *Result) error {
	first, err := d.checkIn(ctx)
	if err != nil {
		return err
	}
	res.StartVersion = d.version
	res.Withheld = first.Withheld
	for _, o := range first.Offers {
		res.Offered = append(res.Offered, o.Target)
	}
	if len(first.Offers) > 0 {
		o := first.Offers[0]
		if err := d.install(ctx, o, res); err != nil {
			return err
		}
		second, err := d.checkIn(ctx)
		if err != nil {
			return err
		}
		for _, again := range second.Offers {
			if again.Target == o.Target {
				return fmt.Errorf("gateway offered %s again after it was installed", o.Target)
			}
		}
	}
	res.EndVersion = d.version
	n, err := d.sendTelemetry(ctx)
	res.TelemetryEvents = n
	return err
}

func (d *device) checkIn(ctx context.Context) (wire.CheckInResponse, error) {
	var resp wire.CheckInResponse
	err := d.post(ctx, "/v1/checkin", wire.CheckInRequest{
		Model:            d.profile.Model,
		HardwareRevision: d.profile.HardwareRevision,
		Version:          d.version,
		DeviceClass:      d.profile.DeviceClass,
	}, &resp)
	return resp, err
}

func (d *device) install(ctx context.Context, o wire.Offer, res *Result) error {
	_ = d.post(ctx, "/v1/status", wire.StatusReport{Target: o.Target, State: "downloading"}, nil)
	data, sum, err := d.download(ctx, o)
	if err != nil {
		return err
	}
	res.DownloadedBytes += int64(len(data))
	res.Downloads[o.Target] = sum
	res.HashesVerified = true
	if d.useTUF {
		if err := d.verifyWithTUF(ctx, o.Target, data); err != nil {
			_ = d.post(ctx, "/v1/status", wire.StatusReport{Target: o.Target, State: "failed", Detail: "TUF verification failed"}, nil)
			return err
		}
		res.TUFVerified = true
	}
	for _, state := range []string{"downloaded", "installing", "installed"} {
		if err := d.post(ctx, "/v1/status", wire.StatusReport{Target: o.Target, State: state}, nil); err != nil {
			return err
		}
	}
	d.version = o.Version
	return nil
}

// download fetches the offer and checks its length and every hash the
// offer lists.
func (d *device) download(ctx context.Context, o wire.Offer) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.opts.GatewayURL+o.URL, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("downloading %s: %w", o.Target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, "", fmt.Errorf("downloading %s: %s: %s", o.Target, resp.Status, strings.TrimSpace(string(b)))
	}
	hashers := map[string]hash.Hash{"sha256": sha256.New(), "sha512": sha512.New()}
	var buf bytes.Buffer
	w := io.MultiWriter(&buf, hashers["sha256"], hashers["sha512"])
	if _, err := io.Copy(w, io.LimitReader(resp.Body, o.Length+1)); err != nil {
		return nil, "", fmt.Errorf("downloading %s: %w", o.Target, err)
	}
	if int64(buf.Len()) != o.Length {
		return nil, "", fmt.Errorf("downloaded %d bytes of %s, but the offer lists %d", buf.Len(), o.Target, o.Length)
	}
	for alg, want := range o.Hashes {
		h, ok := hashers[alg]
		if !ok {
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return nil, "", fmt.Errorf("%s of %s is %s, but the offer lists %s", alg, o.Target, got, want)
		}
	}
	return buf.Bytes(), hex.EncodeToString(hashers["sha256"].Sum(nil)), nil
}

// telemetryKinds cycles through the schema's event kinds.
var telemetryKinds = []struct{ kind, name string }{
	{"counter", "power_cycles"},
	{"procedure", "infusion"},
	{"runtime", "system"},
	{"error", "E-102"},
	{"health", "battery_pct"},
}

func (d *device) sendTelemetry(ctx context.Context) (int, error) {
	if d.opts.TelemetryEvents <= 0 {
		return 0, nil
	}
	type event struct {
		Kind  string  `json:"kind"`
		Name  string  `json:"name"`
		Value float64 `json:"value"`
	}
	events := make([]event, 0, d.opts.TelemetryEvents)
	for i := 0; i < d.opts.TelemetryEvents; i++ {
		k := telemetryKinds[i%len(telemetryKinds)]
		v := 1.0
		switch k.kind {
		case "runtime":
			v = 0.5
		case "health":
			v = float64(40 + i%60)
		}
		events = append(events, event{Kind: k.kind, Name: k.name, Value: v})
	}
	body := map[string]any{"schema": 1, "batch_id": d.serial + "-1", "events": events}
	if err := d.post(ctx, "/v1/telemetry", body, nil); err != nil {
		return 0, err
	}
	return len(events), nil
}

func (d *device) post(ctx context.Context, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.opts.GatewayURL+path, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := d.client.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) && attempt < 5 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(200*(attempt+1)) * time.Millisecond):
			}
			continue
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
}

// SortedReasons returns the withheld reason codes of s in a stable order.
func (s Summary) SortedReasons() []string {
	var keys []string
	for k := range s.WithheldByReason {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
