package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseNotice(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Notice
		wantErr error
	}{
		{"metadata", `{"type":"metadata","version":7}`, Notice{Type: "metadata", Version: 7}, nil},
		{"withdrawn with target", `{"type":"withdrawn","target":"pump/1.img"}`, Notice{Type: "withdrawn", Target: "pump/1.img"}, nil},
		{"unknown field kept compatible", `{"type":"ping","new":1}`, Notice{Type: "ping"}, nil},
		{"unknown type", `{"type":"reboot-everything"}`, Notice{}, errNoticeUnknownType},
		{"empty type", `{"version":3}`, Notice{}, errNoticeUnknownType},
		{"not JSON", `garbage \x00\xff`, Notice{}, errNoticeMalformed},
		{"JSON array", `[1,2,3]`, Notice{}, errNoticeMalformed},
		{"truncated", `{"type":"metadata"`, Notice{}, errNoticeMalformed},
		{"negative version", `{"type":"metadata","version":-1}`, Notice{}, errNoticeMalformed},
		{"wrong field type", `{"type":5}`, Notice{}, errNoticeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNotice([]byte(tc.line))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseNotice(%q) error = %v, want %v", tc.line, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseNotice(%q) = %+v, want %+v", tc.line, got, tc.want)
			}
		})
	}
}

func TestNoticeReaderSkipsOversizedLines(t *testing.T) {
	stream := "{\"type\":\"ping\"}\n" + strings.Repeat("x", 300) + "\n{\"type\":\"metadata\",\"version\":2}\r\n" + strings.Repeat("y", 50)
	r := newNoticeReader(strings.NewReader(stream), 100)
	var got []string
	for {
		line, err := r.next()
		if errors.Is(err, errNoticeOversized) {
			got = append(got, "<oversized>")
			continue
		}
		if err != nil {
			got = append(got, "<"+err.Error()+">")
			break
		}
		got = append(got, string(line))
	}
	want := []string{`{"type":"ping"}`, "<oversized>", `{"type":"metadata","version":2}`, "<" + io.ErrUnexpectedEOF.Error() + ">"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func FuzzNoticeStream(f *testing.F) {
	f.Add([]byte("{\"type\":\"metadata\",\"version\":1}\n{\"type\":\"ping\"}\n"))
	f.Add([]byte("garbage\n\x00\x01\x02\n" + strings.Repeat("z", 5000) + "\n"))
	f.Add([]byte("{\"type\":\"withdrawn\",\"target\":\"a/b\"}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newNoticeReader(bytes.NewReader(data), 1024)
		for range len(data) + 2 {
			line, err := r.next()
			if errors.Is(err, errNoticeOversized) {
				continue
			}
			if err != nil {
				return
			}
			if len(line) > 1025 {
				t.Fatalf("line of %d bytes passed a 1024-byte limit", len(line))
			}
			n, err := ParseNotice(line)
			if err == nil && !noticeTypes[n.Type] {
				t.Fatalf("accepted notice of unknown type %q", n.Type)
			}
		}
		t.Fatal("reader did not end")
	})
}

func TestReadConnectResponse(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantStatus int
		wantErr    bool
		wantRest   string
	}{
		{"established", "HTTP/1.1 200 Connection established\r\n\r\nTLS", 200, false, "TLS"},
		{"http/1.0 with headers", "HTTP/1.0 200 OK\r\nVia: squid\r\nX: y\r\n\r\n", 200, false, ""},
		{"auth required", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", 407, false, ""},
		{"LF only", "HTTP/1.1 403 Forbidden\n\n", 403, false, ""},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", 0, true, ""},
		{"bad code", "HTTP/1.1 2x0 OK\r\n\r\n", 0, true, ""},
		{"truncated", "HTTP/1.1 200 OK\r\nVia: x", 0, true, ""},
		{"endless header", "HTTP/1.1 200 OK\r\n" + strings.Repeat("a", 5000), 0, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
			status, _, err := readConnectResponse(br)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %t", err, tc.wantErr)
			}
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d", status, tc.wantStatus)
			}
			if !tc.wantErr {
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.wantRest {
					t.Errorf("bytes left after the answer = %q, want %q", rest, tc.wantRest)
				}
			}
		})
	}
}

func FuzzReadConnectResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=x\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 502 Bad Gateway\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		status, reason, err := readConnectResponse(br)
		if err == nil && (status < 100 || status > 599) {
			t.Fatalf("accepted status %d", status)
		}
		if err == nil && len(reason) > 4096 {
			t.Fatalf("reason of %d bytes", len(reason))
		}
	})
}

func TestParseRefusal(t *testing.T) {
	tests := []struct {
		name, code, body string
		want             RefusedError
	}{
		{"hub body", "revoked", `{"reject":"revoked","site":"site-1","detail":"revoked at noon"}`, RefusedError{Code: "revoked", Site: "site-1", Detail: "revoked at noon"}},
		{"header wins over body code", "certificate_expired", `{"reject":"other","detail":"d"}`, RefusedError{Code: "certificate_expired", Detail: "d"}},
		{"no body", "unknown_site", ``, RefusedError{Code: "unknown_site", Detail: "the hub sent no detail"}},
		{"control characters", "revoked\x1b[31m", `{"reject":"x","detail":"a\u0007b"}`, RefusedError{Code: "revoked [31m", Detail: "a b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseRefusal(tc.code, []byte(tc.body))
			if *got != tc.want {
				t.Errorf("parseRefusal = %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func FuzzParseRefusal(f *testing.F) {
	f.Add("revoked", []byte(`{"reject":"revoked","site":"s","detail":"d"}`))
	f.Add("", []byte(`not json`))
	f.Fuzz(func(t *testing.T, code string, body []byte) {
		r := parseRefusal(code, body)
		for _, s := range []string{r.Code, r.Site, r.Detail} {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\n\r\x00\x1b") {
				t.Fatalf("refusal field %q is not clean text", s)
			}
		}
		if len(r.Detail) > 1024 || len(r.Code) > 64 {
			t.Fatalf("refusal fields not bounded: code %d bytes, detail %d bytes", len(r.Code), len(r.Detail))
		}
	})
}

func TestRefusalFromResponseNeedsHubHeader(t *testing.T) {
	proxyPage := &http.Response{StatusCode: 403, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("<html>blocked by policy</html>"))}
	if r := refusalFrom(proxyPage); r != nil {
		t.Errorf("a proxy's 403 page was read as a hub refusal: %+v", r)
	}
}

func FuzzParseEnrolResponse(f *testing.F) {
	f.Add([]byte(`{"site_id":"site-1","certificate":"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n","hub_ca":"x","device_ca":"y","tuf_root":"e30="}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out enrolResponse
		if err := parseEnrolResponse(data, &out); err != nil {
			return
		}
		if out.SiteID == "" || out.Certificate == "" || len(out.TUFRoot) == 0 {
			t.Fatalf("accepted an answer without its required fields: %+v", out)
		}
		// Whatever decoded must still fail closed when it does not chain.
		if _, err := checkIssued(out.Certificate, nil, nil, out.SiteID); err == nil {
			t.Fatal("checkIssued accepted a certificate without a key or CA")
		}
	})
}
