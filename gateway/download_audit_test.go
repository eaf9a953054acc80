package gateway_test

import (
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/wire"
)

// TestDownloadAuditEveryPath checks that a download is audited once per
// request that receives the blob's first byte, on the content-addressed
// path with or without Range and on the TUF mirror path, and not for a
// resume or a HEAD.
func TestDownloadAuditEveryPath(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", approver, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	const serial = "PUMP-DL-1"
	client := deviceClient(t, e, e.deviceCA(), serial)
	resp, err := checkIn(t, client, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0", DeviceClass: "infusion-pump"})
	if err != nil || len(resp.Offers) == 0 || resp.Offers[0].Target != pumpTarget {
		t.Fatalf("check-in: %+v, %v; want an offer of %s", resp, err, pumpTarget)
	}
	offer := resp.Offers[0]
	downloads := func() int {
		t.Helper()
		q := url.Values{"action": {"download"}, "subject": {"Acme Medical/" + serial}, "limit": {"100"}}
		code, body := apiCall(t, e, "GET", "/v1/audit?"+q.Encode(), viewer, "")
		if code != http.StatusOK {
			t.Fatalf("audit query: %d %s", code, body)
		}
		return len(decodeJSON[audit.Page](t, body).Entries)
	}
	hash := strings.TrimPrefix(offer.URL, "/v1/blobs/sha256/")
	mirrorPath := "/tuf/default/targets/" + path.Dir(pumpTarget) + "/" + hash + "." + path.Base(pumpTarget)
	steps := []struct {
		name, method, path, rng string
		status                  int
		records                 int
	}{
		{"first chunk", http.MethodGet, offer.URL, "bytes=0-1023", http.StatusPartialContent, 1},
		{"resume", http.MethodGet, offer.URL, "bytes=1024-", http.StatusPartialContent, 1},
		{"HEAD", http.MethodHead, offer.URL, "", http.StatusOK, 1},
		{"whole blob", http.MethodGet, offer.URL, "", http.StatusOK, 2},
		{"TUF mirror path", http.MethodGet, mirrorPath, "", http.StatusOK, 3},
	}
	for _, st := range steps {
		req, err := http.NewRequest(st.method, e.gatewayURL()+st.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.rng != "" {
			req.Header.Set("Range", st.rng)
		}
		r, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != st.status {
			t.Fatalf("%s: status %d, want %d", st.name, r.StatusCode, st.status)
		}
		if n := downloads(); n != st.records {
			t.Errorf("after %s: %d download records, want %d", st.name, n, st.records)
		}
	}
}
