package cache

import (
	"encoding/json"
	"fmt"
	"time"
)

// CustomKey is the key under which a TUF target's custom metadata holds
// Wardgate's description of the file.
const CustomKey = "wardgate"

// Kinds of target that a Wardgate repository publishes.
const (
	KindRelease      = "release"
	KindSBOM         = "sbom"
	KindEntitlements = "entitlements"
	KindAdvisory     = "advisory"
)

// TargetMeta is the custom metadata of a target in a Wardgate repository.
// The manufacturer signs it as part of the targets role, so it is as
// trustworthy as the file hashes next to it.
type TargetMeta struct {
	Kind string `json:"kind"`

	// Fields of a release image.
	Product           string            `json:"product,omitempty"`
	Version           string            `json:"version,omitempty"`
	Channel           string            `json:"channel,omitempty"`
	Models            []string          `json:"models,omitempty"`
	HardwareRevisions []string          `json:"hardware_revisions,omitempty"`
	Requires          map[string]string `json:"requires,omitempty"`
	AllowRollback     bool              `json:"allow_rollback,omitempty"`
	SecurityFix       bool              `json:"security_fix,omitempty"`
	InstallDuration   Duration          `json:"install_duration,omitempty"`
	// SBOM is the target path of the SBOM that ships with the release.
	SBOM string `json:"sbom,omitempty"`

	// Release is, for an SBOM or advisory, the target path of the release
	// it describes.
	Release string `json:"release,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "15m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "15m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// ParseTargetMeta reads the Wardgate part of a target's custom metadata.
// A target without it returns ok=false and no error.
func ParseTargetMeta(custom *json.RawMessage) (meta TargetMeta, ok bool, err error) {
	if custom == nil {
		return TargetMeta{}, false, nil
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(*custom, &outer); err != nil {
		return TargetMeta{}, false, fmt.Errorf("parsing target custom metadata: %w", err)
	}
	raw, ok := outer[CustomKey]
	if !ok {
		return TargetMeta{}, false, nil
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return TargetMeta{}, false, fmt.Errorf("parsing %q custom metadata: %w", CustomKey, err)
	}
	if meta.Kind == KindRelease && (meta.Version == "" || len(meta.Models) == 0) {
		return TargetMeta{}, false, fmt.Errorf("release metadata needs a version and at least one model")
	}
	return meta, true, nil
}

// Custom wraps meta as a target's custom metadata.
func (meta TargetMeta) Custom() (*json.RawMessage, error) {
	b, err := json.Marshal(map[string]TargetMeta{CustomKey: meta})
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &raw, nil
}
