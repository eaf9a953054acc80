package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/cmd/devicesim/sim"
	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/config"
	"github.com/wardgate/wardgate/gateway/wire"
)

// adminConfig is a gateway config with explicit approval and device
// groups, so releases wait for hospital IT and the windows page has
// something to draw.
func (e *env) adminConfig() config.Config {
	cfg := e.gatewayConfig()
	cfg.Policy.RequireApproval = true
	cfg.Policy.Rollout.Waves = []string{"1"}
	next := time.Now().UTC().AddDate(0, 0, 3).Format("2006-01-02")
	cfg.Policy.Groups = []config.Group{
		{Name: "patient-monitors", Models: []string{"MON-5"}, Windows: []string{"Tue 02:00-04:00 Europe/Berlin", "Sat 22:00-Mon 06:00 Europe/Berlin"}, Blackouts: []string{next + " Europe/Berlin"}},
		{Name: "imaging", DeviceClasses: []string{"imaging"}, Windows: []string{"cron 0 3 * * * 2h UTC"}},
		{Name: "infusion-pumps", Models: []string{"IP-200"}},
	}
	return cfg
}

// fleet is the simulated fleet: sim registers it once, then pump devices
// keep their version between rounds of check-ins.
type fleet struct {
	t       *testing.T
	e       *env
	clients map[string]*http.Client
	version map[string]string
	serials []string
}

var fleetProfiles = []sim.Profile{
	{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0", DeviceClass: "infusion-pump", Count: 6},
	{Model: "IP-200", HardwareRevision: "A", Version: "3.1.0", DeviceClass: "infusion-pump", Count: 1},
	{Model: "MON-5", HardwareRevision: "A", Version: "5.0.0", DeviceClass: "patient-monitor", Count: 4},
	{Model: "XR-1", HardwareRevision: "A", Version: "1.0.0", DeviceClass: "imaging", Count: 1},
}

// startFleet announces the fleet through devicesim. With approval
// required, nothing is offered yet.
func startFleet(t *testing.T, e *env) *fleet {
	t.Helper()
	sum, err := sim.Run(context.Background(), sim.Options{
		GatewayURL: e.gatewayURL(), GatewayCA: e.gatewayCA().RootCAs, DeviceCA: e.deviceCA(),
		Manufacturer: "Acme Medical", SerialPrefix: "SIM", Profiles: fleetProfiles, TelemetryEvents: 2,
	})
	if err != nil || sum.Errors != 0 {
		t.Fatalf("simulated fleet: %v, %d device errors", err, sum.Errors)
	}
	f := &fleet{t: t, e: e, clients: map[string]*http.Client{}, version: map[string]string{}}
	for _, d := range sum.Devices {
		if len(d.Offered) != 0 {
			t.Fatalf("device %s was offered %v before any approval", d.Serial, d.Offered)
		}
		if d.Model == "IP-200" && d.HardwareRevision == "B" {
			f.serials = append(f.serials, d.Serial)
			f.version[d.Serial] = d.StartVersion
		}
	}
	return f
}

// round checks every pump in; a pump that is offered the release reports
// it installed and checks in again on the new version. It returns how
// many installed in this round.
func (f *fleet) round() int {
	f.t.Helper()
	n := 0
	for _, s := range f.serials {
		c := f.clients[s]
		if c == nil {
			c = deviceClient(f.t, f.e, f.e.deviceCA(), s)
			f.clients[s] = c
		}
		req := wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: f.version[s], DeviceClass: "infusion-pump"}
		resp, err := checkIn(f.t, c, f.e.gatewayURL(), req)
		if err != nil {
			f.t.Fatalf("check-in of %s: %v", s, err)
		}
		for _, o := range resp.Offers {
			body := fmt.Sprintf(`{"target":%q,"state":"installed"}`, o.Target)
			r, err := c.Post(f.e.gatewayURL()+"/v1/status", "application/json", strings.NewReader(body))
			if err != nil {
				f.t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != http.StatusNoContent {
				f.t.Fatalf("status report of %s: %s", s, r.Status)
			}
			f.version[s] = o.Version
			req.Version = o.Version
			if _, err := checkIn(f.t, c, f.e.gatewayURL(), req); err != nil {
				f.t.Fatal(err)
			}
			n++
		}
	}
	return n
}

func (e *env) adminURL() string { return "http://" + e.gw.AdminAddr().String() }

func newToken(t *testing.T, g *gateway.Gateway, name string, role gateway.Role) string {
	t.Helper()
	tok, _, err := g.Tokens().Create(context.Background(), name, role, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiCall sends a JSON API request with a token ("" for none) and
// returns the status and body.
func apiCall(t *testing.T, e *env, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.adminURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// consoleSession is a console login driven with plain HTTP.
type consoleSession struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func consoleLogin(t *testing.T, e *env, token string) *consoleSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &consoleSession{t: t, base: e.adminURL(), c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	page := s.get("/console/login")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("login page has no CSRF field:\n%s", page)
	}
	resp, err := s.c.PostForm(s.base+"/console/login", url.Values{"csrf": {m[1]}, "token": {token}, "next": {"/console/releases"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Releases and rollouts") {
		t.Fatalf("login: %s, want the releases page", resp.Status)
	}
	if m = csrfField.FindStringSubmatch(string(body)); m == nil {
		t.Fatal("releases page has no CSRF field")
	}
	s.csrf = m[1]
	return s
}

func (s *consoleSession) get(path string) string {
	s.t.Helper()
	resp, err := s.c.Get(s.base + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (s *consoleSession) post(path string, form url.Values) int {
	s.t.Helper()
	resp, err := s.c.PostForm(s.base+path, form)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func decodeJSON[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}
