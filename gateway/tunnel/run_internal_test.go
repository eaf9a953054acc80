package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// fakeLink is an in-memory connection: hello answers 200 (or what
// helloStatus says), the control stream blocks until the link closes,
// and other requests go to onRequest.
type fakeLink struct {
	done      chan struct{}
	once      sync.Once
	err       error
	closeTook time.Duration
	hello     func() *http.Response
	onRequest func(*fakeLink, *http.Request) (*http.Response, error)
}

func newFakeLink() *fakeLink { return &fakeLink{done: make(chan struct{})} }

func (l *fakeLink) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-l.done:
		return nil, l.err
	default:
	}
	switch req.URL.Path {
	case "/v1/hello":
		if l.hello != nil {
			return l.hello(), nil
		}
		return response(http.StatusOK, `{"site":"site-test"}`), nil
	case "/v1/control":
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: &blockingBody{done: l.done, ctx: req.Context()}}, nil
	}
	if l.onRequest != nil {
		return l.onRequest(l, req)
	}
	return response(http.StatusOK, "ok"), nil
}

func (l *fakeLink) Done() <-chan struct{} { return l.done }
func (l *fakeLink) RTT() time.Duration    { return time.Millisecond }

func (l *fakeLink) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

func (l *fakeLink) Close(string) { l.die(errors.New("closed locally")) }

// die ends the link after closeTook, as a close that has to reach the
// peer first.
func (l *fakeLink) die(err error) {
	l.once.Do(func() {
		l.err = err
		if l.closeTook > 0 {
			time.AfterFunc(l.closeTook, func() { close(l.done) })
			return
		}
		close(l.done)
	})
}

type blockingBody struct {
	done <-chan struct{}
	ctx  context.Context
}

func (b *blockingBody) Read([]byte) (int, error) {
	select {
	case <-b.done:
		return 0, io.ErrUnexpectedEOF
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
}
func (b *blockingBody) Close() error { return nil }

func response(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
}

func newTestClient(t *testing.T, opts Options) *Client {
	t.Helper()
	opts.Addr = "hub.invalid:443"
	opts.TLS = &tls.Config{Certificates: []tls.Certificate{{}}}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Registerer = prometheus.NewRegistry()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runClient(t *testing.T, c *Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(context.Background())
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
}

func timeoutErr() error {
	return &DialError{Transport: TransportQUIC, Err: &quic.IdleTimeoutError{}}
}

func TestRedialFollowsCappedFullJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fails = 12
		c := newTestClient(t, Options{Transport: TransportQUIC, MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second})
		var mu sync.Mutex
		var at []time.Time
		connected := make(chan struct{})
		c.testDial = func(context.Context, string) (link, string, error) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) <= fails {
				return nil, "", timeoutErr()
			}
			close(connected)
			return newFakeLink(), "", nil
		}
		runClient(t, c)
		<-connected
		synctest.Wait()
		if !c.Connected() {
			t.Fatal("client not connected after the dials succeeded")
		}
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(at); i++ {
			gap := at[i].Sub(at[i-1])
			ceiling := min(2*time.Second, 100*time.Millisecond<<(i-1))
			if gap < 0 || gap > ceiling {
				t.Errorf("delay before dial %d = %s, want within [0, %s]", i+1, gap, ceiling)
			}
		}
	})
}

func TestFullJitterStaysUnderCeiling(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want time.Duration
	}{
		{"first", 0, 100 * time.Millisecond},
		{"doubled", 3, 800 * time.Millisecond},
		{"capped", 10, 2 * time.Second},
		{"huge attempt count", 1 << 20, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var maxSeen time.Duration
			for range 2000 {
				d := fullJitter(100*time.Millisecond, 2*time.Second, tc.n)
				if d < 0 || d > tc.want {
					t.Fatalf("fullJitter(n=%d) = %s, want within [0, %s]", tc.n, d, tc.want)
				}
				maxSeen = max(maxSeen, d)
			}
			// Full jitter spreads over the whole range, not near zero.
			if maxSeen < tc.want/2 {
				t.Errorf("largest of 2000 delays = %s, want above %s", maxSeen, tc.want/2)
			}
		})
	}
}

func TestShortLivedConnectionsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestClient(t, Options{Transport: TransportQUIC, MinBackoff: time.Second, MaxBackoff: 8 * time.Second})
		var mu sync.Mutex
		var at []time.Time
		c.testDial = func(context.Context, string) (link, string, error) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			l := newFakeLink()
			// The hub accepts, then drops the connection at once.
			time.AfterFunc(10*time.Millisecond, func() { l.die(&quic.ApplicationError{Remote: true}) })
			return l, "", nil
		}
		runClient(t, c)
		time.Sleep(60 * time.Second)
		mu.Lock()
		n := len(at)
		mu.Unlock()
		// Without backoff a tight loop would dial thousands of times.
		if n > 30 {
			t.Errorf("dialled %d times in 60s against a hub that drops every connection, want at most 30", n)
		}
		if n < 3 {
			t.Errorf("dialled %d times in 60s, want the tunnel to keep trying", n)
		}
	})
}

func TestNeverTwoConnectionsOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestClient(t, Options{Transport: TransportAuto, ReprobeInterval: 5 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		var mu sync.Mutex
		open, maxOpen, dials := 0, 0, map[string]int{}
		quicUp := false
		c.testProbe = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if quicUp {
				return nil
			}
			return timeoutErr()
		}
		c.testDial = func(_ context.Context, tr string) (link, string, error) {
			mu.Lock()
			defer mu.Unlock()
			if tr == TransportQUIC && !quicUp {
				return nil, "", timeoutErr()
			}
			dials[tr]++
			open++
			maxOpen = max(maxOpen, open)
			l := newFakeLink()
			l.closeTook = 300 * time.Millisecond
			go func() {
				<-l.done
				mu.Lock()
				open--
				mu.Unlock()
			}()
			// Every connection dies after a while, through no fault of
			// the gateway.
			time.AfterFunc(7*time.Second, func() { l.die(&quic.IdleTimeoutError{}) })
			return l, "", nil
		}
		runClient(t, c)
		time.Sleep(20 * time.Second)
		mu.Lock()
		quicUp = true
		mu.Unlock()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if maxOpen != 1 {
			t.Errorf("at most %d connections were open at once, want 1", maxOpen)
		}
		if dials[TransportTCP] == 0 || dials[TransportQUIC] == 0 {
			t.Errorf("dials by transport %v, want both TCP (while QUIC failed) and QUIC (after it recovered)", dials)
		}
		if got := c.MaxOpen(); got != 1 {
			t.Errorf("client MaxOpen = %d, want 1", got)
		}
		if got := c.Transport(); got != TransportQUIC && got != "" {
			t.Errorf("transport after QUIC recovered = %q, want quic", got)
		}
	})
}

func TestLostRequestRetriedWithItsKey(t *testing.T) {
	tests := []struct {
		name      string
		key       string
		wantCalls int
		wantErr   bool
	}{
		{"with idempotency key", "site/42", 2, false},
		{"without key", "", 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestClient(t, Options{Transport: TransportQUIC, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
				var mu sync.Mutex
				var keys []string
				c.testDial = func(context.Context, string) (link, string, error) {
					l := newFakeLink()
					l.onRequest = func(l *fakeLink, r *http.Request) (*http.Response, error) {
						body, _ := io.ReadAll(r.Body)
						mu.Lock()
						keys = append(keys, r.Header.Get("Idempotency-Key")+"="+string(body))
						first := len(keys) == 1
						mu.Unlock()
						if first {
							// The connection dies with the request in flight.
							l.die(&quic.StatelessResetError{})
							return nil, errors.New("stream reset by connection loss")
						}
						return response(http.StatusOK, "stored"), nil
					}
					return l, "", nil
				}
				runClient(t, c)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://wardhub/v1/telemetry", strings.NewReader("batch-1"))
				if tc.key != "" {
					req.Header.Set("Idempotency-Key", tc.key)
				}
				resp, err := c.RoundTrip(req)
				if (err != nil) != tc.wantErr {
					t.Fatalf("RoundTrip error = %v, want error %t", err, tc.wantErr)
				}
				if resp != nil {
					resp.Body.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				if len(keys) != tc.wantCalls {
					t.Fatalf("hub saw %d attempts %v, want %d", len(keys), keys, tc.wantCalls)
				}
				for _, k := range keys {
					if k != tc.key+"=batch-1" {
						t.Errorf("attempt sent %q, want the same key and body %q", k, tc.key+"=batch-1")
					}
				}
			})
		})
	}
}

func TestRefusalFailsRequestsAtOnceAndRetriesSlowly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestClient(t, Options{Transport: TransportQUIC, RefusedRetry: time.Minute})
		var mu sync.Mutex
		var at []time.Time
		c.testDial = func(context.Context, string) (link, string, error) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			l := newFakeLink()
			l.hello = func() *http.Response {
				r := response(http.StatusForbidden, `{"reject":"revoked","site":"site-test","detail":"site site-test was revoked"}`)
				r.Header.Set(rejectHeader, "revoked")
				return r
			}
			return l, "", nil
		}
		runClient(t, c)
		synctest.Wait()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://wardhub/v1/tuf/metadata/timestamp.json", nil)
		_, err := c.RoundTrip(req)
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Code != "revoked" {
			t.Fatalf("request while refused: error %v, want a RefusedError with code revoked", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("request while refused waited %s, want an immediate failure", waited)
		}
		if st := c.Status(); st.State != StateRefused || !strings.Contains(st.Refusal, "revoked") {
			t.Errorf("status = %q refusal %q, want state %q and the hub's reason", st.State, st.Refusal, StateRefused)
		}
		time.Sleep(10 * time.Minute)
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 30*time.Second {
				t.Errorf("refused gateway redialled after %s, want at least 30s", gap)
			}
		}
		if len(at) < 2 {
			t.Errorf("refused gateway dialled %d times in 10 minutes, want it to keep checking", len(at))
		}
	})
}
