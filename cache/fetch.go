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
