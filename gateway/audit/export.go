package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Filter selects entries for Query and Export. Zero fields match
// everything.
type Filter struct {
	// From is inclusive and To exclusive, compared with Record.Time.
	From, To time.Time
	// Actor, Action and Subject match when the field contains the value,
	// ignoring case; Action also matches a dotted prefix such as
	// "release.".
	Actor, Action, Subject string
	// Text matches any of the record's fields or detail values.
	Text string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e Entry) bool {
	r := e.Record
	if !f.From.IsZero() && r.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !r.Time.Before(f.To) {
		return false
	}
	if !containsFold(r.Actor, f.Actor) || !containsFold(r.Action, f.Action) || !containsFold(r.Subject, f.Subject) {
		return false
	}
	if f.Text != "" {
		if containsFold(r.Actor, f.Text) || containsFold(r.Action, f.Text) || containsFold(r.Subject, f.Text) {
			return true
		}
		for k, v := range r.Details {
			if containsFold(k, f.Text) || containsFold(v, f.Text) {
				return true
			}
		}
		return false
	}
	return true
}

func containsFold(s, sub string) bool {
	return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// Page is one page of Query results, newest first.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next is the sequence number to pass as Query's before for the next
	// (older) page; 0 when there is none.
	Next uint64 `json:"next,omitempty"`
}

// Query returns up to limit entries that match f, newest first, starting
// at sequence number before (0 means the newest).
func (s *Store) Query(ctx context.Context, f Filter, before uint64, limit int) (Page, error) {
	if limit <= 0 {
		limit = 100
	}
	var p Page
	err := s.ScanBack(ctx, before, func(e Entry) bool {
		if !f.From.IsZero() && e.Record.Time.Before(f.From.Add(-time.Hour)) {
			// Records are appended in time order, give or take the
			// clock steps of callers that set Time themselves.
			return false
		}
		if !f.Match(e) {
			return true
		}
		if len(p.Entries) == limit {
			p.Next = e.Seq
			return false
		}
		p.Entries = append(p.Entries, e)
		return true
	})
	return p, err
}

// Format is an export format.
type Format string

// Export formats.
const (
	// FormatJSONL writes one Entry as JSON per line.
	FormatJSONL Format = "jsonl"
	// FormatCSV writes a header and one row per entry: seq, time, actor,
	// action, subject, details (as a JSON object), prev, hash.
	FormatCSV Format = "csv"
)

// ParseFormat accepts "jsonl" (also "json" and "ndjson") and "csv".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "jsonl", "json", "ndjson", "":
		return FormatJSONL, nil
	case "csv":
		return FormatCSV, nil
	}
	return "", fmt.Errorf("export format %q is unknown: use jsonl or csv", s)
}

// ExportResult counts what Export wrote.
type ExportResult struct {
	Entries  int
	FirstSeq uint64
	LastSeq  uint64
}

// Export writes every entry that matches f, in append order, to w in the
// given format. Each entry keeps its seq, prev and hash, so an export of
// a whole range can be checked against the chain (see VerifyExport).
// progress, when not nil, is called after each entry with its sequence
// number.
func (s *Store) Export(ctx context.Context, w io.Writer, format Format, f Filter, progress func(seq uint64)) (ExportResult, error) {
	var res ExportResult
	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	var enc *json.Encoder
	switch format {
	case FormatCSV:
		cw = csv.NewWriter(bw)
		if err := cw.Write([]string{"seq", "time", "actor", "action", "subject", "details", "prev", "hash"}); err != nil {
			return res, err
		}
	case FormatJSONL:
		enc = json.NewEncoder(bw)
	default:
		return res, fmt.Errorf("export format %q is unknown: use jsonl or csv", format)
	}
	var werr error
	err := s.Scan(ctx, func(e Entry) bool {
		if !f.Match(e) {
			return true
		}
		if cw != nil {
			werr = cw.Write(csvRow(e))
		} else {
			werr = enc.Encode(e)
		}
		if werr != nil {
			return false
		}
		if res.Entries == 0 {
			res.FirstSeq = e.Seq
		}
		res.Entries++
		res.LastSeq = e.Seq
		if progress != nil {
			progress(e.Seq)
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if cw != nil {
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return res, fmt.Errorf("exporting audit records: %w", err)
	}
	return res, nil
}

func csvRow(e Entry) []string {
	details := "{}"
	if len(e.Record.Details) > 0 {
		// json.Marshal sorts map keys, so a row is stable.
		b, _ := json.Marshal(e.Record.Details)
		details = string(b)
	}
	return []string{
		strconv.FormatUint(e.Seq, 10),
		e.Record.Time.UTC().Format(time.RFC3339Nano),
		e.Record.Actor,
		e.Record.Action,
		e.Record.Subject,
		details,
		e.Prev,
		e.Hash,
	}
}

// DetailKeys returns the record's detail keys, sorted.
func DetailKeys(r Record) []string {
	return slices.Sorted(maps.Keys(r.Details))
}

// VerifyExport reads a JSON lines export and checks that every entry's
// hash matches its content and that consecutive entries link. It returns
// the number of entries read, or an error naming the first line that
// does not hold. An export of a filtered selection links only where its
// entries are consecutive, so gaps in seq are accepted and reported in
// gaps.
func VerifyExport(r io.Reader) (n int, gaps int, err error) {
	dec := json.NewDecoder(r)
	var prev *Entry
	for line := 1; ; line++ {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			return n, gaps, nil
		} else if err != nil {
			return n, gaps, fmt.Errorf("export entry %d is not valid JSON: %w", line, err)
		}
		if entryHash(e) != e.Hash {
			return n, gaps, &BrokenError{Seq: e.Seq, Entry: &e, Problem: "its content does not match its hash (changed)"}
		}
		if prev != nil {
			switch {
			case e.Seq <= prev.Seq:
				return n, gaps, &BrokenError{Seq: e.Seq, Entry: &e, Problem: fmt.Sprintf("it follows entry %d (reordered)", prev.Seq)}
			case e.Seq == prev.Seq+1 && e.Prev != prev.Hash:
				return n, gaps, &BrokenError{Seq: e.Seq, Entry: &e, Problem: "it does not link to the entry before it"}
			case e.Seq > prev.Seq+1:
				gaps++
			}
		}
		n++
		prev = &e
	}
}
