package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxNoticeLine bounds one control stream message; a longer line is
// skipped up to its end and counted.
const maxNoticeLine = 64 << 10

// Notice is one message from the hub's control stream.
type Notice struct {
	// Type is "metadata", "entitlement", "withdrawn" or "ping".
	Type    string `json:"type"`
	Version int64  `json:"version,omitempty"`
	Target  string `json:"target,omitempty"`
}

// noticeTypes are the types the gateway acts on; "ping" only keeps the
// stream busy.
var noticeTypes = map[string]bool{"metadata": true, "entitlement": true, "withdrawn": true, "ping": true}

// Reasons a control stream message is ignored.
var (
	errNoticeOversized   = errors.New("control message longer than 64 KiB")
	errNoticeMalformed   = errors.New("control message is not a JSON notice")
	errNoticeUnknownType = errors.New("control message has an unknown type")
)

// ParseNotice decodes one control stream line. Unknown fields are
// allowed, so the hub can add some; an unknown type is an error.
func ParseNotice(line []byte) (Notice, error) {
	var n Notice
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Notice{}, errNoticeMalformed
	}
	if err := json.Unmarshal(line, &n); err != nil {
		return Notice{}, fmt.Errorf("%w: %v", errNoticeMalformed, err)
	}
	if !noticeTypes[n.Type] {
		return Notice{}, errNoticeUnknownType
	}
	if len(n.Target) > 4096 || n.Version < 0 {
		return Notice{}, errNoticeMalformed
	}
	return n, nil
}

// noticeReader splits a control stream into lines, skipping lines longer
// than max without buffering them.
type noticeReader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

func newNoticeReader(r io.Reader, max int) *noticeReader {
	return &noticeReader{br: bufio.NewReaderSize(r, 4096), max: max}
}

// next returns the next line without its newline. errNoticeOversized
// means one line was skipped and reading may go on; any other error ends
// the stream.
func (r *noticeReader) next() ([]byte, error) {
	r.buf = r.buf[:0]
	oversized := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !oversized {
			if len(r.buf)+len(chunk) > r.max+1 {
				oversized = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if oversized {
				return nil, errNoticeOversized
			}
			return bytes.TrimRight(r.buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if errors.Is(err, io.EOF) && len(r.buf) > 0 && !oversized {
				// A last line without newline: the stream ended mid-way.
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// controlLoop keeps the control stream open while s lasts; a stream
// that breaks on a live connection is reopened after a second.
func (c *Client) controlLoop(ctx context.Context, s *session) {
	for ctx.Err() == nil && s.alive() {
		err := c.readControl(ctx, s)
		s.mu.Lock()
		draining := s.draining
		s.mu.Unlock()
		if ctx.Err() != nil || !s.alive() || draining {
			return
		}
		c.log.Warn("control stream ended, reopening", "err", err)
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

// heartbeat is what the gateway writes on the control stream every
// keep-alive period. QUIC keep-alives are smaller than the smallest
// packet to which a hub responds with a stateless reset, so after a hub crash an
// idle tunnel would wait out its idle timeout; a heartbeat's packet is
// large enough to get the reset at once.
var heartbeat = []byte(`{"type":"heartbeat"}` + strings.Repeat(" ", 43) + "\n")

func (c *Client) readControl(ctx context.Context, s *session) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	// Closing the reader also frees a heartbeat write that no one reads.
	defer pr.Close()
	go func() {
		t := time.NewTicker(c.opts.KeepAlivePeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-t.C:
				if _, err := pw.Write(heartbeat); err != nil {
					return
				}
			}
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://wardhub/v1/control", pr)
	if err != nil {
		return err
	}
	resp, err := s.link.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if r := refusalFrom(resp); r != nil {
			return r
		}
		return fmt.Errorf("control stream: hub returned %s", resp.Status)
	}
	nr := newNoticeReader(resp.Body, maxNoticeLine)
	for {
		line, err := nr.next()
		if errors.Is(err, errNoticeOversized) {
			c.metrics.badNotices.WithLabelValues("oversized").Inc()
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("control stream closed by hub")
			}
			return fmt.Errorf("reading control stream: %w", err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		c.metrics.bytesDown.Add(float64(len(line) + 1))
		n, err := ParseNotice(line)
		switch {
		case errors.Is(err, errNoticeUnknownType):
			c.metrics.badNotices.WithLabelValues("unknown_type").Inc()
			continue
		case err != nil:
			c.metrics.badNotices.WithLabelValues("malformed").Inc()
			continue
		}
		c.metrics.notices.WithLabelValues(n.Type).Inc()
		if n.Type != "ping" && c.opts.OnNotice != nil {
			c.opts.OnNotice(n)
		}
	}
}
