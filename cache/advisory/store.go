package advisory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// KeyPrefix is the badger key prefix under which the store keeps its
// documents: "sbom/advisory/osv/ID" for each OSV record and
// "sbom/advisory/vex/ID" for each VEX document, holding the bytes as
// received with their source.
const KeyPrefix = "sbom/advisory/"

// Source is the origin of an advisory document.
type Source struct {
	// Origin is "tuf" for documents verified through the TUF repository or
	// "import" for files that hospital IT imported.
	Origin string `json:"origin"`
	// Name is the TUF target path or the imported file's name.
	Name string `json:"name,omitempty"`
	// Release, for a VEX document, is the TUF target path of the release it
	// describes (the release field of the advisory target's metadata). Its
	// statements then apply to that release alone, and bare bom-refs in
	// them resolve against that release's SBOM.
	Release string `json:"release,omitempty"`
}

// ImportResult reports what Add changed, for the caller to audit.
type ImportResult struct {
	Kind   Kind   `json:"kind"`
	Digest string `json:"digest"`
	// Added, Replaced and Unchanged list OSV record ids or the VEX
	// document id. A record is unchanged when the store already holds it
	// with the same or a later modified time.
	Added      []string  `json:"added,omitempty"`
	Replaced   []string  `json:"replaced,omitempty"`
	Unchanged  []string  `json:"unchanged,omitempty"`
	Statements int       `json:"statements,omitempty"`
	Warnings   []Warning `json:"warnings,omitempty"`
}

