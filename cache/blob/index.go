package blob

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Keys under the "blob/" prefix of the shared badger DB:
//
//	blob/b/<sha256hex>           record of one committed blob (see encodeRecord)
//	blob/p/<sha256hex>/<reason>  one pin; the value is the pin time
//	blob/t                       totals: stored bytes and blob count
//	blob/s                       scrub progress (see encodeScrubCursor)
const (
	keyPrefix       = "blob/"
	recordPrefix    = keyPrefix + "b/"
	pinPrefix       = keyPrefix + "p/"
	totalsKey       = keyPrefix + "t"
	scrubKey        = keyPrefix + "s"
	recordVersion   = 1
	totalsVersion   = 1
	maxReasonLength = 256
)

// record is the index entry of one committed blob. The SHA-256 is the
// key, not part of the value.
type record struct {
	Length     int64
	SHA512     []byte // nil when the blob was committed without one
	Created    time.Time
	LastAccess time.Time
}

// errRecord reports an index value that cannot be decoded.
var errRecord = errors.New("malformed blob index record")

func recordKey(sha string) []byte { return []byte(recordPrefix + sha) }

func pinKey(sha, reason string) []byte { return []byte(pinPrefix + sha + "/" + reason) }

// encodeRecord lays out a record as:
//
//	version (1 byte) | flags (1 byte; bit 0: SHA-512 present) |
//	length (uvarint) | created unix ns (varint) | last access unix ns (varint) |
//	SHA-512 (64 bytes, when flagged)
func encodeRecord(r record) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+64)
	flags := byte(0)
	if r.SHA512 != nil {
		flags |= 1
	}
	b = append(b, recordVersion, flags)
	b = binary.AppendUvarint(b, uint64(r.Length))
	b = binary.AppendVarint(b, r.Created.UnixNano())
	b = binary.AppendVarint(b, r.LastAccess.UnixNano())
	if r.SHA512 != nil {
		b = append(b, r.SHA512...)
	}
	return b
}

// decodeRecord parses a value written by encodeRecord. It accepts only
// the canonical encoding, so that decode followed by encode gives back the
// same bytes.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < 2 {
		return r, fmt.Errorf("%w: %d bytes, want at least 2", errRecord, len(b))
	}
	if b[0] != recordVersion {
		return r, fmt.Errorf("%w: version %d, want %d", errRecord, b[0], recordVersion)
	}
	flags := b[1]
	if flags&^1 != 0 {
		return r, fmt.Errorf("%w: unknown flags %#x", errRecord, flags)
	}
	b = b[2:]
	length, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(length) {
		return r, fmt.Errorf("%w: bad length field", errRecord)
	}
	if length > 1<<62 {
		return r, fmt.Errorf("%w: length %d out of range", errRecord, length)
	}
	b = b[n:]
	created, n := binary.Varint(b)
	if n <= 0 || n != varintLen(created) {
		return r, fmt.Errorf("%w: bad creation time", errRecord)
	}
	b = b[n:]
	access, n := binary.Varint(b)
	if n <= 0 || n != varintLen(access) {
		return r, fmt.Errorf("%w: bad access time", errRecord)
	}
	b = b[n:]
	if flags&1 != 0 {
		if len(b) != 64 {
			return r, fmt.Errorf("%w: SHA-512 of %d bytes, want 64", errRecord, len(b))
		}
		r.SHA512 = append([]byte(nil), b...)
		b = nil
	}
	if len(b) != 0 {
		return r, fmt.Errorf("%w: %d trailing bytes", errRecord, len(b))
	}
	r.Length = int64(length)
	r.Created = time.Unix(0, created)
	r.LastAccess = time.Unix(0, access)
	return r, nil
}

func uvarintLen(v uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], v)
}

func varintLen(v int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], v)
}

// totals is the persisted sum over all records, kept in the same
// transaction as each record change.
type totals struct {
	Bytes int64
	Blobs int64
}

func encodeTotals(t totals) []byte {
	b := []byte{totalsVersion}
	b = binary.AppendUvarint(b, uint64(t.Bytes))
	return binary.AppendUvarint(b, uint64(t.Blobs))
}

func decodeTotals(b []byte) (totals, error) {
	var t totals
	if len(b) < 1 || b[0] != totalsVersion {
		return t, fmt.Errorf("%w: bad totals version", errRecord)
	}
	b = b[1:]
	bytes, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(bytes) || bytes > 1<<62 {
		return t, fmt.Errorf("%w: bad totals bytes", errRecord)
	}
	b = b[n:]
	blobs, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(blobs) || blobs > 1<<62 || n != len(b) {
		return t, fmt.Errorf("%w: bad totals count", errRecord)
	}
	return totals{Bytes: int64(bytes), Blobs: int64(blobs)}, nil
}

// parseRecordKey returns the SHA-256 hex of a record key.
func parseRecordKey(k []byte) (string, error) {
	s, ok := strings.CutPrefix(string(k), recordPrefix)
	if !ok || checkHex(s) != nil {
		return "", fmt.Errorf("%w: key %q is not %s<sha256hex>", errRecord, k, recordPrefix)
	}
	return s, nil
}

// parsePinKey returns the SHA-256 hex and reason of a pin key.
func parsePinKey(k []byte) (sha, reason string, err error) {
	s, ok := strings.CutPrefix(string(k), pinPrefix)
	if !ok || len(s) < 66 || s[64] != '/' || checkHex(s[:64]) != nil || checkReason(s[65:]) != nil {
		return "", "", fmt.Errorf("%w: key %q is not %s<sha256hex>/<reason>", errRecord, k, pinPrefix)
	}
	return s[:64], s[65:], nil
}

// checkHex reports whether s is a SHA-256 in lowercase hex.
func checkHex(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("%w: SHA-256 %q has %d characters, want 64 lowercase hex digits", ErrInvalid, s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: SHA-256 %q has %q at %d, want lowercase hex digits only", ErrInvalid, s, c, i)
		}
	}
	return nil
}

// checkReason reports whether a pin reason is usable as part of a key.
func checkReason(reason string) error {
	if reason == "" || len(reason) > maxReasonLength {
		return fmt.Errorf("%w: pin reason %q must be 1 to %d bytes", ErrInvalid, reason, maxReasonLength)
	}
	for _, c := range []byte(reason) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: pin reason %q contains a control character; use printable text", ErrInvalid, reason)
		}
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
