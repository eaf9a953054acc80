package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one load run measured on the client side.
type loadResult struct {
	Bytes     int64
	Completed int
	Errors    int
	TTFB      []time.Duration // request start to first body byte
	Full      []time.Duration // request start to last body byte, completed downloads only
}

type loadSpec struct {
	URL      string
	Clients  int
	Duration time.Duration
	// Rate bounds each client's reading, in bytes per second; 0 reads as
	// fast as the server sends.
	Rate int64
	// HTTP2 makes each client negotiate HTTP/2 on a connection of its
	// own, as separate devices do; HTTP/2 would otherwise multiplex every
	// client over one connection.
	HTTP2 bool
}

func newClient(clients int, http2 bool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // loopback bench against a self-signed certificate
		ReadBufferSize:      256 << 10,
		ForceAttemptHTTP2:   http2,
	}}
}

// runLoad starts spec.Clients clients that each download the URL again and
// again until the duration ends; downloads still running then are cut
// and count their bytes but no completion.
func runLoad(spec loadSpec) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), spec.Duration)
	defer cancel()
	shared := newClient(spec.Clients, false)
	defer shared.CloseIdleConnections()
	var total atomic.Int64
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	for range spec.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := shared
			if spec.HTTP2 {
				client = newClient(1, true)
				defer client.CloseIdleConnections()
			}
			buf := make([]byte, 256<<10)
			for ctx.Err() == nil {
				ttfb, full, ok := download(ctx, client, spec, buf, &total)
				mu.Lock()
				if ttfb > 0 {
					res.TTFB = append(res.TTFB, ttfb)
				}
				switch {
				case ok:
					res.Completed++
					res.Full = append(res.Full, full)
				case ctx.Err() == nil:
					res.Errors++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Bytes = total.Load()
	return res
}

func download(ctx context.Context, client *http.Client, spec loadSpec, buf []byte, total *atomic.Int64) (ttfb, full time.Duration, ok bool) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.URL, nil)
	if err != nil {
		return 0, 0, false
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, 0, false
	}
	var got int64
	for {
		chunk := buf
		if spec.Rate > 0 {
			chunk = buf[:min(len(buf), int(spec.Rate/10)+1)]
		}
		n, err := resp.Body.Read(chunk)
		if n > 0 && got == 0 {
			ttfb = time.Since(start)
		}
		got += int64(n)
		total.Add(int64(n))
		if errors.Is(err, io.EOF) {
			return ttfb, time.Since(start), got == resp.ContentLength
		}
		if err != nil {
			return ttfb, 0, false
		}
		if spec.Rate > 0 {
			due := start.Add(time.Duration(float64(got) / float64(spec.Rate) * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return ttfb, 0, false
			}
		}
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// procStat returns the CPU seconds (user + system) and the resident
// memory in bytes of pid.
func procStat(pid int) (cpu float64, rss int64) {
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rss = kb << 10
			}
		}
	}
	return cpu, rss
}

// children returns pid and the processes whose parent it is (nginx's
// workers).
func children(pid int) []int {
	out := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			if f := strings.Fields(s[i+2:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, child)
			}
		}
	}
	return out
}

// sampler records the summed CPU and the peak summed RSS of a process
// tree while a run goes on.
type sampler struct {
	pids     []int
	cpuStart float64
	peak     atomic.Int64
	stop     chan struct{}
	done     chan struct{}
}

func startSampler(pid int) *sampler {
	s := &sampler{pids: children(pid), stop: make(chan struct{}), done: make(chan struct{})}
	s.cpuStart, _ = s.read()
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			_, rss := s.read()
			if rss > s.peak.Load() {
				s.peak.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) read() (cpu float64, rss int64) {
	for _, p := range s.pids {
		c, r := procStat(p)
		cpu += c
		rss += r
	}
	return cpu, rss
}

// end returns the CPU seconds used since the start and the peak RSS.
func (s *sampler) end() (cpu float64, peak int64) {
	close(s.stop)
	<-s.done
	c, _ := s.read()
	return c - s.cpuStart, s.peak.Load()
}
