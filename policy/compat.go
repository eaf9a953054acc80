package policy

import (
	"slices"
	"strings"
)

// checkCompatibility appends the compatibility, version and prerequisite
// reasons for d and r, and reports whether they all pass.
func (e *Evaluator) checkCompatibility(rs *reasons, d *Device, r *Release, pr *preparedRelease) bool {
	if missing := missingInventory(d, r); len(missing) > 0 {
		rs.block(CodeInventoryIncomplete, "device inventory lacks "+strings.Join(missing, ", ")+": the device must report them before it can be updated")
		return false
	}
	if len(r.Models) == 0 {
		rs.block(CodeReleaseInvalid, "release "+r.Target+" lists no supported models")
		return false
	}
	if pr.versionErr {
		rs.block(CodeReleaseInvalid, "release "+r.Target+" has no version")
		return false
	}
	ok := true
	if !slices.Contains(r.Models, d.Model) {
		rs.block(CodeModelUnsupported, pr.message(msgModel, d.Model))
		ok = false
	}
	if len(r.HardwareRevisions) > 0 && !slices.Contains(r.HardwareRevisions, d.HardwareRevision) {
		rs.block(CodeHardwareUnsupported, pr.message(msgHardware, d.HardwareRevision))
		ok = false
	}
	dv, _ := ParseVersion(d.Version) // not empty: missingInventory checked it
	switch c := dv.Compare(pr.version); {
	case c == 0:
		rs.block(CodeUpToDate, "version "+d.Version+" is already installed")
		ok = false
	case c > 0 && !r.AllowRollback:
		rs.block(CodeDowngrade, pr.message(msgDowngrade, d.Version))
		ok = false
	case c > 0:
		rs.pass(CodeRollback, pr.message(msgRollback, d.Version))
	default:
		rs.pass(CodeUpgrade, pr.message(msgUpgrade, d.Version))
	}
	if !checkPrerequisites(rs, d, r, pr) {
		ok = false
	}
	if ok {
		if d.HardwareRevision != "" {
			rs.pass(CodeCompatible, "model "+d.Model+" hardware revision "+d.HardwareRevision+" is supported")
		} else {
			rs.pass(CodeCompatible, "model "+d.Model+" is supported")
		}
	}
	return ok
}

// missingInventory lists the device fields that the evaluation of r needs
// and that are empty.
func missingInventory(d *Device, r *Release) []string {
	var missing []string
	add := func(name, value string) {
		if strings.TrimSpace(value) == "" {
			missing = append(missing, name)
		}
	}
	add("manufacturer", d.Manufacturer)
	add("serial", d.Serial)
	add("model", d.Model)
	add("version", d.Version)
	if len(r.HardwareRevisions) > 0 {
		add("hardware revision", d.HardwareRevision)
	}
	return missing
}

func checkPrerequisites(rs *reasons, d *Device, r *Release, pr *preparedRelease) bool {
	ok := true
	for i := range pr.reqs {
		req := &pr.reqs[i]
		if req.err != nil {
			rs.block(CodeReleaseInvalid, "release "+r.Target+" has an invalid requirement for "+req.name+": "+req.err.Error())
			ok = false
			continue
		}
		installed, found := d.Components[req.name]
		if !found || strings.TrimSpace(installed) == "" {
			rs.block(CodePrerequisiteMissing, "component "+req.name+" "+req.expr+" is required but the device reports no "+req.name)
			ok = false
			continue
		}
		if msg := req.unmet(installed); msg != "" {
			rs.block(CodePrerequisiteUnmet, msg)
			ok = false
		}
	}
	return ok
}
