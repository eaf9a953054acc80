package analytics

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Handler serves the read-only query API:
//
//	GET /v1/analytics/cells?manufacturer=&model=&version=&device_class=&kind=&name=&from=&to=&group=&format=json|csv
//	GET /v1/analytics/devices?(the same filters)&format=json|csv
//	GET /v1/analytics/uploads?site=
//
// from and to are RFC 3339 times or dates (YYYY-MM-DD); group is a
// comma-separated list of period, manufacturer, model, version,
// device_class, metric. format may also come from the Accept header
// (text/csv). Mount it with mux.Handle("/v1/analytics/", s.Handler()).
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/analytics/cells", s.serveCells)
	mux.HandleFunc("GET /v1/analytics/devices", s.serveDevices)
	mux.HandleFunc("GET /v1/analytics/uploads", s.serveUploads)
	return mux
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// ParseQuery reads a Query from URL parameters (the names Handler takes).
func ParseQuery(v url.Values) (Query, error) {
	q := Query{
		Manufacturer: v.Get("manufacturer"), Model: v.Get("model"), Version: v.Get("version"),
		DeviceClass: v.Get("device_class"), Kind: v.Get("kind"), Name: v.Get("name"),
	}
	var err error
	if q.From, err = parseTime("from", v.Get("from")); err != nil {
		return q, err
	}
	if q.To, err = parseTime("to", v.Get("to")); err != nil {
		return q, err
	}
	if g := v.Get("group"); g != "" {
		q.GroupBy = strings.Split(g, ",")
	}
	return q, q.normalize()
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time or YYYY-MM-DD", name, s)
}

func (s *Store) serveCells(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
		if strings.Contains(r.Header.Get("Accept"), "text/csv") {
			format = "csv"
		}
	}
	if format != "json" && format != "csv" {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("format %q: want json or csv", format))
		return
	}
	rows, err := s.Query(r.Context(), q)
	if err != nil {
		s.log.Error("querying analytics failed", "err", err)
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_ = writeRows(w, rows, format)
}

func (s *Store) serveDevices(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("format %q: want json or csv", format))
		return
	}
	rows, err := s.DeviceRows(r.Context(), q)
	if err != nil {
		s.log.Error("querying device analytics failed", "err", err)
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if format == "json" {
		if rows == nil {
			rows = []DeviceRow{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rows": rows})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.Write(append([]string{"site", "device"}, csvHeader...))
	for _, d := range rows {
		_ = cw.Write(append([]string{d.Site, d.Device}, fields(d.Row)...))
	}
	cw.Flush()
}

func (s *Store) serveUploads(w http.ResponseWriter, r *http.Request) {
	ups, err := s.Uploads(r.Context(), r.URL.Query().Get("site"))
	if err != nil {
		s.log.Error("listing uploads failed", "err", err)
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if ups == nil {
		ups = []Upload{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"uploads": ups})
}

// WriteReport writes the rows of q to w as "json", "csv" or "table" (an
// aligned text table for a terminal), for the `wardhub analytics` command.
func (s *Store) WriteReport(w io.Writer, q Query, format string) error {
	switch format {
	case "", "table", "json", "csv":
	default:
		return fmt.Errorf("report format %q: want table, json or csv", format)
	}
	rows, err := s.Query(context.Background(), q)
	if err != nil {
		return err
	}
	if format == "" {
		format = "table"
	}
	return writeRows(w, rows, format)
}

var csvHeader = []string{"period", "manufacturer", "model", "version", "device_class", "kind", "name", "sites", "devices", "events", "sum", "min", "max", "mean", "histogram"}

func writeRows(w io.Writer, rows []Row, format string) error {
	switch format {
	case "json":
		if rows == nil {
			rows = []Row{}
		}
		return json.NewEncoder(w).Encode(map[string]any{"rows": rows})
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write(csvHeader)
		for _, r := range rows {
			_ = cw.Write(fields(r))
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(csvHeader[:len(csvHeader)-1], "\t"))
		for _, r := range rows {
			f := fields(r)
			fmt.Fprintln(tw, strings.Join(f[:len(f)-1], "\t"))
		}
		return tw.Flush()
	}
	return errors.New("unknown format")
}

func fields(r Row) []string {
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	period := ""
	if !r.Period.IsZero() {
		period = r.Period.Format(time.RFC3339)
	}
	var hist []string
	for i, c := range r.Counts {
		le := "+Inf"
		if i < len(r.Bounds) {
			le = num(r.Bounds[i])
		}
		hist = append(hist, le+":"+strconv.FormatUint(c, 10))
	}
	return []string{period, r.Manufacturer, r.Model, r.Version, r.DeviceClass, r.Kind, r.Name,
		strconv.Itoa(r.Sites), strconv.Itoa(r.Devices), strconv.FormatUint(r.Events, 10),
		num(r.Sum), num(r.Min), num(r.Max), num(r.Mean), strings.Join(hist, " ")}
}

// IngestHandler serves the hub's upload endpoint, POST /v1/telemetry:
// site maps the request (the gateway's tunnel identity) to its site id;
// the Idempotency-Key header names the upload. It responds 200 with
// {"duplicate": bool} once the upload is durable, 400 for a malformed
// payload, 401 for an unknown gateway, 409 when the key was used for other
// bytes, 413 for an oversized body and 503 when storing failed.
func (s *Store) IngestHandler(site func(*http.Request) (string, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpError(w, http.StatusMethodNotAllowed, "POST a telemetry payload")
			return
		}
		siteID, ok := site(r)
		if !ok {
			httpError(w, http.StatusUnauthorized, "unknown gateway")
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			httpError(w, http.StatusBadRequest, "the Idempotency-Key header is required")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.opts.MaxPayloadBytes)))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("payload exceeds %d bytes", s.opts.MaxPayloadBytes))
				return
			}
			httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
			return
		}
		dup, err := s.Ingest(r.Context(), siteID, key, body)
		switch {
		case errors.Is(err, ErrInvalid):
			httpError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, ErrKeyConflict):
			httpError(w, http.StatusConflict, err.Error())
		case err != nil:
			s.log.Error("storing telemetry upload failed", "site", siteID, "key", key, "err", err)
			w.Header().Set("Retry-After", "5")
			httpError(w, http.StatusServiceUnavailable, "storing the upload failed: retry later")
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]bool{"duplicate": dup})
		}
	})
}
