package gateway

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/wardgate/wardgate/cache/blob"
	"github.com/wardgate/wardgate/gateway/audit"
	"github.com/wardgate/wardgate/gateway/store"
)

// A backup is a tar stream:
//
//	wardgate-backup.json      the manifest, first
//	db.badger                 badger's online backup of the whole database
//	blobs/sha256/ab/abcd…     every committed blob
//	files/…                   the rest of the data folder (credentials, TLS)
//
// badger's backup is a snapshot at one read timestamp. Blobs are copied
// after it through the blob store, which keeps each from eviction while
// it is read. A blob evicted in between is left out, so the restored
// store drops its index record and fetches it again. The backup holds the
// gateway's private keys: keep it as safe as the appliance.
const (
	backupManifestName = "wardgate-backup.json"
	backupDBName       = "db.badger"
	backupFormat       = 1
)

// BackupManifest describes a backup.
type BackupManifest struct {
	Format    int       `json:"format"`
	Created   time.Time `json:"created"`
	Site      string    `json:"site,omitempty"`
	DBBytes   int64     `json:"db_bytes"`
	Blobs     int       `json:"blobs"`
	BlobBytes int64     `json:"blob_bytes"`
	Files     int       `json:"files"`
	FileBytes int64     `json:"file_bytes"`
	// AuditHead is the newest audit entry in the snapshot.
	AuditHead uint64 `json:"audit_head"`
}

// TotalBytes is the payload size of the backup, for progress bars.
func (m BackupManifest) TotalBytes() int64 { return m.DBBytes + m.BlobBytes + m.FileBytes }

// Progress reports a long operation's advance.
type Progress struct {
	Done, Total int64
	// Item names what is being copied.
	Item string
}

// BackupSource is the data a backup reads.
type BackupSource struct {
	DB      *badger.DB
	DataDir string
	// Blobs, when set, is the running gateway's blob store; without it
	// blob files are read directly (the gateway is stopped).
	Blobs *blob.Store
	Site  string
	// Audit, when set, gives the manifest its audit head.
	Audit *audit.Store
}

// WriteBackup writes a consistent backup of src to w.
func WriteBackup(ctx context.Context, w io.Writer, src BackupSource, progress func(Progress)) (BackupManifest, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	m := BackupManifest{Format: backupFormat, Created: time.Now().UTC(), Site: src.Site}
	if src.Audit != nil {
		m.AuditHead = src.Audit.Head().Seq
	}
	tmpDir := filepath.Join(src.DataDir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return m, fmt.Errorf("creating %s for the database snapshot: %w", tmpDir, err)
	}
	spool, err := os.CreateTemp(tmpDir, "backup-db-*")
	if err != nil {
		return m, fmt.Errorf("creating the database snapshot file: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	progress(Progress{Item: "database snapshot"})
	if _, err := src.DB.Backup(spool, 0); err != nil {
		return m, fmt.Errorf("taking the database snapshot: %w", err)
	}
	if m.DBBytes, err = spool.Seek(0, io.SeekCurrent); err != nil {
		return m, err
	}
	blobs, err := listFiles(filepath.Join(src.DataDir, "blobs", "sha256"))
	if err != nil {
		return m, fmt.Errorf("listing blobs: %w", err)
	}
	files, err := listDataFiles(src.DataDir)
	if err != nil {
		return m, err
	}
	for _, b := range blobs {
		m.Blobs++
		m.BlobBytes += b.size
	}
	for _, f := range files {
		m.Files++
		m.FileBytes += f.size
	}
	tw := tar.NewWriter(w)
	man, _ := json.MarshalIndent(m, "", "  ")
	if err := writeTarFile(tw, backupManifestName, 0o600, m.Created, int64(len(man)), strings.NewReader(string(man))); err != nil {
		return m, err
	}
	var done int64
	count := func(item string, r io.Reader) io.Reader {
		return &progressReader{r: r, fn: func(n int64) { done += n; progress(Progress{Done: done, Total: m.TotalBytes(), Item: item}) }}
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return m, err
	}
	if err := writeTarFile(tw, backupDBName, 0o600, m.Created, m.DBBytes, count("database", spool)); err != nil {
		return m, err
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		if err := backupBlob(tw, src, b, count); err != nil {
			return m, err
		}
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return m, fmt.Errorf("reading %s: %w", f.path, err)
		}
		err = writeTarFile(tw, "files/"+f.rel, f.mode, f.mtime, f.size, count(f.rel, fh))
		fh.Close()
		if err != nil {
			return m, err
		}
	}
	if err := tw.Close(); err != nil {
		return m, fmt.Errorf("finishing the backup: %w", err)
	}
	return m, nil
}

func backupBlob(tw *tar.Writer, src BackupSource, b fileInfo, count func(string, io.Reader) io.Reader) error {
	sha := filepath.Base(b.path)
	var (
		r    io.ReadCloser
		size = b.size
	)
	if src.Blobs != nil {
		f, n, err := src.Blobs.Open(sha)
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalid) {
			return nil // evicted since it was listed, or not a blob
		}
		if err != nil {
			return fmt.Errorf("opening blob %s: %w", sha, err)
		}
		r, size = f, n
	} else {
		f, err := os.Open(b.path)
		if err != nil {
			return fmt.Errorf("opening blob %s: %w", sha, err)
		}
		r = f
	}
	defer r.Close()
	return writeTarFile(tw, "blobs/sha256/"+b.rel, 0o600, b.mtime, size, count("blob "+sha[:min(12, len(sha))], r))
}

