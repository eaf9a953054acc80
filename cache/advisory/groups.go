package advisory

import (
	"slices"
	"strings"
)

// Group is one vulnerability as the store records it: every id that aliases
// join (a CVE, its GHSA, an OSV record id), the OSV records about it and
// the VEX statements that name any of its ids.
type Group struct {
	// ID is the group's display id: its first CVE id in sort order, else
	// its first id.
	ID string `json:"id"`
	// IDs lists every id of the group, sorted.
	IDs     []string `json:"ids"`
	Records []*OSV   `json:"-"`
	// Statements are sorted from the oldest to the latest (see
	// Statement.Later), so a later one supersedes an earlier one.
	Statements []Statement `json:"-"`
}

// Rating returns the highest severity label and CVSS v3 score among the
// group's records.
func (g Group) Rating() (label string, score float64) {
	for _, r := range g.Records {
		l, s := r.Rating()
		if SeverityRank(l) > SeverityRank(label) {
			label = l
		}
		score = max(score, s)
	}
	return label, score
}

// Summary returns the first record summary of the group.
func (g Group) Summary() string {
	for _, r := range g.Records {
		if r.Summary != "" {
			return r.Summary
		}
	}
	return ""
}

type groupIndex struct {
	byID   map[string]int // upper-cased id to index into groups
	groups []Group
}

// unionFind joins ids; parent maps an upper-cased id to its parent.
type unionFind struct {
	parent map[string]string
	spell  map[string]string // upper-cased id to its first spelling
}

func (u *unionFind) find(id string) string {
	for {
		p, ok := u.parent[id]
		if !ok {
			u.parent[id] = id
			return id
		}
		if p == id {
			return id
		}
		u.parent[id] = u.parent[p]
		id = p
	}
}

func (u *unionFind) union(ids []string) {
	var root string
	for i, id := range ids {
		n := normID(id)
		if n == "" {
			continue
		}
		if _, ok := u.spell[n]; !ok {
			u.spell[n] = strings.TrimSpace(id)
		}
		r := u.find(n)
		if i == 0 || root == "" {
			root = r
			continue
		}
		if r != root {
			u.parent[r] = root
		}
	}
}

func (s *Store) indexLocked() *groupIndex {
	if s.groups != nil {
		return s.groups
	}
	u := &unionFind{parent: map[string]string{}, spell: map[string]string{}}
	for _, e := range s.osv {
		if e.rec.Withdrawn.IsZero() {
			u.union(e.rec.IDs())
		}
	}
	for _, e := range s.vex {
		for _, st := range e.doc.Statements {
			u.union(st.IDs())
		}
	}
	members := map[string][]string{}
	for id := range u.parent {
		r := u.find(id)
		members[r] = append(members[r], id)
	}
	idx := &groupIndex{byID: map[string]int{}}
	roots := make([]string, 0, len(members))
	for r := range members {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	for _, r := range roots {
		ids := members[r]
		slices.Sort(ids)
		g := Group{}
		for _, id := range ids {
			g.IDs = append(g.IDs, u.spell[id])
			idx.byID[id] = len(idx.groups)
		}
		g.ID = g.IDs[0]
		for _, id := range g.IDs {
			if strings.HasPrefix(normID(id), "CVE-") {
				g.ID = id
				break
			}
		}
		idx.groups = append(idx.groups, g)
	}
	for _, e := range s.osv {
		if !e.rec.Withdrawn.IsZero() {
			continue
		}
		i := idx.byID[normID(e.rec.ID)]
		idx.groups[i].Records = append(idx.groups[i].Records, e.rec)
	}
	for _, e := range s.vex {
		for _, st := range e.doc.Statements {
			i := idx.byID[normID(st.Vulnerability)]
			idx.groups[i].Statements = append(idx.groups[i].Statements, st)
		}
	}
	for i := range idx.groups {
		g := &idx.groups[i]
		slices.SortFunc(g.Records, func(a, b *OSV) int { return strings.Compare(a.ID, b.ID) })
		slices.SortStableFunc(g.Statements, func(a, b Statement) int {
			if a.Later(b) {
				return 1
			}
			if b.Later(a) {
				return -1
			}
			return 0
		})
	}
	s.groups = idx
	return idx
}

// Lookup returns the group of a vulnerability id, joined through aliases
// and matched without regard to case. ok is false when no stored record or
// statement names the id.
func (s *Store) Lookup(id string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.indexLocked()
	i, ok := idx.byID[normID(id)]
	if !ok {
		return Group{ID: strings.TrimSpace(id), IDs: []string{strings.TrimSpace(id)}}, false
	}
	return idx.groups[i], true
}

// Groups returns every vulnerability group, sorted by the id of its
// first member.
func (s *Store) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.indexLocked().groups)
}

func sortEntries(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
