// Package audit defines the audit record that every gateway component
// emits and the Recorder interface that stores it. The store itself is
// append-only and hash-chained, so that a changed, reordered or missing
// record is detectable.
package audit

import (
	"context"
	"time"
)

// Record is one audited event: something that changed what runs on a
// device, or who may change it.
type Record struct {
	// Time is when the event happened, in UTC.
	Time time.Time `json:"time"`
	// Actor is who caused the event: "device:MANUFACTURER/SERIAL",
	// "token:ID", "gateway" or "hub".
	Actor string `json:"actor"`
	// Action is a stable dotted name such as "device.checkin",
	// "release.offer", "release.withhold", "download", "install.result",
	// "approval.grant", "config.change" or "telemetry.export".
	Action string `json:"action"`
	// Subject names what the event is about, such as a device
	// "MANUFACTURER/SERIAL" or a release target path.
	Subject string `json:"subject"`
	// Details holds the event's facts as strings, such as a reported
	// version or the reason a release was withheld.
	Details map[string]string `json:"details,omitempty"`
}

// Recorder stores audit records. Record returns only after the record is
// durable, and is safe for concurrent use.
type Recorder interface {
	Record(ctx context.Context, r Record) error
}
