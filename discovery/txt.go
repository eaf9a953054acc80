package discovery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DNS-SD TXT limits (RFC 6763 section 6). A TXT string is at most 255
// bytes because its length is one byte on the wire. MaxTXTSize is the
// largest whole record accepted. RFC 6763 section 6.2 calls records over
// 1300 bytes NOT RECOMMENDED, because a record that size still fits one
// 1500-byte Ethernet packet, so larger records are rejected as malformed.
const (
	MaxTXTStringLen = 255
	MaxTXTSize      = 1300
	// MaxTXTValueLen is the longest value the device schema accepts for
	// any one text key. Longer values are rejected, not truncated.
	MaxTXTValueLen = 64
)

// TXTSchemaVersion is the device TXT schema version this package writes
// and parses (the "txtvers" key).
const TXTSchemaVersion = 1

// Device TXT keys. See TXT.md for the schema.
const (
	TXTKeyVersion       = "txtvers"
	TXTKeyManufacturer  = "mf"
	TXTKeyModel         = "md"
	TXTKeySerial        = "sn"
	TXTKeySoftware      = "sw"
	TXTKeyHardware      = "hw"
	TXTKeyDeviceClass   = "dc"
	TXTKeyAPIPort       = "api"
	TXTKeyClinicalUse   = "clin"
	TXTKeyInMaintenance = "maint"
)

// ErrMalformedTXT is wrapped by every error that ParseDeviceTXT returns.
var ErrMalformedTXT = errors.New("malformed device TXT record")

// TXTAttribute is one DNS-SD key/value attribute. HasValue is false for a
// boolean attribute written as a bare key without "=".
type TXTAttribute struct {
	Value    string
	HasValue bool
}

// TXTAttributes maps lower-cased keys to attributes.
type TXTAttributes map[string]TXTAttribute

// TXTError lists every problem found in one TXT record.
type TXTError struct {
	Problems []string
}

func (e *TXTError) Error() string {
	return ErrMalformedTXT.Error() + ": " + strings.Join(e.Problems, "; ")
}

// Unwrap returns ErrMalformedTXT.
func (e *TXTError) Unwrap() error { return ErrMalformedTXT }

// ParseTXT parses raw (not presentation-escaped) TXT strings by the
// DNS-SD rules of RFC 6763 section 6. Keys are printable US-ASCII and
// case-insensitive, and the first occurrence of a key wins. A string
// without "=" is a boolean attribute, and a string that starts with "=" or
// is empty is ignored. ParseTXT returns every attribute it could read and,
// when some string was unusable, a *TXTError naming each problem.
func ParseTXT(strs []string) (TXTAttributes, error) {
	attrs := make(TXTAttributes, len(strs))
	var problems []string
	size := 0
	for i, s := range strs {
		size += 1 + len(s)
		if len(s) > MaxTXTStringLen {
			problems = append(problems, fmt.Sprintf("string %d is %d bytes, over the %d-byte limit", i, len(s), MaxTXTStringLen))
			continue
		}
		if s == "" || s[0] == '=' {
			continue
		}
		key, value, hasValue := strings.Cut(s, "=")
		if !validTXTKey(key) {
			problems = append(problems, fmt.Sprintf("string %d has key %q with characters outside printable US-ASCII", i, key))
			continue
		}
		key = strings.ToLower(key)
		if _, seen := attrs[key]; seen {
			continue
		}
		attrs[key] = TXTAttribute{Value: value, HasValue: hasValue}
	}
	if size > MaxTXTSize {
		problems = append(problems, fmt.Sprintf("record is %d bytes, over the %d-byte limit", size, MaxTXTSize))
	}
	if len(problems) > 0 {
		return attrs, &TXTError{Problems: problems}
	}
	return attrs, nil
}

func validTXTKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// DeviceInfo is the set of claims a device makes about itself in its TXT
// record.
type DeviceInfo struct {
	SchemaVersion    int
	Manufacturer     string
	Model            string
	Serial           string
	Version          string
	HardwareRevision string
	DeviceClass      string
	// APIPort is the port of the device's own API, or 0 when not given.
	APIPort       uint16
	InClinicalUse bool
	InMaintenance bool
}

// HasIdentity reports whether the record names a manufacturer and serial,
// the two fields that identify a device in the inventory.
func (d DeviceInfo) HasIdentity() bool { return d.Manufacturer != "" && d.Serial != "" }

