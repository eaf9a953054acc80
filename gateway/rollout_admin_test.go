package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/wire"
)

func TestRolloutPauseResumeCancel(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	f := startFleet(t, e)
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	operator := newToken(t, e.gw, "Otto Operator", gateway.RoleOperator)
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", approver, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	reason := func(serial string) string {
		t.Helper()
		resp, err := checkIn(t, deviceClient(t, e, e.deviceCA(), serial), e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: f.version[serial], DeviceClass: "infusion-pump"})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range resp.Withheld {
			if w.Target == pumpTarget && len(w.Reasons) > 0 {
				return w.Reasons[0].Code + ": " + w.Reasons[0].Message
			}
		}
		return "offered"
	}
	steps := []struct {
		name, token, action string
		wantCode            int
		wantInstalls        int
		wantReason          string // of a pump still on the old version
	}{
		{"viewer may not pause", viewer, "pause", http.StatusForbidden, -1, ""},
		{"pause", operator, "pause", http.StatusNoContent, 0, "rollout-halted: rollout R1 is halted (paused by token:"},
		{"pause twice", operator, "pause", http.StatusBadRequest, -1, ""},
		{"resume", operator, "resume", http.StatusNoContent, 1, "offered"},
		{"cancel", operator, "cancel", http.StatusNoContent, 0, "rollout-cancelled"},
		{"resume after cancel", operator, "resume", http.StatusBadRequest, 0, "rollout-cancelled"},
	}
	for _, st := range steps {
		code, body := apiCall(t, e, "POST", "/v1/rollouts/R1/"+st.action, st.token, "")
		if code != st.wantCode {
			t.Fatalf("%s: got %d, want %d (%s)", st.name, code, st.wantCode, body)
		}
		if st.wantInstalls < 0 {
			continue
		}
		if n := f.round(); n != st.wantInstalls {
			t.Errorf("%s: %d devices installed, want %d", st.name, n, st.wantInstalls)
		}
		if st.wantReason == "offered" {
			// The canary updated, so the final wave is open now.
			continue
		}
		old := ""
		for _, s := range f.serials {
			if f.version[s] == "3.1.0" {
				old = s
				break
			}
		}
		if got := reason(old); !strings.HasPrefix(got, st.wantReason) {
			t.Errorf("%s: %s is withheld with %q, want %q", st.name, old, got, st.wantReason)
		}
	}
	code, body := apiCall(t, e, "GET", "/v1/audit?action=rollout.", viewer, "")
	for _, action := range []string{"rollout.pause", "rollout.resume", "rollout.cancel", "rollout.start", "rollout.transition"} {
		if code != http.StatusOK || !strings.Contains(string(body), `"action":"`+action+`"`) {
			t.Errorf("audit trail lacks %s", action)
		}
	}
}
