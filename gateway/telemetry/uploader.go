package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// Uploader delivers one sealed payload upstream. It returns nil only when
// the hub has stored the payload or reports it already had it (a duplicate
// idempotency key). On any error the relay retries the same bytes with the
// same key later, without limit.
type Uploader interface {
	Upload(ctx context.Context, idempotencyKey string, body []byte) error
}

// HTTPUploader posts payloads to URL with the Idempotency-Key header. With
// the tunnel's client it is the production uploader; any 2xx is success.
type HTTPUploader struct {
	Client *http.Client
	URL    string
}

// Upload implements Uploader.
func (u *HTTPUploader) Upload(ctx context.Context, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building telemetry upload: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	c := u.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("uploading telemetry %s: %w", key, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("uploading telemetry %s: hub responded %s: %s", key, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
