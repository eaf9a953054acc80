package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/wire"
)

func TestAdminReports(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	for serial, hw := range map[string]string{"PUMP-B": "B", "PUMP-A": "A", "PUMP-C": "C"} {
		version := "3.1.0"
		if serial == "PUMP-C" {
			version = "3.2.0"
		}
		req := wire.CheckInRequest{Model: "IP-200", HardwareRevision: hw, Version: version}
		if _, err := checkIn(t, deviceClient(t, e, e.deviceCA(), serial), e.gatewayURL(), req); err != nil {
			t.Fatalf("check-in of %s: %v", serial, err)
		}
	}
	viewer := newToken(t, e.gw, "viewer", gateway.RoleViewer)
	operator := newToken(t, e.gw, "operator", gateway.RoleOperator)

	t.Run("explain withheld", func(t *testing.T) {
		q := url.Values{"device": {"Acme Medical/PUMP-A"}, "release": {pumpTarget}}
		status, body := apiCall(t, e, http.MethodGet, "/v1/explain?"+q.Encode(), viewer, "")
		if status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", status, body)
		}
		var res gateway.ExplainResult
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		if res.Decision.Offer {
			t.Errorf("decision offers %s to a revision A pump", pumpTarget)
		}
		if !strings.Contains(res.Text, "hardware-unsupported") {
			t.Errorf("explanation %q does not name hardware-unsupported", res.Text)
		}
	})
	t.Run("explain offered", func(t *testing.T) {
		q := url.Values{"device": {"Acme Medical/PUMP-B"}, "release": {pumpTarget}}
		status, body := apiCall(t, e, http.MethodGet, "/v1/explain?"+q.Encode(), viewer, "")
		var res gateway.ExplainResult
		if status != http.StatusOK || json.Unmarshal(body, &res) != nil || !res.Decision.Offer {
			t.Errorf("got %d %s, want 200 with an offer", status, body)
		}
	})
	t.Run("explain unknown device", func(t *testing.T) {
		q := url.Values{"device": {"Acme Medical/NOPE"}, "release": {pumpTarget}}
		if status, body := apiCall(t, e, http.MethodGet, "/v1/explain?"+q.Encode(), viewer, ""); status != http.StatusNotFound {
			t.Errorf("got %d %s, want 404", status, body)
		}
	})
	t.Run("sbom of release", func(t *testing.T) {
		status, body := apiCall(t, e, http.MethodGet, "/v1/sbom?release="+url.QueryEscape(pumpTarget), viewer, "")
		if status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", status, body)
		}
		for _, name := range []string{"WolfSSL", "fatFS"} {
			if !strings.Contains(string(body), name) {
				t.Errorf("components of %s lack %s", pumpTarget, name)
			}
		}
	})
	t.Run("sbom of unknown release", func(t *testing.T) {
		status, body := apiCall(t, e, http.MethodGet, "/v1/sbom?release="+url.QueryEscape("infusion-pump/9.9.9/pump.img"), viewer, "")
		if status != http.StatusNotFound || !strings.Contains(string(body), "not a target of the verified TUF metadata") {
			t.Errorf("got %d %s, want 404 saying the path is not a target", status, body)
		}
	})
	t.Run("sbom of device as csv", func(t *testing.T) {
		q := url.Values{"device": {"Acme Medical/PUMP-C"}, "format": {"csv"}}
		status, body := apiCall(t, e, http.MethodGet, "/v1/sbom?"+q.Encode(), viewer, "")
		if status != http.StatusOK || !strings.Contains(string(body), "WolfSSL") {
			t.Errorf("got %d %.200s, want 200 with the pump's components", status, body)
		}
	})
	t.Run("sbom of device on uncached release", func(t *testing.T) {
		q := url.Values{"device": {"Acme Medical/PUMP-B"}}
		status, body := apiCall(t, e, http.MethodGet, "/v1/sbom?"+q.Encode(), viewer, "")
		if status != http.StatusNotFound || !strings.Contains(string(body), "not known") {
			t.Errorf("got %d %s, want 404 saying the release is not known", status, body)
		}
	})
	advisory, err := os.ReadFile("testdata/GHSA-jfh8-c2jp-5v3q.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("advisory import needs operator", func(t *testing.T) {
		if status, _ := apiCall(t, e, http.MethodPost, "/v1/advisories?name=log4shell.json", viewer, string(advisory)); status != http.StatusForbidden {
			t.Errorf("viewer import: got %d, want 403", status)
		}
	})
	t.Run("advisory import", func(t *testing.T) {
		status, body := apiCall(t, e, http.MethodPost, "/v1/advisories?name=log4shell.json", operator, string(advisory))
		if status != http.StatusOK || !strings.Contains(string(body), "GHSA-jfh8-c2jp-5v3q") {
			t.Fatalf("got %d %s, want 200 naming the advisory", status, body)
		}
		status, body = apiCall(t, e, http.MethodGet, "/v1/exposure?id=CVE-2021-44228", viewer, "")
		if status != http.StatusOK {
			t.Errorf("exposure after import: got %d %s", status, body)
		}
	})
	t.Run("advisory import rejects garbage", func(t *testing.T) {
		if status, body := apiCall(t, e, http.MethodPost, "/v1/advisories?name=bad.json", operator, `{"not":"an advisory"`); status != http.StatusBadRequest {
			t.Errorf("got %d %s, want 400", status, body)
		}
	})
}