// ParseDeviceTXT parses a device's TXT record by the schema in TXT.md.
// It always returns what it could read. The error, which wraps
// ErrMalformedTXT, is non-nil when the record is empty, lacks txtvers,
// manufacturer or serial, or has a value that is oversized or invalid.
// An invalid or oversized value is rejected, so its field stays empty.
func ParseDeviceTXT(strs []string) (DeviceInfo, error) {
	var info DeviceInfo
	attrs, err := ParseTXT(strs)
	var problems []string
	var txtErr *TXTError
	if errors.As(err, &txtErr) {
		problems = append(problems, txtErr.Problems...)
	}
	if len(attrs) == 0 {
		return info, &TXTError{Problems: append(problems, "record has no attributes")}
	}

	if a, ok := attrs[TXTKeyVersion]; !ok || !a.HasValue {
		problems = append(problems, "missing txtvers")
	} else if v, err := strconv.Atoi(a.Value); err != nil || v < 1 || v > 255 {
		problems = append(problems, fmt.Sprintf("txtvers %q is not a version number from 1 to 255", a.Value))
	} else {
		info.SchemaVersion = v
	}

	text := func(key string, dst *string, required bool) {
		a, ok := attrs[key]
		switch {
		case !ok || !a.HasValue || a.Value == "":
			if required {
				problems = append(problems, "missing "+key)
			}
		case len(a.Value) > MaxTXTValueLen:
			problems = append(problems, fmt.Sprintf("%s is %d bytes, over the %d-byte limit", key, len(a.Value), MaxTXTValueLen))
		case !printableText(a.Value):
			problems = append(problems, fmt.Sprintf("%s %q is not printable UTF-8 text", key, a.Value))
		default:
			*dst = a.Value
		}
	}
	text(TXTKeyManufacturer, &info.Manufacturer, true)
	text(TXTKeySerial, &info.Serial, true)
	text(TXTKeyModel, &info.Model, false)
	text(TXTKeySoftware, &info.Version, false)
	text(TXTKeyHardware, &info.HardwareRevision, false)
	text(TXTKeyDeviceClass, &info.DeviceClass, false)
	if info.DeviceClass != "" && !validDeviceClass(info.DeviceClass) {
		problems = append(problems, fmt.Sprintf("dc %q is not a lower-case token of letters, digits and '-'", info.DeviceClass))
		info.DeviceClass = ""
	}

	if a, ok := attrs[TXTKeyAPIPort]; ok {
		p, err := strconv.ParseUint(a.Value, 10, 16)
		if !a.HasValue || err != nil || p == 0 {
			problems = append(problems, fmt.Sprintf("api %q is not a port from 1 to 65535", a.Value))
		} else {
			info.APIPort = uint16(p)
		}
	}

	flag := func(key string, dst *bool) {
		a, ok := attrs[key]
		if !ok {
			return
		}
		if !a.HasValue {
			*dst = true
			return
		}
		switch strings.ToLower(a.Value) {
		case "1", "true", "yes":
			*dst = true
		case "0", "false", "no":
			*dst = false
		default:
			problems = append(problems, fmt.Sprintf("%s %q is not a boolean (use the bare key, or 1 or 0)", key, a.Value))
		}
	}
	flag(TXTKeyClinicalUse, &info.InClinicalUse)
	flag(TXTKeyInMaintenance, &info.InMaintenance)

	if len(problems) > 0 {
		return info, &TXTError{Problems: problems}
	}
	return info, nil
}

func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func validDeviceClass(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// TXT returns the record's raw TXT strings in schema order, with flags as
// bare keys. It returns an error naming the field when a value would not
// parse back (oversized, unprintable, or a missing identity).
func (d DeviceInfo) TXT() ([]string, error) {
	version := d.SchemaVersion
	if version == 0 {
		version = TXTSchemaVersion
	}
	strs := []string{TXTKeyVersion + "=" + strconv.Itoa(version)}
	add := func(key, value string) {
		if value != "" {
			strs = append(strs, key+"="+value)
		}
	}
	add(TXTKeyManufacturer, d.Manufacturer)
	add(TXTKeyModel, d.Model)
	add(TXTKeySerial, d.Serial)
	add(TXTKeySoftware, d.Version)
	add(TXTKeyHardware, d.HardwareRevision)
	add(TXTKeyDeviceClass, d.DeviceClass)
	if d.APIPort != 0 {
		add(TXTKeyAPIPort, strconv.Itoa(int(d.APIPort)))
	}
	if d.InClinicalUse {
		strs = append(strs, TXTKeyClinicalUse)
	}
	if d.InMaintenance {
		strs = append(strs, TXTKeyInMaintenance)
	}
	if _, err := ParseDeviceTXT(strs); err != nil {
		return nil, fmt.Errorf("encoding TXT record for %s/%s: %w", d.Manufacturer, d.Serial, err)
	}
	return strs, nil
}
