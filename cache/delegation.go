package cache

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Bounds of the delegation walk. goTUFMaxDelegations is go-tuf's default
// MaxDelegations, used when resolving a target so the mirror picks the
// role a device picks; maxMirroredRoles bounds how many delegated roles a
// repository may make the gateway fetch.
const (
	goTUFMaxDelegations = 32
	maxMirroredRoles    = 4096
	maxDelegatedLength  = 5_000_000
)

// loadedRole is a delegated targets role verified in this refresh.
type loadedRole struct {
	name    string
	parents []string
	version int64
	data    []byte
	md      *metadata.Metadata[metadata.TargetsType]
}

// delegation is one parent's delegation of a role, in a form that can be
// compared between parents.
type delegation struct {
	name string
	def  string // canonical JSON of keys, threshold, paths and terminating
}

// delegationsOf lists the roles that md delegates to, in order.
func delegationsOf(md *metadata.Metadata[metadata.TargetsType]) ([]delegation, error) {
	d := md.Signed.Delegations
	if d == nil {
		return nil, nil
	}
	var out []delegation
	for _, r := range d.Roles {
		keys := map[string]*metadata.Key{}
		for _, id := range r.KeyIDs {
			keys[id] = d.Keys[id]
		}
		paths := slices.Clone(r.Paths)
		prefixes := slices.Clone(r.PathHashPrefixes)
		ids := slices.Clone(r.KeyIDs)
		slices.Sort(ids)
		def, err := json.Marshal(struct {
			Keys        map[string]*metadata.Key
			KeyIDs      []string
			Threshold   int
			Terminating bool
			Paths       []string
			Prefixes    []string
		}{keys, ids, r.Threshold, r.Terminating, paths, prefixes})
		if err != nil {
			return nil, fmt.Errorf("encoding delegation of %q: %w", r.Name, err)
		}
		out = append(out, delegation{name: r.Name, def: string(def)})
	}
	if s := d.SuccinctRoles; s != nil {
		keys := map[string]*metadata.Key{}
		for _, id := range s.KeyIDs {
			keys[id] = d.Keys[id]
		}
		for i, name := range s.GetRoles() {
			def, err := json.Marshal(struct {
				Keys      map[string]*metadata.Key
				Threshold int
				Bits      int
				Prefix    string
				Bin       int
			}{keys, s.Threshold, s.BitLength, s.NamePrefix, i})
			if err != nil {
				return nil, fmt.Errorf("encoding succinct delegation %q: %w", name, err)
			}
			out = append(out, delegation{name: name, def: string(def)})
		}
	}
	return out, nil
}

// walkDelegations fetches and verifies every delegated targets role
// reachable from the top-level targets role, depth first in delegation
// order. A role delegated by several parents is verified against each of
// them, and the update is refused when they delegate it differently.
func (m *Mirror) walkDelegations(trusted *trustedSet, fetch *tunnelFetcher) (roles []loadedRole, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.metrics.panics.Inc()
			roles, err = nil, fmt.Errorf("TUF update refused: verifier panicked on delegated metadata: %v", r)
		}
	}()
	type job struct{ parent string }
	defs := map[string]string{} // role -> definition of its first delegator
	index := map[string]int{}   // role -> position in roles
	stack := []job{{metadata.TARGETS}}
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		parent := trusted.Targets[j.parent]
		dels, err := delegationsOf(parent)
		if err != nil {
			return nil, err
		}
		var children []job
		for _, d := range dels {
			if d.name == metadata.TARGETS || d.name == metadata.ROOT || d.name == metadata.SNAPSHOT || d.name == metadata.TIMESTAMP {
				return nil, fmt.Errorf("TUF update refused: role %s delegates to the reserved name %q", j.parent, d.name)
			}
			if first, seen := defs[d.name]; seen {
				if first != d.def {
					return nil, fmt.Errorf("TUF update refused: delegated role %q is delegated differently by %s and %s; "+
						"devices would verify it against only one of them", d.name, roles[index[d.name]].parents[0], j.parent)
				}
				lr := &roles[index[d.name]]
				if err := parent.VerifyDelegate(d.name, lr.md); err != nil {
					return nil, fmt.Errorf("TUF update refused: role %q does not verify against its delegator %s: %w", d.name, j.parent, err)
				}
				if !slices.Contains(lr.parents, j.parent) {
					lr.parents = append(lr.parents, j.parent)
				}
				continue
			}
			if len(roles) >= maxMirroredRoles {
				return nil, fmt.Errorf("TUF update refused: more than %d delegated roles", maxMirroredRoles)
			}
			lr, err := m.loadRole(trusted, fetch, d.name, j.parent)
			if err != nil {
				return nil, err
			}
			defs[d.name] = d.def
			index[d.name] = len(roles)
			roles = append(roles, lr)
			children = append(children, job{d.name})
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return roles, nil
}

// loadRole downloads one delegated role and verifies it with go-tuf's
// trusted set: snapshot length, hashes and version, the delegator's keys
// and threshold, and expiry.
func (m *Mirror) loadRole(trusted *trustedSet, fetch *tunnelFetcher, name, parent string) (loadedRole, error) {
	meta, ok := trusted.Snapshot.Signed.Meta[name+".json"]
	if !ok {
		return loadedRole{}, fmt.Errorf("TUF update refused: snapshot does not list delegated role %q", name)
	}
	length := meta.Length
	if length == 0 {
		length = maxDelegatedLength
	}
	file := url.PathEscape(name) + ".json"
	if trusted.Root.Signed.ConsistentSnapshot {
		file = strconv.FormatInt(meta.Version, 10) + "." + file
	}
	data, err := fetch.DownloadFile(m.opts.BaseURL+"/metadata/"+file, length, 0)
	if err != nil {
		return loadedRole{}, fmt.Errorf("TUF update refused: fetching delegated role %q: %w", name, err)
	}
	md, err := trusted.UpdateDelegatedTargets(data, name, parent)
	if err != nil {
		return loadedRole{}, fmt.Errorf("TUF update refused: delegated role %q: %w", name, err)
	}
	return loadedRole{name: name, parents: []string{parent}, version: md.Signed.Version, data: data, md: md}, nil
}

// resolveTarget finds the target at p the way go-tuf's Updater does:
// a pre-order depth-first walk of the delegations whose paths match,
// stopping at terminating roles, within go-tuf's default delegation bound.
func resolveTarget(trusted *trustedSet, p string) (*metadata.TargetFiles, string) {
	type visit struct{ role string }
	stack := []visit{{metadata.TARGETS}}
	visited := map[string]bool{}
	for len(visited) <= goTUFMaxDelegations && len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v.role] {
			continue
		}
		md := trusted.Targets[v.role]
		if md == nil {
			return nil, ""
		}
		if tf, ok := md.Signed.Targets[p]; ok {
			return tf, v.role
		}
		visited[v.role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []visit
		for _, r := range md.Signed.Delegations.GetRolesForTarget(p) {
			children = append(children, visit{r.Name})
			if r.Terminating {
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, ""
}
