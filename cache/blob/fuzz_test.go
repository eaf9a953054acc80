package blob

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds index values as they might be read back from a
// damaged disk. Decoding must not panic, and whatever it accepts must
// encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	t0 := time.Date(2025, 10, 26, 1, 30, 0, 0, time.UTC)
	f.Add(encodeRecord(record{Length: 0, Created: t0, LastAccess: t0}))
	f.Add(encodeRecord(record{Length: 100 << 20, SHA512: bytes.Repeat([]byte{0xab}, 64), Created: t0, LastAccess: t0.Add(time.Hour)}))
	f.Add(encodeRecord(record{Length: 1 << 62, Created: time.Unix(0, -1), LastAccess: time.Unix(0, 1<<62)}))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 0x80, 0x00, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 5, 0, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		if rec.Length < 0 {
			t.Fatalf("decoded negative length %d from %x", rec.Length, b)
		}
		if rec.SHA512 != nil && len(rec.SHA512) != 64 {
			t.Fatalf("decoded SHA-512 of %d bytes from %x", len(rec.SHA512), b)
		}
		if again := encodeRecord(rec); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}

// FuzzDecodeTotals does the same for the totals value.
func FuzzDecodeTotals(f *testing.F) {
	f.Add(encodeTotals(totals{}))
	f.Add(encodeTotals(totals{Bytes: 1 << 40, Blobs: 12345}))
	f.Add([]byte{1, 0xff})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tot, err := decodeTotals(b)
		if err != nil {
			return
		}
		if tot.Bytes < 0 || tot.Blobs < 0 {
			t.Fatalf("decoded negative totals %+v from %x", tot, b)
		}
		if again := encodeTotals(tot); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}

// FuzzParseKeys feeds index keys. Accepted keys must name a well-formed
// SHA-256 (and reason) and rebuild to the same key.
func FuzzParseKeys(f *testing.F) {
	sha := hexOf(bytes.Repeat([]byte{0x5a}, 32))
	f.Add(string(recordKey(sha)))
	f.Add(string(pinKey(sha, "rollout-12")))
	f.Add(string(pinKey(sha, "a/b c")))
	f.Add(recordPrefix + "ABC")
	f.Add(pinPrefix + sha + "/")
	f.Add(pinPrefix + sha)
	f.Add(totalsKey)
	f.Fuzz(func(t *testing.T, k string) {
		if sha, err := parseRecordKey([]byte(k)); err == nil {
			if checkHex(sha) != nil || string(recordKey(sha)) != k {
				t.Fatalf("record key %q parsed to %q", k, sha)
			}
		}
		if sha, reason, err := parsePinKey([]byte(k)); err == nil {
			if checkHex(sha) != nil || checkReason(reason) != nil || string(pinKey(sha, reason)) != k {
				t.Fatalf("pin key %q parsed to %q, %q", k, sha, reason)
			}
		}
	})
}