// Entry describes one stored OSV record or VEX document.
type Entry struct {
	Kind     Kind      `json:"kind"`
	ID       string    `json:"id"`
	Aliases  []string  `json:"aliases,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
	Source   Source    `json:"source"`
	Added    time.Time `json:"added"`
	// Statements is the number of statements of a VEX document.
	Statements int `json:"statements,omitempty"`
}

// stored is the persisted envelope of one OSV record or VEX document.
type stored struct {
	Source   Source          `json:"source"`
	Added    time.Time       `json:"added"`
	Sequence uint64          `json:"sequence"`
	Data     json.RawMessage `json:"data"`
}

type osvEntry struct {
	rec *OSV
	env stored
}

type vexEntry struct {
	doc *VEX
	env stored
}

// Store contains the gateway's advisories, in memory for evaluation
// and, when it has a database, in badger so that imports survive a
// restart. It is safe for concurrent use.
type Store struct {
	db  *badger.DB
	log *slog.Logger
	now func() time.Time

	mu     sync.RWMutex
	osv    map[string]*osvEntry // by upper-cased id
	vex    map[string]*vexEntry // by document id
	seq    uint64
	gen    uint64
	groups *groupIndex // built lazily for gen

	records    prometheus.Gauge
	statements prometheus.Gauge
}

// NewStore returns a store. db may be nil for a store that lives in memory
// only. Call Load to read what db holds.
func NewStore(db *badger.DB, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		db:  db,
		log: logger,
		now: time.Now,
		osv: map[string]*osvEntry{},
		vex: map[string]*vexEntry{},
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_advisory_osv_records",
			Help: "OSV records held by the advisory store.",
		}),
		statements: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wardgate_advisory_vex_statements",
			Help: "VEX statements held by the advisory store.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.records, s.statements} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering advisory metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Load reads every document stored under KeyPrefix. A stored document that
// no longer parses is logged and skipped, so that one bad entry cannot
// hide the others.
func (s *Store) Load(ctx context.Context) error {
	if s.db == nil {
		return nil
	}
	var envs []struct {
		key string
		env stored
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(KeyPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var env stored
			err := item.Value(func(v []byte) error { return json.Unmarshal(v, &env) })
			if err != nil {
				s.log.Error("skipping unreadable advisory entry", "key", string(item.Key()), "err", err)
				continue
			}
			envs = append(envs, struct {
				key string
				env stored
			}{string(item.Key()), env})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading advisories: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range envs {
		doc, _, err := Parse(e.env.Data)
		if err != nil {
			s.log.Error("skipping stored advisory that no longer parses", "key", e.key, "err", err)
			continue
		}
		s.seq = max(s.seq, e.env.Sequence)
		s.insertLocked(doc, e.env)
	}
	s.changedLocked()
	s.log.Info("advisories loaded", "osv_records", len(s.osv), "vex_documents", len(s.vex))
	return nil
}

// insertLocked puts a parsed document into memory without comparing it
// with what is there.
func (s *Store) insertLocked(doc *Document, env stored) {
	for _, r := range doc.Records {
		e := env
		e.Data = r.raw
		s.osv[normID(r.ID)] = &osvEntry{rec: r, env: e}
	}
	if doc.VEX != nil {
		applyScope(doc.VEX, env)
		s.vex[doc.VEX.ID] = &vexEntry{doc: doc.VEX, env: env}
	}
}

func applyScope(v *VEX, env stored) {
	for i := range v.Statements {
		v.Statements[i].Release = env.Source.Release
		v.Statements[i].Sequence = env.Sequence
	}
}

// Add parses an advisory document, stores what is new or newer, and
// returns what changed. A document that fails to parse changes nothing.
func (s *Store) Add(ctx context.Context, data []byte, src Source) (ImportResult, error) {
	doc, warnings, err := Parse(data)
	if err != nil {
		return ImportResult{Warnings: warnings}, fmt.Errorf("parsing advisory from %s %q: %w", src.Origin, src.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Kind: doc.Kind, Digest: doc.Digest, Warnings: warnings}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	env := stored{Source: src, Added: s.now().UTC(), Sequence: s.seq}
	writes := map[string][]byte{}
	var keepOSV []*OSV
	for _, r := range doc.Records {
		old, ok := s.osv[normID(r.ID)]
		switch {
		case !ok:
			res.Added = append(res.Added, r.ID)
		case r.Modified.After(old.rec.Modified):
			res.Replaced = append(res.Replaced, r.ID)
		default:
			res.Unchanged = append(res.Unchanged, r.ID)
			continue
		}
		e := env
		e.Data = r.raw
		b, err := json.Marshal(e)
		if err != nil {
			return ImportResult{}, fmt.Errorf("encoding OSV record %s: %w", r.ID, err)
		}
		writes[KeyPrefix+"osv/"+normID(r.ID)] = b
		keepOSV = append(keepOSV, r)
	}
	if v := doc.VEX; v != nil {
		res.Statements = len(v.Statements)
		old, ok := s.vex[v.ID]
		switch {
		case !ok:
			res.Added = append(res.Added, v.ID)
		case old.env.Source.Release != src.Release || v.Version > old.doc.Version ||
			(v.Version == old.doc.Version && v.Timestamp.After(old.doc.Timestamp)):
			res.Replaced = append(res.Replaced, v.ID)
		default:
			res.Unchanged = append(res.Unchanged, v.ID)
			v = nil
		}
		if v != nil {
			e := env
			e.Data = data
			b, err := json.Marshal(e)
			if err != nil {
				return ImportResult{}, fmt.Errorf("encoding VEX document %s: %w", v.ID, err)
			}
			writes[KeyPrefix+"vex/"+v.ID] = b
		} else {
			doc.VEX = nil
		}
	}
	if len(writes) == 0 {
		return res, nil
	}
	if s.db != nil {
		err := s.db.Update(func(txn *badger.Txn) error {
			for k, v := range writes {
				if err := txn.Set([]byte(k), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return ImportResult{}, fmt.Errorf("storing advisory from %s %q: %w", src.Origin, src.Name, err)
		}
	}
	doc.Records = keepOSV
	s.insertLocked(doc, env)
	s.changedLocked()
	s.log.Info("advisory stored", "origin", src.Origin, "name", src.Name, "kind", doc.Kind,
		"added", len(res.Added), "replaced", len(res.Replaced), "unchanged", len(res.Unchanged))
	return res, nil
}

// Remove deletes an OSV record (by its id) or a VEX document (by its
// document id). It returns an error wrapping ErrNotFound when the store
// holds neither.
func (s *Store) Remove(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var key string
	if _, ok := s.osv[normID(id)]; ok {
		key = KeyPrefix + "osv/" + normID(id)
	} else if _, ok := s.vex[id]; ok {
		key = KeyPrefix + "vex/" + id
	} else {
		return fmt.Errorf("removing advisory %q: %w", id, ErrNotFound)
	}
	if s.db != nil {
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) }); err != nil {
			return fmt.Errorf("removing advisory %q: %w", id, err)
		}
	}
	delete(s.osv, normID(id))
	delete(s.vex, id)
	s.changedLocked()
	return nil
}

// ErrNotFound is returned for an advisory id the store does not hold.
var ErrNotFound = errors.New("advisory not found")

func (s *Store) changedLocked() {
	s.gen++
	s.groups = nil
	n := 0
	for _, v := range s.vex {
		n += len(v.doc.Statements)
	}
	s.records.Set(float64(len(s.osv)))
	s.statements.Set(float64(n))
}

// Generation returns a number that changes whenever the store's content
// does, so that callers can cache results computed from it.
func (s *Store) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// Entries lists the stored OSV records and VEX documents, sorted by kind
// and id.
func (s *Store) Entries() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Entry
	for _, e := range s.osv {
		out = append(out, Entry{Kind: KindOSV, ID: e.rec.ID, Aliases: e.rec.Aliases, Modified: e.rec.Modified, Source: e.env.Source, Added: e.env.Added})
	}
	for _, e := range s.vex {
		out = append(out, Entry{Kind: e.doc.Kind, ID: e.doc.ID, Modified: e.doc.Timestamp, Source: e.env.Source, Added: e.env.Added, Statements: len(e.doc.Statements)})
	}
	sortEntries(out)
	return out
}

func normID(id string) string { return strings.ToUpper(strings.TrimSpace(id)) }
