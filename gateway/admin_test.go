package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
)

func TestAdminAPIAndConsoleRefusals(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	startFleet(t, e)
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	admin := newToken(t, e.gw, "Ada Admin", gateway.RoleAdmin)
	approve := `{"target":"` + monitorTarget + `"}`

	apiCases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"status without token", "GET", "/v1/status", "", "", http.StatusUnauthorized},
		{"status with a forged token", "GET", "/v1/status", "wgt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", http.StatusUnauthorized},
		{"status as viewer", "GET", "/v1/status", viewer, "", http.StatusOK},
		{"approve without token", "POST", "/v1/releases/approve", "", approve, http.StatusUnauthorized},
		{"approve as viewer", "POST", "/v1/releases/approve", viewer, approve, http.StatusForbidden},
		{"tokens as approver", "GET", "/v1/tokens", approver, "", http.StatusForbidden},
		{"backup as approver", "GET", "/v1/backup", approver, "", http.StatusForbidden},
		{"approve unknown release", "POST", "/v1/releases/approve", approver, `{"target":"nope/1/x.img"}`, http.StatusBadRequest},
		{"approve as approver", "POST", "/v1/releases/approve", approver, approve, http.StatusOK},
		{"approve twice", "POST", "/v1/releases/approve", approver, approve, http.StatusBadRequest},
		{"tokens as admin", "GET", "/v1/tokens", admin, "", http.StatusOK},
	}
	for _, tc := range apiCases {
		got, body := apiCall(t, e, tc.method, tc.path, tc.token, tc.body)
		if got != tc.want {
			t.Errorf("%s: got %d, want %d (%s)", tc.name, got, tc.want, bytes.TrimSpace(body))
		}
	}

	vs := consoleLogin(t, e, viewer)
	as := consoleLogin(t, e, approver)
	anon := &consoleSession{t: t, base: e.adminURL(), c: &http.Client{}}
	form := func(csrf string) url.Values {
		v := url.Values{"target": {pumpTarget}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	consoleCases := []struct {
		name string
		s    *consoleSession
		form url.Values
		want int
	}{
		{"approve without a session", anon, form("x"), http.StatusUnauthorized},
		{"approve as viewer", vs, form(vs.csrf), http.StatusForbidden},
		{"approve without the CSRF token", as, form(""), http.StatusForbidden},
		{"approve with another session's CSRF token", as, form(vs.csrf), http.StatusForbidden},
	}
	for _, tc := range consoleCases {
		if got := tc.s.post("/console/releases/approve", tc.form); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	req, _ := http.NewRequest("POST", e.adminURL()+"/console/releases/approve", strings.NewReader(form(as.csrf).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := as.c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin approve: %v %v, want 403", resp.Status, err)
	}
	// The pump release is still unapproved: none of the refused forms
	// changed anything.
	if page := as.get("/console/releases"); strings.Count(page, "awaiting approval") != 1 {
		t.Errorf("releases page shows %d releases awaiting approval, want the pump only", strings.Count(page, "awaiting approval"))
	}

	resp, err := as.c.Get(e.adminURL() + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q: want frame-ancestors 'none' and no unsafe-inline", csp)
	}

	// Every change and login is in the chain with the token's id.
	code, body := apiCall(t, e, "GET", "/v1/audit/export?format=jsonl", viewer, "")
	if code != http.StatusOK {
		t.Fatalf("audit export: %d %s", code, body)
	}
	if n, _, err := audit.VerifyExport(bytes.NewReader(body)); err != nil || n == 0 {
		t.Errorf("exported chain: %d entries, %v", n, err)
	}
	approverID := strings.Split(approver, "_")[1]
	want := map[string]bool{"approval.grant": false, "rollout.start": false, "admin.login": false}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for action := range want {
			if strings.Contains(line, `"action":"`+action+`"`) && strings.Contains(line, "token:"+approverID) {
				want[action] = true
			}
		}
	}
	for action, seen := range want {
		if !seen {
			t.Errorf("no %s record by token:%s in the audit trail", action, approverID)
		}
	}
	code, body = apiCall(t, e, "POST", "/v1/audit/verify", viewer, "")
	if v := decodeJSON[gateway.VerifyResult](t, body); code != http.StatusOK || !v.OK {
		t.Errorf("audit verify: %d %+v", code, v)
	}

	// A token created through the API works; revoked, it stops working.
	code, body = apiCall(t, e, "POST", "/v1/tokens", admin, `{"name":"night shift","role":"operator","ttl":"24h"}`)
	if code != http.StatusOK {
		t.Fatalf("creating a token: %d %s", code, body)
	}
	nt := decodeJSON[gateway.TokenResponse](t, body)
	if c, _ := apiCall(t, e, "GET", "/v1/whoami", nt.Token, ""); c != http.StatusOK {
		t.Errorf("new token: whoami %d, want 200", c)
	}
	if c, b := apiCall(t, e, "POST", "/v1/tokens/"+nt.Info.ID+"/revoke", admin, ""); c != http.StatusOK {
		t.Fatalf("revoking: %d %s", c, b)
	}
	if c, _ := apiCall(t, e, "GET", "/v1/whoami", nt.Token, ""); c != http.StatusUnauthorized {
		t.Errorf("revoked token: whoami %d, want 401", c)
	}
	if _, err := e.gw.Audit().Verify(context.Background()); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}
