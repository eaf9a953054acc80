package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/gateway/telemetry"
	"github.com/wardgate/wardgate/gateway/telemetry/wire"
)

// capturingHub records every byte and header that goes upstream.
type capturingHub struct {
	next http.Handler
	mu   sync.Mutex
	all  bytes.Buffer
}

func (c *capturingHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	fmt.Fprintf(&c.all, "%s %s\n", r.Method, r.URL)
	for k, vs := range r.Header {
		fmt.Fprintf(&c.all, "%s: %s\n", k, strings.Join(vs, ","))
	}
	c.all.Write(body)
	c.all.WriteByte('\n')
	c.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	c.next.ServeHTTP(w, r)
}

// privateDevice is a device with everything a hostile or careless device
// might leak: its serial, addresses, MAC, instance and host names, URLs,
// operator ids and free text.
type privateDevice struct {
	id       telemetry.DeviceIdentity
	ip, mac  string
	instance string
	host     string
	operator string
}

func TestNoIdentifierGoesUpstream(t *testing.T) {
	h := newHub(t)
	capture := &capturingHub{next: h.srv.Config.Handler}
	hubURL := httptestServer(t, capture)
	db := openDB(t, t.TempDir())
	q, err := telemetry.OpenQueue(db, telemetry.QueueOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })

	var devs []privateDevice
	for i := range 15 {
		model := "InfuseRite 3"
		if i >= 12 {
			model = "InfuseRite 4" // three devices: a small cell
		}
		devs = append(devs, privateDevice{
			id: telemetry.DeviceIdentity{Manufacturer: "Acme Medical", Serial: fmt.Sprintf("ACM%08dX", 4711+i), Model: model,
				SoftwareVersion: "2.1.0", DeviceClass: "infusion-pump"},
			ip: fmt.Sprintf("10.20.%d.%d", 30+i, 40+i), mac: fmt.Sprintf("02:00:5e:10:%02x:%02x", i, 0x40+i),
			instance: fmt.Sprintf("Pump-Ward7-Bed%02d._wardgate._tcp.local", i), host: fmt.Sprintf("pump-ward7-bed%02d.hospital.example", i),
			operator: fmt.Sprintf("nurse-%05d", 300+i),
		})
	}
	bySerial := make(map[string]telemetry.DeviceIdentity)
	for _, d := range devs {
		bySerial[d.id.Serial] = d.id
	}
	identify := func(r *http.Request) (telemetry.DeviceIdentity, bool) {
		d, ok := bySerial[r.Header.Get("X-Test-Serial")]
		return d, ok
	}
	srv := httptest.NewServer(telemetry.NewIngestHandler(q, identify, telemetry.IngestOptions{Logger: quietLogger()}))
	t.Cleanup(srv.Close)
	relay, err := telemetry.NewRelay(q, &telemetry.HTTPUploader{Client: &http.Client{Transport: siteTransport{testSite}}, URL: hubURL + "/v1/telemetry"},
		telemetry.RelayOptions{SiteID: testSite, Logger: quietLogger()}) // default threshold 11
	if err != nil {
		t.Fatal(err)
	}

	for i, d := range devs {
		leak := map[string]any{
			"serial": d.id.Serial, "ip": d.ip, "mac": d.mac, "instance": d.instance, "hostname": d.host,
			"url": "https://" + d.host + "/status", "operator": d.operator, "note": "patient in bed " + d.instance,
			"time": time.Now().Format(time.RFC3339Nano),
		}
		events := []map[string]any{
			{"kind": "counter", "name": "power_cycles", "value": 1 + i%3},
			{"kind": "health", "name": "battery_pct", "value": 50 + i},
			{"kind": "procedure", "name": "infusion.start", "value": 2},
			// A device that puts its serial into a metric name: it is a
			// cell of one device, and never leaves.
			{"kind": "error", "name": d.id.Serial, "value": 1},
		}
		for _, e := range events {
			for k, v := range leak {
				e[k] = v
			}
		}
		top := map[string]any{"schema": 1, "batch_id": "b-" + d.id.Serial, "events": events}
		for k, v := range leak {
			top[k] = v
		}
		body, _ := json.Marshal(top)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/telemetry", bytes.NewReader(body))
		req.Header.Set("X-Test-Serial", d.id.Serial)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("device %d: got %d, want 200", i, resp.StatusCode)
		}
	}
	if err := relay.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	capture.mu.Lock()
	upstream := capture.all.String()
	capture.mu.Unlock()
	if !strings.Contains(upstream, `"name":"battery_pct"`) {
		t.Fatalf("captured upstream traffic holds no battery cell: the test saw nothing (%d bytes)", len(upstream))
	}
	lower := strings.ToLower(upstream)
	for _, d := range devs {
		for _, secret := range []string{d.id.Serial, d.ip, d.mac, d.instance, d.host, d.operator, "Pump-Ward7", "bed"} {
			if strings.Contains(lower, strings.ToLower(secret)) {
				t.Errorf("upstream traffic holds %q", secret)
			}
		}
	}
	for _, pat := range []string{`127\.0\.0\.1`, `https?://`, `patient`, `(?i)\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`, `\bACM\d+`} {
		if m := regexp.MustCompile(pat).FindString(upstream); m != "" {
			t.Errorf("upstream traffic matches %s: %q", pat, m)
		}
	}
	// No exact time: every timestamp in the payloads is a period start.
	var p wire.Payload
	body := upstream[strings.Index(upstream, "{"):]
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&p); err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Cells {
		if c.Period.Unix()%3600 != 0 {
			t.Errorf("cell period %v is not an hour start", c.Period)
		}
		if c.Model != "InfuseRite 3" || c.Devices < 11 {
			t.Errorf("published cell %s/%s covers %d devices, want only InfuseRite 3 cells of at least 11", c.Model, c.Name, c.Devices)
		}
	}
	if p.WithheldCells < 2 || len(p.Cells) != 3 {
		t.Errorf("cells: got %d published and %d withheld, want 3 published (InfuseRite 3 counter, health, procedure) and the rest withheld", len(p.Cells), p.WithheldCells)
	}
	if m := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:(0[1-9]|[1-5]\d):\d\d|T\d\d:\d\d:(0[1-9]|[1-5]\d)`).FindString(upstream); m != "" {
		t.Errorf("upstream traffic holds a time that is not a period start: %q", m)
	}
}
