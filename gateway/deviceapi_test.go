package gateway_test

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/gateway/wire"
)

func TestEmptyCheckInKeepsRecord(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	c := deviceClient(t, e, e.deviceCA(), "PUMP-9")
	if _, err := checkIn(t, c, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{}`, `null`, `{"model":"IP-200","hardware_revision":"B","version":"3.1.0"}{"x":1}`} {
		resp, err := c.Post(e.gatewayURL()+"/v1/checkin", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("check-in %s: got %s, want 400", body, resp.Status)
		}
	}
	again, err := checkIn(t, c, e.gatewayURL(), wire.CheckInRequest{Model: "IP-200", HardwareRevision: "B", Version: "3.1.0"})
	if err != nil || len(again.Offers) != 1 {
		t.Errorf("check-in after rejected ones: offers %v, err %v; want the pump release", again.Offers, err)
	}
}

func TestMirrorPathAppliesPolicy(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	e.startGateway(e.gatewayConfig())
	tf := e.repo.Targets()[pumpTarget]
	path := "/tuf/default/targets/infusion-pump/3.2.0/" + hex.EncodeToString(tf.Hashes["sha256"]) + ".pump.img"
	tests := []struct {
		name, serial, model, hw string
		want                    int
	}{
		{"supported pump", "PUMP-OK", "IP-200", "B", http.StatusOK},
		{"wrong model", "MON-X", "MON-5", "A", http.StatusForbidden},
		{"unsupported revision", "PUMP-OLD", "IP-200", "A", http.StatusForbidden},
		{"never checked in", "GHOST-1", "", "", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := deviceClient(t, e, e.deviceCA(), tt.serial)
			if tt.model != "" {
				if _, err := checkIn(t, c, e.gatewayURL(), wire.CheckInRequest{Model: tt.model, HardwareRevision: tt.hw, Version: "1.0.0"}); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := c.Get(e.gatewayURL() + path)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: got %s, want %d", path, resp.Status, tt.want)
			}
			if tt.want == http.StatusOK && n != tf.Length {
				t.Errorf("got %d bytes, want %d", n, tf.Length)
			}
		})
	}
}

func TestNewFailsCleanlyOnBusyPort(t *testing.T) {
	e := newEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := e.gatewayConfig()
	cfg.DeviceAPI.Listen = []string{busy.Addr().String()}
	g, err := gateway.New(cfg, e.log)
	if err == nil {
		t.Fatal("New succeeded on a busy port")
	}
	if g != nil {
		t.Errorf("New returned a gateway with its error")
	}
	if !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("error %q does not name the address", err)
	}
	// The data folder is released: a second gateway can open it.
	cfg.DeviceAPI.Listen = []string{"127.0.0.1:0"}
	g, err = gateway.New(cfg, e.log)
	if err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context: %v", err)
	}
}
