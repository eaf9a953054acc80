package discovery

import (
	"strings"
)

// miekg/dns holds names and TXT strings in presentation format: a byte
// that is special in a label, or any byte outside printable US-ASCII, is
// written as "\X" or "\DDD". These helpers convert between that form and
// raw bytes.

// unescapePresentation returns the raw bytes of a presentation-format
// label or TXT string.
func unescapePresentation(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// escapeTXT returns the presentation form of a raw TXT string.
func escapeTXT(s string) string {
	return escapeBytes(s, func(c byte) bool { return c == '"' || c == '\\' })
}

// escapeLabel returns the presentation form of a raw DNS label.
func escapeLabel(s string) string {
	return escapeBytes(s, func(c byte) bool {
		switch c {
		case '.', ' ', '\'', '@', ';', '(', ')', '"', '\\':
			return true
		}
		return false
	})
}

func escapeBytes(s string, special func(byte) bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		case special(c):
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitFirstLabel splits a presentation-format name after its first
// unescaped dot, returning the raw first label and the rest.
func splitFirstLabel(name string) (label, rest string) {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '.':
			return unescapePresentation(name[:i]), name[i+1:]
		}
	}
	return unescapePresentation(name), ""
}

// instanceName returns the raw instance label of a service instance name
// such as "Pump\ 7.\_wardgate-device._tcp.local." when the name belongs
// to service (a lower-case FQDN such as "_wardgate-device._tcp.local.").
func instanceName(fqdn, service string) (string, bool) {
	label, rest := splitFirstLabel(fqdn)
	if label == "" || !strings.EqualFold(rest, service) {
		return "", false
	}
	return label, true
}

// serviceFQDN returns the lower-case FQDN of a service type such as
// "_wardgate-device._tcp" in the "local." domain.
func serviceFQDN(serviceType string) string {
	return strings.ToLower(strings.TrimSuffix(serviceType, ".")) + ".local."
}

// hostFQDN returns the FQDN of a host label in the "local." domain.
func hostFQDN(host string) string {
	return escapeLabel(host) + ".local."
}
