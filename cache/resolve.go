package cache

// ResolveTarget returns the target that a device-facing target path
// names, as ServeTarget would serve it: a consistent-snapshot name
// ("dir/HASH.base") or a plain target path, escaped as on the wire.
func (m *Mirror) ResolveTarget(escapedPath string) (Target, bool) {
	p, ok := decodeTargetPath(escapedPath)
	if !ok {
		return Target{}, false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	st, ok := m.served[p]
	if !ok || (!st.until.IsZero() && !m.opts.Now().Before(st.until)) {
		return Target{}, false
	}
	return st.t, true
}

// TargetsBySHA256 returns every current target whose SHA-256 (lowercase
// hex) is sha256hex. Two releases may ship identical bytes under
// different paths, each with its own custom metadata.
func (m *Mirror) TargetsBySHA256(sha256hex string) []Target {
	var out []Target
	for _, t := range m.Targets() {
		if t.SHA256() == sha256hex {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		if t, ok := m.TargetBySHA256(sha256hex); ok {
			out = append(out, t)
		}
	}
	return out
}
