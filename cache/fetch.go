package cache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

var rootFileName = regexp.MustCompile(`^([0-9]+)\.root\.json$`)

// tunnelFetcher is go-tuf's fetcher for one refresh. It sends requests
// over the gateway's own client with a deadline each, never retries on
// its own (go-tuf's default fetcher retries for a long time and has no
// timeout), and keeps the bytes of every root version it downloads so
// the mirror can serve the whole root chain.
type tunnelFetcher struct {
	ctx     context.Context
	client  *http.Client
	timeout time.Duration

	mu    sync.Mutex
	roots map[int64][]byte
}

var _ fetcher.Fetcher = (*tunnelFetcher)(nil)

// DownloadFile fetches urlPath, reading at most maxLength bytes. A
// non-200 answer is an *metadata.ErrDownloadHTTP, so go-tuf treats 404 on
// the next root as "no newer root".
func (f *tunnelFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: urlPath}
	}
	if resp.ContentLength > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d allowed", req.URL.Path, resp.ContentLength, maxLength)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", req.URL.Path, err)
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is longer than the %d bytes allowed", req.URL.Path, maxLength)}
	}
	if resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return nil, fmt.Errorf("fetching %s: body of %d bytes, Content-Length %d", req.URL.Path, len(data), resp.ContentLength)
	}
	if m := rootFileName.FindStringSubmatch(path.Base(req.URL.Path)); m != nil {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		f.mu.Lock()
		f.roots[v] = data
		f.mu.Unlock()
	}
	return data, nil
}

// minTargetRate is the slowest upstream rate, in bytes per second, that
// a target download may average before it is abandoned as a slow
// retrieval attack.
const minTargetRate = 64 << 10

// fetchTarget streams a target into the blob store unless it is there.
// The blob store checks length and hashes before the blob becomes
// visible, so a truncated or tampered body is never stored.
func (m *Mirror) fetchTarget(ctx context.Context, t Target) error {
	if m.opts.Blobs.Has(t.SHA256()) {
		return nil
	}
	d, err := digestOf(t)
	if err != nil {
		return err
	}
	fill, producer, err := m.opts.Blobs.BeginOrJoin(d)
	if err != nil {
		return fmt.Errorf("caching target %s: %w", t.Path, err)
	}
	if !producer {
		select {
		case <-fill.Done():
			return fill.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	timeout := m.opts.RequestTimeout + time.Duration(t.Length/minTargetRate)*time.Second
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := m.opts.BaseURL + "/targets/" + hashedName(t.Path, t.SHA256())
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, url, nil)
	if err != nil {
		fill.Abort(err)
		return err
	}
	resp, err := m.opts.Client.Do(req)
	if err != nil {
		fill.Abort(err)
		return fmt.Errorf("fetching target %s: %w", t.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("fetching target %s: upstream returned %s", t.Path, resp.Status)
		fill.Abort(err)
		return err
	}
	n, err := io.Copy(fill, io.LimitReader(resp.Body, t.Length+1))
	if err == nil && n != t.Length {
		err = fmt.Errorf("target %s: upstream sent %d bytes, metadata says %d", t.Path, n, t.Length)
	}
	if err != nil {
		fill.Abort(err)
		m.metrics.targetFailures.Inc()
		return fmt.Errorf("fetching target %s: %w", t.Path, err)
	}
	if err := fill.Commit(); err != nil {
		m.metrics.targetFailures.Inc()
		return fmt.Errorf("target %s refused: %w", t.Path, err)
	}
	m.metrics.targetBytes.Add(float64(n))
	m.log.Info("target cached", "target", t.Path, "bytes", n)
	return nil
}
