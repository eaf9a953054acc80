package discovery

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// ParseFilter builds a Filter from query parameters or command-line
// flags with the same names: manufacturer, model, version, class,
// interface (or its alias vlan), state, address and verified. It returns
// an error naming any unknown parameter or invalid value.
func ParseFilter(values url.Values) (Filter, error) {
	var f Filter
	for key, vs := range values {
		if len(vs) != 1 {
			return Filter{}, fmt.Errorf("filter parameter %q is given %d times; give it once", key, len(vs))
		}
		v := vs[0]
		switch key {
		case "manufacturer":
			f.Manufacturer = v
		case "model":
			f.Model = v
		case "version":
			f.Version = v
		case "class":
			f.DeviceClass = v
		case "interface", "vlan":
			if f.Interface != "" && f.Interface != v {
				return Filter{}, fmt.Errorf("filter parameters interface and vlan differ (%q, %q); give one", f.Interface, v)
			}
			f.Interface = v
		case "state":
			s, err := ParseState(v)
			if err != nil {
				return Filter{}, err
			}
			f.State = s
		case "address":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return Filter{}, fmt.Errorf("filter address %q is not an IP address", v)
			}
			f.Address = a
		case "verified":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Filter{}, fmt.Errorf("filter verified %q is not a boolean; use true or false", v)
			}
			f.Verified = &b
		default:
			return Filter{}, fmt.Errorf("unknown filter parameter %q: use manufacturer, model, version, class, interface, vlan, state, address or verified", key)
		}
	}
	return f, nil
}

// WriteDeviceTable writes one line per device as an aligned text table
// for a terminal. Text reported by devices is shown with control
// characters escaped, so a device cannot send terminal escape sequences.
func WriteDeviceTable(w io.Writer, devices []Device) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MANUFACTURER\tSERIAL\tMODEL\tVERSION\tCLASS\tSTATE\tVERIFIED\tINTERFACES\tADDRESSES\tLAST SEEN")
	for _, d := range devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n",
			clean(d.Manufacturer), clean(d.Serial), clean(d.Model), clean(d.Version), clean(d.DeviceClass),
			d.State, d.Verified, strings.Join(d.Interfaces, ","), currentAddresses(d), formatTime(d.LastSeen))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing device table: %w", err)
	}
	return nil
}

// WriteDeviceDetail writes one device, its links, its address history
// and its event history as text for a terminal.
func WriteDeviceDetail(w io.Writer, d Device, history []Event) error {
	var b strings.Builder
	field := func(name, value string) { fmt.Fprintf(&b, "%-18s %s\n", name+":", value) }
	field("Manufacturer", clean(d.Manufacturer))
	field("Serial", clean(d.Serial))
	field("Model", clean(d.Model))
	field("Hardware revision", clean(d.HardwareRevision))
	field("Version", clean(d.Version))
	field("Device class", clean(d.DeviceClass))
	field("State", fmt.Sprintf("%s since %s", d.State, formatTime(d.StateSince)))
	field("Verified", strconv.FormatBool(d.Verified))
	field("Last check-in", formatTime(d.LastCheckIn))
	field("First seen", formatTime(d.FirstSeen))
	field("Last seen", formatTime(d.LastSeen))
	field("In clinical use", strconv.FormatBool(d.InClinicalUse))
	field("In maintenance", strconv.FormatBool(d.InMaintenance))
	if d.APIPort != 0 {
		field("API port", strconv.Itoa(int(d.APIPort)))
	}
	if d.Claim != nil {
		field("Unverified claim", fmt.Sprintf("model %s, version %s, hardware %s on %s at %s", clean(d.Claim.Model),
			clean(d.Claim.Version), clean(d.Claim.HardwareRevision), d.Claim.Interface, formatTime(d.Claim.Time)))
	}
	if len(d.Components) > 0 {
		b.WriteString("Components:\n")
		for _, name := range slices.Sorted(maps.Keys(d.Components)) {
			fmt.Fprintf(&b, "  %s %s\n", clean(name), clean(d.Components[name]))
		}
	}
	b.WriteString("Interfaces:\n")
	for _, l := range d.Links {
		state := "present"
		if !l.Present {
			state = "departed " + formatTime(l.DepartedAt)
		}
		fmt.Fprintf(&b, "  %s instance %q addresses %v, %s, seen %s to %s\n",
			l.Interface, clean(l.Instance), l.Addresses, state, formatTime(l.FirstSeen), formatTime(l.LastSeen))
	}
	b.WriteString("Address history:\n")
	for _, a := range d.Addresses {
		fmt.Fprintf(&b, "  %s on %s (%s), %s to %s\n", a.Address, a.Interface, a.Source, formatTime(a.FirstSeen), formatTime(a.LastSeen))
	}
	b.WriteString("History:\n")
	for _, e := range history {
		fmt.Fprintf(&b, "  %s  %-18s %s\n", formatTime(e.Time), e.Kind, formatDetails(e.Details))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing device detail: %w", err)
	}
	return nil
}

// DeviceReport is the JSON form of one device with its history, as
// WriteDeviceJSON writes it.
type DeviceReport struct {
	Device  Device  `json:"device"`
	History []Event `json:"history"`
}

// WriteDevicesJSON writes devices as a JSON array.
func WriteDevicesJSON(w io.Writer, devices []Device) error {
	if devices == nil {
		devices = []Device{}
	}
	if err := json.NewEncoder(w).Encode(devices); err != nil {
		return fmt.Errorf("writing devices as JSON: %w", err)
	}
	return nil
}

// WriteDeviceJSON writes one device and its history as a DeviceReport.
func WriteDeviceJSON(w io.Writer, d Device, history []Event) error {
	if history == nil {
		history = []Event{}
	}
	if err := json.NewEncoder(w).Encode(DeviceReport{Device: d, History: history}); err != nil {
		return fmt.Errorf("writing device as JSON: %w", err)
	}
	return nil
}

func currentAddresses(d Device) string {
	var out []string
	for _, l := range d.Links {
		for _, a := range l.Addresses {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, ",")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func formatDetails(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, clean(k)+"="+clean(m[k]))
	}
	return strings.Join(parts, " ")
}

// clean escapes control and other non-printable characters, and tabs,
// which would break the table's columns.
func clean(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	for _, r := range s {
		if r == '\t' || !unicode.IsPrint(r) {
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
