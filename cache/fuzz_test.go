package cache

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 100-199/*", "bytes 5-4/10", "bytes */100", "bytes 0-0/1",
		"bytes 1-2/2", "bytes -1-5/10", "bytes 0-9223372036854775807/9223372036854775807", "items 0-1/2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if start < 0 || end < start || (total != -1 && end >= total) {
			t.Fatalf("%q parsed to %d-%d/%d, which is not a valid range", s, start, end, total)
		}
		tot := "*"
		if total >= 0 {
			tot = fmt.Sprint(total)
		}
		again := fmt.Sprintf("bytes %d-%d/%s", start, end, tot)
		s2, e2, t2, err := parseContentRange(again)
		if err != nil || s2 != start || e2 != end || t2 != total {
			t.Fatalf("%q parsed to %d-%d/%d, but its canonical form %q gives %d-%d/%d, %v", s, start, end, total, again, s2, e2, t2, err)
		}
	})
}

func FuzzDecodeRequestPaths(f *testing.F) {
	for _, s := range []string{"pump/3.2.0/abc.pump.img", "team%2Fa.json", "2.team%20monitor.json", "..%2F..%2Fetc%2Fpasswd",
		"a//b", "%zz", "timestamp.json", ".json", "a/./b", "x%00y.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, ok := decodeTargetPath(s); ok {
			for _, seg := range strings.Split(p, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("target path %q decoded to %q with segment %q", s, p, seg)
				}
			}
			if strings.ContainsAny(p, "\x00\\") {
				t.Fatalf("target path %q decoded to %q with a NUL or backslash", s, p)
			}
			if q, ok := decodeTargetPath(escapePath(p)); !ok || q != p {
				t.Fatalf("target path %q: escaping and decoding %q gives %q, %v", s, p, q, ok)
			}
		}
		if name, ok := decodeMetaName(s); ok {
			if !strings.HasSuffix(name, ".json") || len(name) <= len(".json") || strings.Contains(name, "\x00") {
				t.Fatalf("metadata name %q decoded to %q", s, name)
			}
			if again, ok := decodeMetaName(url.PathEscape(name)); !ok || again != name {
				t.Fatalf("metadata name %q: escaping and decoding %q gives %q, %v", s, name, again, ok)
			}
		}
	})
}

// FuzzNormalizeRange checks that any Range header becomes either no
// header or a canonical byte range set of at most maxRanges ranges, each
// within a body of the given size.
func FuzzNormalizeRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-0", "bytes=- 0", "bytes=-+0", "Bytes=0-1,5-", "items=0-1", "bytes=5-2",
		"bytes=0-99999999999999999999", "bytes=-99999999999999999999", "bytes=,,0-1, ,", "bytes=", "bytes=1000-"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		r := &http.Request{Header: http.Header{"Range": {h}}}
		NormalizeRange(r, size)
		got, ok := r.Header["Range"]
		if !ok {
			return
		}
		if len(got) != 1 {
			t.Fatalf("%q became %d Range headers", h, len(got))
		}
		set, ok := strings.CutPrefix(got[0], "bytes=")
		if !ok || set == "" {
			t.Fatalf("%q became %q, not a byte range set", h, got[0])
		}
		specs := strings.Split(set, ",")
		if len(specs) > maxRanges {
			t.Fatalf("%q became %d ranges, more than %d", h, len(specs), maxRanges)
		}
		for _, spec := range specs {
			first, last, ok := strings.Cut(spec, "-")
			a, errA := strconv.ParseInt(first, 10, 64)
			b, errB := strconv.ParseInt(last, 10, 64)
			switch {
			case !ok:
				t.Fatalf("%q became range %q without a dash", h, spec)
			case got[0] == "bytes="+strconv.FormatInt(size, 10)+"-":
				// Every range was unsatisfiable: ServeContent responds with 416.
			case first == "" && (errB != nil || b <= 0 || b > size):
				t.Fatalf("%q became suffix range %q outside 1..%d", h, spec, size)
			case first != "" && (errA != nil || a < 0 || a >= size):
				t.Fatalf("%q became range %q starting outside the %d bytes", h, spec, size)
			case first != "" && last != "" && (errB != nil || b < a || b >= size):
				t.Fatalf("%q became range %q ending outside %d..%d", h, spec, a, size-1)
			}
		}
	})
}