func writeTarFile(tw *tar.Writer, name string, mode fs.FileMode, mtime time.Time, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(mode.Perm()), Size: size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("writing backup entry %s: %w", name, err)
	}
	n, err := io.CopyN(tw, r, size)
	if err != nil {
		return fmt.Errorf("writing backup entry %s (%d of %d bytes): %w", name, n, size, err)
	}
	return nil
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

type fileInfo struct {
	path, rel string
	size      int64
	mode      fs.FileMode
	mtime     time.Time
}

func listFiles(root string) ([]fileInfo, error) {
	var out []fileInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipDir
		}
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fileInfo{path: p, rel: filepath.ToSlash(rel), size: info.Size(), mode: info.Mode(), mtime: info.ModTime()})
		return nil
	})
	return out, err
}

// listDataFiles lists the data folder's files outside the database, the
// blob store and temporary files.
func listDataFiles(dataDir string) ([]fileInfo, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, fmt.Errorf("reading the data folder: %w", err)
	}
	var out []fileInfo
	for _, e := range entries {
		switch e.Name() {
		case "db", "blobs", "tmp":
			continue
		}
		p := filepath.Join(dataDir, e.Name())
		if e.IsDir() {
			fs, err := listFiles(p)
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", p, err)
			}
			for _, f := range fs {
				f.rel = e.Name() + "/" + f.rel
				out = append(out, f)
			}
			continue
		}
		if e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			out = append(out, fileInfo{path: p, rel: e.Name(), size: info.Size(), mode: info.Mode(), mtime: info.ModTime()})
		}
	}
	return out, nil
}

// ParseBackupManifest reads and checks a backup manifest.
func ParseBackupManifest(data []byte) (BackupManifest, error) {
	var m BackupManifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("backup manifest is not valid JSON: %w", err)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("backup format %d is not supported: this wardgate reads format %d", m.Format, backupFormat)
	}
	if m.DBBytes < 0 || m.BlobBytes < 0 || m.FileBytes < 0 || m.Blobs < 0 || m.Files < 0 {
		return m, errors.New("backup manifest has negative sizes: the file is damaged")
	}
	return m, nil
}

// ErrDataDirInUse is returned by RestoreBackup for a data folder that
// already holds a database.
var ErrDataDirInUse = errors.New("the data folder already contains a database")

