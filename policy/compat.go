package policy

import (
	"slices"
	"sort"
	"strings"
)

// checkCompatibility appends the compatibility, version and prerequisite
// reasons for d and r, and reports whether they all pass.
func (e *Evaluator) checkCompatibility(rs *reasons, d Device, r Release) bool {
	if missing := missingInventory(d, r); len(missing) > 0 {
		rs.block(CodeInventoryIncomplete, "device inventory lacks "+strings.Join(missing, ", ")+": the device must report them before it can be updated")
		return false
	}
	if len(r.Models) == 0 {
		rs.block(CodeReleaseInvalid, "release "+r.Target+" lists no supported models")
		return false
	}
	rv, err := ParseVersion(r.Version)
	if err != nil {
		rs.block(CodeReleaseInvalid, "release "+r.Target+" has no version")
		return false
	}
	ok := true
	if !slices.Contains(r.Models, d.Model) {
		rs.block(CodeModelUnsupported, "model "+d.Model+" is not supported by this release (supported: "+strings.Join(r.Models, ", ")+")")
		ok = false
	}
	if len(r.HardwareRevisions) > 0 && !slices.Contains(r.HardwareRevisions, d.HardwareRevision) {
		rs.block(CodeHardwareUnsupported, "hardware revision "+d.HardwareRevision+" is not supported (supported: "+strings.Join(r.HardwareRevisions, ", ")+")")
		ok = false
	}
	dv, _ := ParseVersion(d.Version) // not empty: missingInventory checked it
	switch c := dv.Compare(rv); {
	case c == 0:
		rs.block(CodeUpToDate, "version "+d.Version+" is already installed")
		ok = false
	case c > 0 && !r.AllowRollback:
		rs.block(CodeDowngrade, "installed version "+d.Version+" is newer than "+r.Version+" and the release is not marked as an allowed rollback")
		ok = false
	case c > 0:
		rs.pass(CodeRollback, "rollback from "+d.Version+" to "+r.Version+" is allowed by the release")
	default:
		rs.pass(CodeUpgrade, "upgrade from "+d.Version+" to "+r.Version)
	}
	if !e.checkPrerequisites(rs, d, r) {
		ok = false
	}
	if ok {
		msg := "model " + d.Model
		if d.HardwareRevision != "" {
			msg += " hardware revision " + d.HardwareRevision
		}
		rs.pass(CodeCompatible, msg+" is supported")
	}
	return ok
}

// missingInventory lists the device fields that the evaluation of r needs
// and that are empty.
func missingInventory(d Device, r Release) []string {
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

func (e *Evaluator) checkPrerequisites(rs *reasons, d Device, r Release) bool {
	if len(r.Requires) == 0 {
		return true
	}
	names := make([]string, 0, len(r.Requires))
	for name := range r.Requires {
		names = append(names, name)
	}
	sort.Strings(names)
	ok := true
	for _, name := range names {
		expr := r.Requires[name]
		c, err := e.constraint(expr)
		if err != nil {
			rs.block(CodeReleaseInvalid, "release "+r.Target+" has an invalid requirement for "+name+": "+err.Error())
			ok = false
			continue
		}
		installed, found := d.Components[name]
		if !found || strings.TrimSpace(installed) == "" {
			rs.block(CodePrerequisiteMissing, "component "+name+" "+expr+" is required but the device reports no "+name)
			ok = false
			continue
		}
		v, _ := ParseVersion(installed)
		if !c.Check(v) {
			rs.block(CodePrerequisiteUnmet, "component "+name+" "+installed+" is installed, the release requires "+expr)
			ok = false
		}
	}
	return ok
}
