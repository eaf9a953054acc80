package sim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// verifyWithTUF runs a go-tuf client against the gateway's mirror, as a
// device that verifies its own updates would, and checks data against
// the target's verified length and hashes.
func (d *device) verifyWithTUF(ctx context.Context, target string, data []byte) error {
	dir, err := os.MkdirTemp("", "devicesim-tuf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	base := d.opts.GatewayURL + "/tuf/" + d.opts.Repository
	cfg, err := config.New(base+"/metadata", d.opts.TUFRoot)
	if err != nil {
		return err
	}
	cfg.LocalMetadataDir = dir
	cfg.LocalTargetsDir = dir
	cfg.RemoteTargetsURL = base + "/targets"
	cfg.Fetcher = &deviceFetcher{ctx: ctx, client: d.client}
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("starting TUF client: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("TUF refresh against the gateway mirror: %w", err)
	}
	tf, err := up.GetTargetInfo(target)
	if err != nil {
		return fmt.Errorf("TUF lookup of %s: %w", target, err)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return fmt.Errorf("TUF verification of %s: %w", target, err)
	}
	// Also fetch the target through the mirror's TUF path, as a device
	// with a full TUF client would.
	if _, _, err := up.DownloadTarget(tf, dir+"/download", ""); err != nil {
		return fmt.Errorf("TUF download of %s from the mirror: %w", target, err)
	}
	return nil
}

// deviceFetcher is go-tuf's fetcher over the device's own mutual-TLS
// client, with a deadline per file.
type deviceFetcher struct {
	ctx    context.Context
	client *http.Client
}

var _ fetcher.Fetcher = (*deviceFetcher)(nil)

func (f *deviceFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s exceeds %d bytes", url, maxLength)}
	}
	return data, nil
}
