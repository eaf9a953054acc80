package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
)

// TestAdminUnmatchedRoutesJSON checks that admin API requests without a
// route get a JSON error like every handler's: 404 for an unknown path,
// 405 with Allow for a known path and another method. Known routes still
// work, path values included.
func TestAdminUnmatchedRoutesJSON(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	tests := []struct {
		name, method, path string
		status             int
		want               string
	}{
		{"unknown path", http.MethodGet, "/v1/nope", http.StatusNotFound, "no API route for GET /v1/nope"},
		{"wrong method", http.MethodDelete, "/v1/status", http.StatusMethodNotAllowed, "method DELETE is not allowed on /v1/status; allowed: GET"},
		{"known route", http.MethodGet, "/v1/whoami", http.StatusOK, `"Vera Viewer"`},
		{"route with path values", http.MethodGet, "/v1/devices/Acme%20Medical/NOPE", http.StatusNotFound, "NOPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := apiCall(t, e, tt.method, tt.path, viewer, "")
			if status != tt.status {
				t.Fatalf("status %d, want %d (%s)", status, tt.status, body)
			}
			if !strings.Contains(string(body), tt.want) {
				t.Errorf("body %s does not contain %q", body, tt.want)
			}
			if status != http.StatusOK {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not JSON with an error field: %v", body, err)
				}
			}
		})
	}
}

// TestDeviceUnmatchedRoutesJSON checks the same for the device API: a
// device that calls a path or method the gateway lacks, or requests from the TUF
// mirror a file it does not have, gets a JSON error.
func TestDeviceUnmatchedRoutesJSON(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	c := deviceClient(t, e, e.deviceCA(), "PUMP-9")
	for _, tt := range []struct {
		method, path, want string
		status             int
	}{
		{http.MethodGet, "/v1/updates", "/v1/updates", http.StatusNotFound},
		{http.MethodGet, "/v1/checkin", "/v1/checkin", http.StatusMethodNotAllowed},
		{http.MethodGet, "/tuf/nope/metadata/timestamp.json", `"nope"`, http.StatusNotFound},
		{http.MethodGet, "/tuf/default/metadata/9.root.json", "9.root.json", http.StatusNotFound},
		{http.MethodGet, "/tuf/default/targets/nope.img", "nope.img", http.StatusNotFound},
	} {
		req, err := http.NewRequest(tt.method, e.gatewayURL()+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
		if err != nil || !strings.Contains(body.Error, tt.want) {
			t.Errorf("%s %s: body error %q (decoding: %v), want a JSON error naming %s", tt.method, tt.path, body.Error, err, tt.want)
		}
	}
}

// TestDeviceAPIHTTP11Only checks that a device client offering HTTP/2 in
// ALPN gets HTTP/1.1, the only protocol the device API serves.
func TestDeviceAPIHTTP11Only(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	c := deviceClient(t, e, e.deviceCA(), "PUMP-9")
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := c.Get(e.gatewayURL() + "/v1/blobs/sha256/" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("device API answered over %s, want HTTP/1.1", resp.Proto)
	}
	if resp.TLS == nil {
		t.Fatal("the device API answered without TLS")
	}
	if resp.TLS.NegotiatedProtocol == "h2" {
		t.Error("TLS negotiated h2, want http/1.1")
	}
}
