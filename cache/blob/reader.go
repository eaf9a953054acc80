package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Reader follows a fill: it returns bytes as soon as the producer has
// written them and blocks for more until the fill's hashes have been
// checked. It returns io.EOF only for a blob whose length and hashes
// matched. If the fill fails, it returns that error instead, so a server
// streaming it must abort the response rather than end it cleanly.
//
// Read and Seek use the reader's own offset and are for one goroutine;
// ReadAt may be called concurrently. Close may be called from any
// goroutine and unblocks a waiting Read.
type Reader struct {
	f      *Fill
	ctx    context.Context
	closed chan struct{}
	once   sync.Once
	held   bool // holds a file reference and a store hold

	pos int64
	// Guarded by f.mu.
	maxEnd int64 // highest offset this reader has returned
	failed error
}

// NewReader returns a reader at offset zero. A reader that joins after
// bytes were written reads them at once. The reader keeps the blob from
// eviction until it is closed.
func (f *Fill) NewReader() *Reader { return f.NewReaderContext(context.Background()) }

// NewReaderContext is NewReader whose blocking reads also end, with the
// context's error, when ctx is done (for example the request context of
// the device that is downloading).
func (f *Fill) NewReaderContext(ctx context.Context) *Reader {
	r := &Reader{f: f, ctx: ctx, closed: make(chan struct{})}
	s := f.s
	s.mu.Lock()
	s.opens[f.sha]++
	if e := s.blobs[f.sha]; e != nil {
		s.touchLocked(f.sha, e)
	}
	s.mu.Unlock()
	f.mu.Lock()
	switch {
	case f.file != nil:
		f.refs++
		r.held = true
	case f.state == stateCommitted:
		file, err := os.Open(s.blobPath(f.sha))
		if err != nil {
			r.failed = fmt.Errorf("reopening committed fill %s: %w", f.sha, ErrNotFound)
			break
		}
		f.file, f.refs, r.held = file, 1, true
	}
	if !r.held {
		if r.failed == nil {
			r.failed = f.err
		}
		f.mu.Unlock()
		s.release(f.sha)
		return r
	}
	f.readers[r] = struct{}{}
	f.mu.Unlock()
	return r
}

// Size returns the blob's expected length.
func (r *Reader) Size() int64 { return r.f.d.Length }

// Read reads from the reader's offset, waiting for the producer if needed.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.readAt(p, r.pos)
	r.pos += int64(n)
	return n, err
}

// ReadAt reads len(p) bytes at off, waiting for the producer until they
// are written; it returns io.EOF only when the committed blob ends first.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading fill %s: %w: negative offset %d", r.f.sha, ErrInvalid, off)
	}
	total := 0
	for total < len(p) {
		n, err := r.readAt(p[total:], off+int64(total))
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Seek sets the offset for the next Read. Offsets are relative to the
// expected length, which is known before the bytes are.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.f.d.Length + offset
	default:
		return 0, fmt.Errorf("seeking fill %s: %w: whence %d", r.f.sha, ErrInvalid, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seeking fill %s: %w: negative position %d", r.f.sha, ErrInvalid, abs)
	}
	r.pos = abs
	return abs, nil
}

// Close releases the reader. It is safe to call more than once and
// concurrently with Read.
func (r *Reader) Close() error {
	r.once.Do(func() {
		close(r.closed)
		if !r.held {
			return
		}
		f := r.f
		f.mu.Lock()
		delete(f.readers, r)
		f.releaseLocked()
		f.mu.Unlock()
		f.s.release(f.sha)
	})
	return nil
}

// readAt returns at least one byte at off, or an error; it waits while the
// producer has not reached off.
func (r *Reader) readAt(p []byte, off int64) (int, error) {
	f := r.f
	if len(p) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-r.closed:
			return 0, fmt.Errorf("reading fill %s: reader %w", f.sha, ErrClosed)
		default:
		}
		f.mu.Lock()
		if r.failed != nil {
			err := r.failed
			f.mu.Unlock()
			return 0, err
		}
		if f.state == stateFailed {
			f.mu.Unlock()
			return 0, fmt.Errorf("reading %w", f.err)
		}
		final := f.state == stateVerified || f.state == stateCommitted
		if off >= f.d.Length && final {
			f.mu.Unlock()
			return 0, io.EOF
		}
		if avail := f.written; off < avail {
			n := min(int64(len(p)), avail-off)
			gen, file := f.gen, f.file
			f.mu.Unlock()
			got, err := file.ReadAt(p[:n], off)
			f.mu.Lock()
			if f.gen != gen {
				// The bytes were cut back while we read: look again.
				f.mu.Unlock()
				continue
			}
			r.maxEnd = max(r.maxEnd, off+int64(got))
			f.mu.Unlock()
			if err != nil && (got < int(n) || !errors.Is(err, io.EOF)) {
				return got, fmt.Errorf("reading fill %s at %d: %w", f.sha, off, errors.Join(io.ErrUnexpectedEOF, err))
			}
			return got, nil
		}
		wait := f.notify
		f.mu.Unlock()
		select {
		case <-wait:
		case <-r.closed:
		case <-r.ctx.Done():
			return 0, fmt.Errorf("reading fill %s: %w", f.sha, r.ctx.Err())
		}
	}
}
