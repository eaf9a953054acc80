// Package wire defines the JSON bodies of the device API, shared by the
// gateway and by clients such as devicesim.
package wire

// CheckInRequest is what a device reports when it checks in. Its
// identity comes from its client certificate, not from the body.
type CheckInRequest struct {
	Model            string            `json:"model"`
	HardwareRevision string            `json:"hardware_revision"`
	Version          string            `json:"version"`
	DeviceClass      string            `json:"device_class,omitempty"`
	Components       map[string]string `json:"components,omitempty"`
	InClinicalUse    bool              `json:"in_clinical_use"`
	InMaintenance    bool              `json:"in_maintenance"`
}

// CheckInResponse lists the releases the device may install now and,
// for every other release of its manufacturer's repository, why not.
type CheckInResponse struct {
	Device   string     `json:"device"`
	Offers   []Offer    `json:"offers"`
	Withheld []Withheld `json:"withheld"`
	// RetryAfterSeconds, when set, asks the device to check in again
	// after that long.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
}

// Offer is one release the device may download and install now.
type Offer struct {
	Target  string `json:"target"`
	Version string `json:"version"`
	// URL is the content-addressed download path on the gateway.
	URL    string            `json:"url"`
	Length int64             `json:"length"`
	Hashes map[string]string `json:"hashes"`
	// SBOM is the target path of the release's SBOM, and SBOMURL its
	// download path.
	SBOM    string `json:"sbom,omitempty"`
	SBOMURL string `json:"sbom_url,omitempty"`
	// InstallBy is when the maintenance window closes, RFC 3339, if one
	// is open.
	InstallBy string `json:"install_by,omitempty"`
}

// Withheld is a release the device may not install now, with the
// ordered reasons.
type Withheld struct {
	Target  string   `json:"target"`
	Version string   `json:"version"`
	Reasons []Reason `json:"reasons"`
}

// Reason is one reason a release was withheld.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// StatusReport is a device's report on an install.
type StatusReport struct {
	Target string `json:"target"`
	// State is "downloading", "downloaded", "installing", "installed" or
	// "failed".
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// Error is the body of every 4xx and 5xx answer of the device API.
type Error struct {
	Error string `json:"error"`
}
