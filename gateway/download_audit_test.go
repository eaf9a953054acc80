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
// response that carries the blob's first byte, on the content-addressed
// path with or without Range and on the TUF mirror path. A resume, a
// HEAD, a 304 and a 412 are not audited.
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
	etag := `"sha256:` + hash + `"`
	steps := []struct {
		name, method, path string
		hdr                []string
		status             int
		records            int
	}{
		{"first chunk", http.MethodGet, offer.URL, []string{"Range", "bytes=0-1023"}, http.StatusPartialContent, 1},
		{"resume", http.MethodGet, offer.URL, []string{"Range", "bytes=1024-"}, http.StatusPartialContent, 1},
		{"HEAD", http.MethodHead, offer.URL, nil, http.StatusOK, 1},
		{"revalidation", http.MethodGet, offer.URL, []string{"If-None-Match", etag}, http.StatusNotModified, 1},
		{"failed precondition", http.MethodGet, offer.URL, []string{"If-Match", `"sha256:00"`}, http.StatusPreconditionFailed, 1},
		{"whole blob", http.MethodGet, offer.URL, nil, http.StatusOK, 2},
		{"Range ignored by If-Range", http.MethodGet, offer.URL, []string{"Range", "bytes=100-199", "If-Range", `"sha256:00"`}, http.StatusOK, 3},
		{"TUF mirror path", http.MethodGet, mirrorPath, nil, http.StatusOK, 4},
	}
	for _, st := range steps {
		req, err := http.NewRequest(st.method, e.gatewayURL()+st.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(st.hdr); i += 2 {
			req.Header.Set(st.hdr[i], st.hdr[i+1])
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