// RestoreBackup restores a backup into dataDir, which must not hold a
// database yet. The gateway must be stopped. Blobs are re-verified by
// the blob store when the gateway next starts.
func RestoreBackup(ctx context.Context, r io.Reader, dataDir string, log *slog.Logger, progress func(Progress)) (BackupManifest, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	var m BackupManifest
	dbDir := filepath.Join(dataDir, "db")
	if entries, err := os.ReadDir(dbDir); err == nil && len(entries) > 0 {
		return m, fmt.Errorf("%w: %s is not empty; restore into a fresh data folder, or move it away first", ErrDataDirInUse, dbDir)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return m, fmt.Errorf("creating the data folder: %w", err)
	}
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != backupManifestName || hdr.Size > 1<<20 {
		return m, fmt.Errorf("not a wardgate backup: it does not start with %s", backupManifestName)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return m, fmt.Errorf("reading the backup manifest: %w", err)
	}
	if m, err = ParseBackupManifest(data); err != nil {
		return m, err
	}
	var done int64
	count := func(item string, rd io.Reader) io.Reader {
		return &progressReader{r: rd, fn: func(n int64) { done += n; progress(Progress{Done: done, Total: m.TotalBytes(), Item: item}) }}
	}
	sawDB := false
	for {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, fmt.Errorf("reading the backup: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return m, fmt.Errorf("backup entry %q is not a regular file", hdr.Name)
		}
		switch name := hdr.Name; {
		case name == backupDBName:
			if sawDB {
				return m, errors.New("backup contains two database snapshots: the file is damaged")
			}
			sawDB = true
			db, err := store.Open(dbDir, log)
			if err != nil {
				return m, err
			}
			err = db.Load(count("database", tr), 256)
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return m, fmt.Errorf("loading the database snapshot: %w", err)
			}
		case strings.HasPrefix(name, "blobs/sha256/"):
			if err := restoreFile(dataDir, name, 0o600, hdr.Size, count("blob", tr)); err != nil {
				return m, err
			}
		case strings.HasPrefix(name, "files/"):
			if err := restoreFile(dataDir, strings.TrimPrefix(name, "files/"), fs.FileMode(hdr.Mode).Perm(), hdr.Size, count(name, tr)); err != nil {
				return m, err
			}
		default:
			return m, fmt.Errorf("backup entry %q is unknown to this wardgate", name)
		}
	}
	if !sawDB {
		return m, errors.New("backup contains no database snapshot: the file is damaged or truncated")
	}
	return m, nil
}

// restoreFile writes one file under dataDir, refusing names that leave it.
func restoreFile(dataDir, name string, mode fs.FileMode, size int64, r io.Reader) error {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "\\") || clean != "/"+name {
		return fmt.Errorf("backup entry %q has an unsafe path", name)
	}
	dst := filepath.Join(dataDir, filepath.FromSlash(clean[1:]))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o600
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("restoring %s: %w", name, err)
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return fmt.Errorf("restoring %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// apiBackup streams a backup of the running gateway.
func (g *Gateway) apiBackup(w http.ResponseWriter, r *http.Request, t TokenInfo) {
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="wardgate-backup-`+time.Now().UTC().Format("20060102T150405Z")+`.tar"`)
	w.Header().Set("Trailer", "X-Wardgate-Backup-Status")
	m, err := WriteBackup(r.Context(), w, BackupSource{DB: g.db, DataDir: g.cfg.DataDir, Blobs: g.blobs, Site: g.siteID, Audit: g.audit}, nil)
	status := "ok"
	d := map[string]string{"blobs": strconv.Itoa(m.Blobs), "bytes": strconv.FormatInt(m.TotalBytes(), 10), "audit_head": strconv.FormatUint(m.AuditHead, 10)}
	if err != nil {
		status = "failed: " + err.Error()
		d["error"] = err.Error()
		g.log.Error("backup failed", "err", err)
	}
	w.Header().Set("X-Wardgate-Backup-Status", status)
	g.recordAudit(context.WithoutCancel(r.Context()), audit.Record{Actor: actorOf(t), Action: "backup.create", Subject: "data", Details: d})
}
