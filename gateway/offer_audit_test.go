package gateway_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/wire"
)

// offerRecords returns the release.offer and release.withhold records of
// a device, oldest first, as "ACTION TARGET REASON" lines by target.
func offerRecords(t *testing.T, e *env, token, serial string) map[string][]string {
	t.Helper()
	q := url.Values{"action": {"release."}, "subject": {"Acme Medical/" + serial}, "limit": {"1000"}}
	code, body := apiCall(t, e, "GET", "/v1/audit?"+q.Encode(), token, "")
	if code != http.StatusOK {
		t.Fatalf("audit query: %d %s", code, body)
	}
	page := decodeJSON[audit.Page](t, body)
	out := map[string][]string{}
	for i := len(page.Entries) - 1; i >= 0; i-- {
		r := page.Entries[i].Record
		line := r.Action + " " + r.Details["target"]
		if reason := r.Details["reason"]; reason != "" {
			line += " " + reason
		}
		out[r.Details["target"]] = append(out[r.Details["target"]], line)
	}
	return out
}

func TestOfferAuditOnlyOnChange(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.adminConfig())
	viewer := newToken(t, e.gw, "Vera Viewer", gateway.RoleViewer)
	approver := newToken(t, e.gw, "Abe Approver", gateway.RoleApprover)
	const serial = "PUMP-AUDIT-1"
	client := deviceClient(t, e, e.deviceCA(), serial)
	req := wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0", DeviceClass: "infusion-pump"}
	checkInN := func(n int) {
		t.Helper()
		for range n {
			if _, err := checkIn(t, client, e.gatewayURL(), req); err != nil {
				t.Fatalf("check-in: %v", err)
			}
		}
	}
	expect := func(step string, want map[string][]string) {
		t.Helper()
		got := offerRecords(t, e, viewer, serial)
		for _, target := range []string{pumpTarget, monitorTarget} {
			if len(got[target]) != len(want[target]) {
				t.Errorf("%s: %s has records %q, want %q", step, target, got[target], want[target])
				continue
			}
			for i := range want[target] {
				if got[target][i] != want[target][i] {
					t.Errorf("%s: %s record %d is %q, want %q", step, target, i, got[target][i], want[target][i])
				}
			}
		}
		if len(got) != 2 {
			t.Errorf("%s: records name %d targets, want 2: %q", step, len(got), got)
		}
	}
	pumpWithheld := "release.withhold " + pumpTarget + " not-approved"
	pumpOffered := "release.offer " + pumpTarget
	pumpUpToDate := "release.withhold " + pumpTarget + " up-to-date"
	pumpDowngrade := "release.withhold " + pumpTarget + " downgrade"
	monitorWithheld := "release.withhold " + monitorTarget + " model-unsupported"

	checkInN(3)
	expect("three check-ins with no change", map[string][]string{
		pumpTarget:    {pumpWithheld},
		monitorTarget: {monitorWithheld},
	})

	if c, b := apiCall(t, e, "POST", "/v1/releases/approve", approver, `{"target":"`+pumpTarget+`"}`); c != http.StatusOK {
		t.Fatalf("approve: %d %s", c, b)
	}
	checkInN(2)
	expect("check-ins after the approval", map[string][]string{
		pumpTarget:    {pumpWithheld, pumpOffered},
		monitorTarget: {monitorWithheld},
	})

	req.Version = "3.2.0"
	checkInN(2)
	expect("check-ins on the new version", map[string][]string{
		pumpTarget:    {pumpWithheld, pumpOffered, pumpUpToDate},
		monitorTarget: {monitorWithheld},
	})

	// A release that stays withheld for another reason is a change too.
	req.Version = "3.3.0"
	checkInN(2)
	expect("check-ins on a later version", map[string][]string{
		pumpTarget:    {pumpWithheld, pumpOffered, pumpUpToDate, pumpDowngrade},
		monitorTarget: {monitorWithheld},
	})

	// The decisions are kept in memory, so the first check-in after a
	// restart records every release again.
	e.stopGateway()
	e.startGateway(e.cfg)
	checkInN(2)
	expect("check-ins after a restart", map[string][]string{
		pumpTarget:    {pumpWithheld, pumpOffered, pumpUpToDate, pumpDowngrade, pumpDowngrade},
		monitorTarget: {monitorWithheld, monitorWithheld},
	})
}
