package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCopyAnswerIndentsJSON checks that JSON reports are printed indented
// with the same content, and that other bodies such as CSV pass through
// unchanged.
func TestCopyAnswerIndentsJSON(t *testing.T) {
	const report = `{"id":"CVE-2021-44228","devices":[{"serial":"SN-1","components":["log4j-core"]}]}`
	const csv = "manufacturer,serial\nAcme,SN-1\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":"no token"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/csv" {
			w.Header().Set("Content-Type", "text/csv")
			_, _ = w.Write([]byte(csv))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(report))
	}))
	defer srv.Close()
	c := &adminClient{base: srv.URL, token: "tok", http: srv.Client()}

	var out bytes.Buffer
	if err := copyAnswer(context.Background(), c, "/exposure", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n  \"devices\": [") {
		t.Errorf("JSON report is not indented:\n%s", out.String())
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out.Bytes()); err != nil || compact.String() != report {
		t.Errorf("indented report differs from the gateway's: %q (err %v)", compact.String(), err)
	}

	out.Reset()
	if err := copyAnswer(context.Background(), c, "/csv", &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != csv {
		t.Errorf("CSV body changed: %q, want %q", out.String(), csv)
	}
}
