package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/devicesim/sim"
	"github.com/wardgate/wardgate/cmd/wardhub/analytics"
	"github.com/wardgate/wardgate/gateway/pki"
	"github.com/wardgate/wardgate/gateway/wire"
)

func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())

	const eventsPerDevice = 7
	sum, err := sim.Run(context.Background(), sim.Options{
		GatewayURL:   e.gatewayURL(),
		GatewayCA:    e.gatewayCA().RootCAs,
		DeviceCA:     e.deviceCA(),
		Manufacturer: "Acme Medical",
		Profiles: []sim.Profile{
			{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0", DeviceClass: "infusion-pump", Count: 6},
			{Model: "IP-200", HardwareRevision: "A", Version: "3.1.0", DeviceClass: "infusion-pump", Count: 1},
			{Model: "MON-5", HardwareRevision: "A", Version: "5.0.0", DeviceClass: "patient-monitor", Count: 6},
			{Model: "XR-1", HardwareRevision: "A", Version: "1.0.0", DeviceClass: "imaging", Count: 1},
		},
		TUFRoot:         e.trustedRoot(),
		TUFEvery:        3,
		Repository:      "default",
		TelemetryEvents: eventsPerDevice,
	})
	if err != nil {
		t.Fatalf("simulation: %v", err)
	}
	if sum.Errors != 0 {
		for _, d := range sum.Devices {
			if d.Err != "" {
				t.Errorf("device %s: %s", d.Serial, d.Err)
			}
		}
		t.Fatalf("%d devices failed", sum.Errors)
	}

	targets := e.repo.Targets()
	want := map[string]string{"IP-200/B": "3.2.0", "MON-5/A": "5.1.0"}
	for _, d := range sum.Devices {
		key := d.Model + "/" + d.HardwareRevision
		if v, ok := want[key]; ok {
			if d.EndVersion != v {
				t.Errorf("device %s (%s) ends on %q, want %q", d.Serial, key, d.EndVersion, v)
			}
			if len(d.Downloads) != 1 {
				t.Errorf("device %s downloaded %d targets, want 1", d.Serial, len(d.Downloads))
			}
		} else if len(d.Offered) != 0 {
			t.Errorf("device %s (%s) was offered %v, want nothing", d.Serial, key, d.Offered)
		}
		for target, sha := range d.Downloads {
			tf, ok := targets[target]
			if !ok {
				t.Errorf("device %s downloaded %s, which the repository does not have", d.Serial, target)
				continue
			}
			if got := hex.EncodeToString(tf.Hashes["sha256"]); got != sha {
				t.Errorf("device %s: %s has sha256 %s, TUF metadata says %s", d.Serial, target, sha, got)
			}
		}
	}
	if sum.TUFVerified == 0 {
		t.Errorf("no device verified its download with go-tuf")
	}
	unknown := findDevice(t, sum, "XR-1")
	if len(unknown.Offered) != 0 || len(unknown.Withheld) == 0 {
		t.Errorf("unknown model: offered %v, withheld %v; want no offer and reasons", unknown.Offered, unknown.Withheld)
	}
	for _, w := range unknown.Withheld {
		if len(w.Reasons) == 0 || w.Reasons[0].Code != "model-unsupported" || !strings.Contains(w.Reasons[0].Message, "XR-1") {
			t.Errorf("unknown model: withheld %s with %+v, want model-unsupported naming XR-1", w.Target, w.Reasons)
		}
	}
	oldHW := findDevice(t, sum, "IP-200", "A")
	if !hasReason(oldHW.Withheld, pumpTarget, "hardware-unsupported") {
		t.Errorf("IP-200 rev A: withheld %+v, want %s withheld as hardware-unsupported", oldHW.Withheld, pumpTarget)
	}

	// A clean stop flushes telemetry over the same tunnel.
	tunnelDials := e.gw.Tunnel().Dials()
	e.stopGateway()
	if tunnelDials != 1 {
		t.Errorf("gateway opened %d tunnel connections, want 1", tunnelDials)
	}
	st := e.hub.Stats()
	if st.ConnectionsAccepted != 1 {
		t.Errorf("hub accepted %d connections, want exactly 1", st.ConnectionsAccepted)
	}
	rows, err := e.analytics.Query(context.Background(), analytics.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var events uint64
	for _, r := range rows {
		events += r.Events
	}
	if want := uint64(sum.TelemetryEvents); events != want || want != uint64(len(sum.Devices)*eventsPerDevice) {
		t.Errorf("hub counted %d telemetry events, devices sent %d (%d devices x %d)", events, want, len(sum.Devices), eventsPerDevice)
	}
	if st.InstallResults != 12 {
		t.Errorf("hub received %d install outcomes, want 12", st.InstallResults)
	}
}

func findDevice(t *testing.T, s sim.Summary, model string, hw ...string) sim.Result {
	t.Helper()
	for _, d := range s.Devices {
		if d.Model == model && (len(hw) == 0 || d.HardwareRevision == hw[0]) {
			return d
		}
	}
	t.Fatalf("no simulated device of model %s %v", model, hw)
	return sim.Result{}
}

func hasReason(ws []wire.Withheld, target, code string) bool {
	for _, w := range ws {
		if w.Target == target && len(w.Reasons) > 0 && w.Reasons[0].Code == code {
			return true
		}
	}
	return false
}

// deviceClient returns an HTTPS client with a device certificate issued
// by ca, or none when ca is nil.
func deviceClient(t *testing.T, e *env, ca *pki.Authority, serial string) *http.Client {
	t.Helper()
	conf := e.gatewayCA()
	if ca != nil {
		pair, err := ca.IssuePair(pki.Template{Subject: pkix.Name{CommonName: serial, Organization: []string{"Acme Medical"}}, Lifetime: time.Hour, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
}

func checkIn(t *testing.T, c *http.Client, url string, req wire.CheckInRequest) (wire.CheckInResponse, error) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := c.Post(url+"/v1/checkin", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return wire.CheckInResponse{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return wire.CheckInResponse{}, errors.New(resp.Status + ": " + string(data))
	}
	var out wire.CheckInResponse
	return out, json.Unmarshal(data, &out)
}

func TestDeviceWithoutValidCertificateRejected(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	req := wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"}

	if _, err := checkIn(t, deviceClient(t, e, e.deviceCA(), "GOOD-1"), e.gatewayURL(), req); err != nil {
		t.Fatalf("device with a valid certificate: %v", err)
	}
	if _, err := checkIn(t, deviceClient(t, e, nil, ""), e.gatewayURL(), req); err == nil {
		t.Errorf("device without a client certificate was accepted")
	}
	rogue, err := pki.NewAuthority("rogue CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkIn(t, deviceClient(t, e, rogue, "ROGUE-1"), e.gatewayURL(), req); err == nil {
		t.Errorf("device with a certificate from an unknown CA was accepted")
	}
}

func TestHubDownGatewayServesCache(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	client := deviceClient(t, e, e.deviceCA(), "PUMP-1")
	req := wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"}
	before, err := checkIn(t, client, e.gatewayURL(), req)
	if err != nil || len(before.Offers) != 1 {
		t.Fatalf("check-in with the hub up: offers %v, err %v", before.Offers, err)
	}
	// Targets are pulled through on demand: the first download, while the
	// hub is up, is what caches the release.
	if resp, err := client.Get(e.gatewayURL() + before.Offers[0].URL); err != nil {
		t.Fatalf("download with the hub up: %v", err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	e.stopHub()
	waitFor(t, 15*time.Second, "the tunnel to notice the hub is gone", func() bool { return !e.gw.Tunnel().Connected() })
	after, err := checkIn(t, client, e.gatewayURL(), req)
	if err != nil {
		t.Fatalf("check-in with the hub down: %v", err)
	}
	if len(after.Offers) != 1 || after.Offers[0].Target != pumpTarget {
		t.Fatalf("check-in with the hub down: offers %+v, want %s", after.Offers, pumpTarget)
	}
	resp, err := client.Get(e.gatewayURL() + after.Offers[0].URL)
	if err != nil {
		t.Fatalf("download with the hub down: %v", err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != after.Offers[0].Length {
		t.Errorf("download with the hub down: %s, %d bytes; want 200 and %d bytes", resp.Status, n, after.Offers[0].Length)
	}
	// The tunnel keeps retrying with backoff, and comes back with the hub.
	waitFor(t, 10*time.Second, "a failed redial to be recorded", func() bool { return e.gw.Tunnel().LastError() != nil })
	e.startHub()
	waitFor(t, 40*time.Second, "the tunnel to reconnect", func() bool { return e.gw.Tunnel().Connected() })
}

func TestTamperedTargetRefused(t *testing.T) {
	e := newEnv(t)
	// Flip one byte of the pump image on the hub's disk, under both of
	// its hash names, after it was signed.
	tf := e.repo.Targets()[pumpTarget]
	for _, h := range tf.Hashes {
		name := filepath.Join(e.repo.Dir(), "targets", "infusion-pump", "3.2.0", hex.EncodeToString(h)+".pump.img")
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.startHub()
	e.startGateway(e.gatewayConfig())

	// The metadata is intact, so the refresh succeeds; the tampered bytes
	// are refused when a device pulls the target through: its download is
	// aborted, nothing is cached, and the mirror says why.
	client := deviceClient(t, e, e.deviceCA(), "PUMP-2")
	if _, err := checkIn(t, client, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"}); err != nil {
		t.Fatal(err)
	}
	url := e.gatewayURL() + "/v1/blobs/sha256/" + hex.EncodeToString(tf.Hashes["sha256"])
	for i := range 2 {
		resp, err := client.Get(url)
		if err != nil {
			continue // aborted mid-body or before the headers
		}
		data, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == http.StatusOK {
			t.Errorf("download %d: tampered target served whole with %s (%d bytes)", i, resp.Status, len(data))
		}
	}
	st := e.gw.Mirror().Status()
	if !strings.Contains(st.LastFillError, pumpTarget) || !strings.Contains(st.LastFillError, "mismatch") {
		t.Errorf("mirror last fill error %q, want a hash mismatch naming %s", st.LastFillError, pumpTarget)
	}
}
