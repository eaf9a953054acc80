package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	mib = 1 << 20
	gib = 1 << 30
	// coldRounds is how many uncached blobs each server pulls through.
	coldRounds = 5
)

// server is one process under measurement.
type server struct {
	name  string
	cmd   *exec.Cmd
	base  string // URL prefix of a blob, to which the SHA-256 or name is added
	http2 bool   // clients negotiate HTTP/2, each on its own connection
}

// bench holds the running processes and the repository.
type bench struct {
	dir      string
	self     string
	sums     map[string]string
	procs    []*exec.Cmd
	fastUp   string // upstream URL without rate limit
	slowUp   string // rate-limited upstream URL for the cold runs
	gwHTTP   server
	gwHTTPS  server
	gwHTTP2  server // the HTTPS listener with HTTP/2, as Go and curl devices negotiate it
	gwCold   server
	ngStatic server
	ngSndbuf server // nginx with the gateway's busy send buffer, for reference
	ngProxy  server
	out      *bytes.Buffer
	prefetch []string // the blobs the gateway caches before serving
	http2    bool     // the gateway offers HTTP/2 and the HTTP/2 rows run
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	dur := fs.Duration("dur", 5*time.Second, "length of each load run")
	trials := fs.Int("trials", 3, "rounds of nginx and the gateway per cached-blob row")
	outFile := fs.String("out", "", "also write the markdown results to this file")
	coldRate := fs.Int64("cold-rate", 100*mib, "upstream bytes per second in the cold runs")
	phases := fs.String("phases", "cached,memory,cold", "comma-separated phases to run")
	http2 := fs.Bool("http2", false, "also measure HTTPS with HTTP/2, which the gateway's device API does not offer")
	_ = fs.Parse(args)
	if _, err := exec.LookPath("nginx"); err != nil {
		return errors.New("nginx is not installed: apt-get install nginx-light (with a policy-rc.d that exits 101 so it does not start)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cachebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// nginx's workers run as an unprivileged user and must read the files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b := &bench{dir: dir, self: self, out: &bytes.Buffer{}, http2: *http2}
	defer b.stop()
	// Only the blobs the chosen phases read are written and cached.
	specs := []blobSpec{{"b100m.img", 100 * mib}}
	if strings.Contains(*phases, "cached") {
		specs = append(specs, blobSpec{"b1g.img", gib})
	}
	if strings.Contains(*phases, "memory") {
		specs = append(specs, blobSpec{"b2g.img", 2 * gib})
	}
	for _, s := range specs {
		b.prefetch = append(b.prefetch, s.Name)
	}
	for i := range coldRounds {
		specs = append(specs, blobSpec{fmt.Sprintf("cold-gw-%d.img", i), 100 * mib}, blobSpec{fmt.Sprintf("cold-ngx-%d.img", i), 100 * mib})
	}
	fmt.Fprintln(os.Stderr, "writing the repository...")
	root, sums, err := writeRepo(filepath.Join(dir, "repo"), specs)
	if err != nil {
		return fmt.Errorf("writing the bench repository: %w", err)
	}
	b.sums = sums
	if err := os.WriteFile(filepath.Join(dir, "root.json"), root, 0o600); err != nil {
		return err
	}
	if err := b.start(*coldRate); err != nil {
		return err
	}
	// Write back the gigabytes just written before measuring, so the runs
	// do not compete with the kernel's writeback.
	syscall.Sync()
	if strings.Contains(*phases, "cached") {
		b.cached(*dur, max(1, *trials))
	}
	if strings.Contains(*phases, "memory") {
		b.memory(*dur)
	}
	if strings.Contains(*phases, "cold") {
		syscall.Sync()
		b.cold(*coldRate)
	}
	fmt.Print(b.out.String())
	if *outFile != "" {
		return os.WriteFile(*outFile, b.out.Bytes(), 0o644)
	}
	return nil
}

func (b *bench) spawn(name string, args ...string) (*exec.Cmd, string, error) {
	addrFile := filepath.Join(b.dir, name+".addr")
	cmd := exec.Command(b.self, append(args, "-addr-file", addrFile)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	b.procs = append(b.procs, cmd)
	addr, err := waitFile(addrFile, 5*time.Minute)
	return cmd, addr, err
}

func waitFile(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(name); err == nil {
			return string(b), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not appear within %s", name, timeout)
}

func (b *bench) start(coldRate int64) error {
	repo := filepath.Join(b.dir, "repo")
	_, fast, err := b.spawn("upstream-fast", "upstream", "-dir", repo)
	if err != nil {
		return err
	}
	_, slow, err := b.spawn("upstream-slow", "upstream", "-dir", repo, "-rate", fmt.Sprint(coldRate))
	if err != nil {
		return err
	}
	b.fastUp, b.slowUp = "http://"+fast, "http://"+slow
	root := filepath.Join(b.dir, "root.json")
	fmt.Fprintln(os.Stderr, "starting the gateway and caching the blobs...")
	if err := b.startGateway(); err != nil {
		return err
	}
	cold, caddr, err := b.spawn("gateway-cold", "gateway", "-dir", filepath.Join(b.dir, "gw-cold"), "-upstream", b.slowUp, "-root", root,
		"-tls-addr-file", filepath.Join(b.dir, "gateway-cold.tls"))
	if err != nil {
		return err
	}
	b.gwCold = server{name: "gateway", cmd: cold, base: "http://" + caddr + "/v1/blobs/sha256/"}
	ng, addrs, err := startNginx(b.dir, filepath.Join(repo, "targets"), b.sums, slow)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, ng)
	b.ngStatic = server{name: "nginx (HTTP, sendfile)", cmd: ng, base: "http://" + addrs.static + "/"}
	b.ngSndbuf = server{name: "nginx (HTTP, sendfile, sndbuf=256k)", cmd: ng, base: "http://" + addrs.sndbuf + "/"}
	b.ngProxy = server{name: "nginx proxy_cache_lock", cmd: ng, base: "http://" + addrs.proxy + "/targets/"}
	return nil
}

// startGateway starts the gateway process on the cached data folder,
// caching the blobs first if they are not yet.
func (b *bench) startGateway() error {
	for _, f := range []string{"gateway.addr", "gateway.tls"} {
		_ = os.Remove(filepath.Join(b.dir, f))
	}
	args := []string{"gateway", "-dir", filepath.Join(b.dir, "gw"), "-upstream", b.fastUp, "-root", filepath.Join(b.dir, "root.json"),
		"-prefetch", strings.Join(b.prefetch, ","), "-tls-addr-file", filepath.Join(b.dir, "gateway.tls")}
	if b.http2 {
		args = append(args, "-http2")
	}
	gw, addr, err := b.spawn("gateway", args...)
	if err != nil {
		return err
	}
	tlsAddr, err := waitFile(filepath.Join(b.dir, "gateway.tls"), time.Minute)
	if err != nil {
		return err
	}
	b.gwHTTP = server{name: "gateway (HTTP)", cmd: gw, base: "http://" + addr + "/v1/blobs/sha256/"}
	b.gwHTTPS = server{name: "gateway (HTTPS)", cmd: gw, base: "https://" + tlsAddr + "/v1/blobs/sha256/"}
	b.gwHTTP2 = server{name: "gateway (HTTPS, HTTP/2)", cmd: gw, base: "https://" + tlsAddr + "/v1/blobs/sha256/", http2: true}
	return nil
}

// restartGateway stops the gateway cleanly and starts a fresh process, so
// a memory run does not inherit the previous run's heap.
func (b *bench) restartGateway() error {
	p := b.gwHTTP.cmd.Process
	_ = p.Signal(syscall.SIGTERM)
	_, _ = p.Wait()
	return b.startGateway()
}

// stop ends every process. nginx gets SIGTERM, on which its master stops
// the workers; SIGKILL would leave them running with the bench files open.
func (b *bench) stop() {
	for _, p := range b.procs {
		if p == b.ngStatic.cmd {
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _, _ = p.Process.Wait(); close(done) }()
			select {
			case <-done:
				continue
			case <-time.After(10 * time.Second):
			}
		}
		_ = p.Process.Kill()
		_, _ = p.Process.Wait()
	}
}

func (b *bench) url(s server, name string) string { return s.base + b.sums[name] }

// cached serves committed blobs to 1, 16, 64 and 256 clients. Each row
// runs trials rounds of nginx and the gateway over plain HTTP, back to
// back in alternating order, so that both see the same machine load. The
// ratios are taken per round, and their median is reported. The HTTPS and
// HTTP/2 rows, which have no nginx counterpart, and nginx with the send
// buffer that the gateway sets on busy connections run once per row, for
// reference.
func (b *bench) cached(dur time.Duration, trials int) {
	fmt.Fprintf(b.out, "## Cached blobs\n\nEach run lasts %s; every client downloads the blob again and again. "+
		"nginx and the gateway over HTTP run %d rounds per row, back to back in alternating order; the figures are the "+
		"median of the rounds, with the lowest and highest in brackets. "+
		"CPU is the server process tree's user+system time per GB sent. TTFB is request start to first body byte; "+
		"full is request start to last byte, over completed downloads (of the median round).\n\n", dur, trials)
	fmt.Fprintln(b.out, "| blob | clients | server | MB/s | CPU s/GB | p99 TTFB | p99 full | completed | errors |")
	fmt.Fprintln(b.out, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	var ratios bytes.Buffer
	fmt.Fprintln(&ratios, "| blob | clients | throughput gateway/nginx | CPU per GB gateway/nginx | rounds with throughput at least nginx's | rounds with CPU per GB within 1.2x |")
	fmt.Fprintln(&ratios, "| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, blob := range []string{"b100m.img", "b1g.img"} {
		for _, clients := range []int{1, 16, 64, 256} {
			var ng, gw []measured
			for i := range trials {
				pair := []server{b.ngStatic, b.gwHTTP}
				if i%2 == 1 {
					pair = []server{b.gwHTTP, b.ngStatic}
				}
				for _, s := range pair {
					m := b.measure(s, blob, clients, dur)
					if s == b.ngStatic {
						ng = append(ng, m)
					} else {
						gw = append(gw, m)
					}
				}
			}
			sndbuf := b.measure(b.ngSndbuf, blob, clients, dur)
			tls := b.measure(b.gwHTTPS, blob, clients, dur)
			rows := []serverRuns{{b.ngStatic, ng}, {b.gwHTTP, gw}, {b.ngSndbuf, []measured{sndbuf}}, {b.gwHTTPS, []measured{tls}}}
			if b.http2 {
				rows = append(rows, serverRuns{b.gwHTTP2, []measured{b.measure(b.gwHTTP2, blob, clients, dur)}})
			}
			for _, row := range rows {
				fmt.Fprintf(b.out, "| %s | %d | %s | %s | %s | %s | %s | %d | %d |\n", sizeName(blob), clients, row.s.name,
					spread(row.ms, func(m measured) float64 { return m.mbps }, "%.0f"),
					spread(row.ms, func(m measured) float64 { return m.cpuPerGB }, "%.3f"),
					ms(medianRound(row.ms).ttfb99), ms(medianRound(row.ms).full99), medianRound(row.ms).completed, sumErrors(row.ms))
			}
			var tput, cpu []float64
			tputOK, cpuOK := 0, 0
			for i := range ng {
				t, c := gw[i].mbps/ng[i].mbps, gw[i].cpuPerGB/ng[i].cpuPerGB
				tput, cpu = append(tput, t), append(cpu, c)
				if t >= 1 {
					tputOK++
				}
				if c <= 1.2 {
					cpuOK++
				}
			}
			fmt.Fprintf(&ratios, "| %s | %d | %.3f | %.3f | %d of %d | %d of %d |\n", sizeName(blob), clients,
				median(tput), median(cpu), tputOK, len(ng), cpuOK, len(ng))
		}
	}
	fmt.Fprintf(b.out, "\nRatios per round (gateway over HTTP against nginx in the same round), median of %d rounds:\n\n", trials)
	b.out.Write(ratios.Bytes())
}

// serverRuns are the load runs of one server in one row.
type serverRuns struct {
	s  server
	ms []measured
}

// measured is one load run against one server.
type measured struct {
	mbps, cpuPerGB  float64
	ttfb99, full99  time.Duration
	completed, errs int
}

func (b *bench) measure(s server, blob string, clients int, dur time.Duration) measured {
	fmt.Fprintf(os.Stderr, "cached %s, %d clients, %s\n", blob, clients, s.name)
	smp := startSampler(s.cmd.Process.Pid)
	res := runLoad(loadSpec{URL: b.url(s, blob), Clients: clients, Duration: dur, HTTP2: s.http2})
	cpu, _ := smp.end()
	gb := float64(res.Bytes) / 1e9
	return measured{
		mbps: float64(res.Bytes) / 1e6 / dur.Seconds(), cpuPerGB: cpu / max(gb, 1e-9),
		ttfb99: percentile(res.TTFB, 0.99), full99: percentile(res.Full, 0.99), completed: res.Completed, errs: res.Errors,
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// spread formats the median of the rounds and, with more than one round,
// the lowest and highest.
func spread(ms []measured, get func(measured) float64, format string) string {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = get(m)
	}
	out := fmt.Sprintf(format, median(v))
	if len(v) > 1 {
		out += fmt.Sprintf(" ("+format+"–"+format+")", slices.Min(v), slices.Max(v))
	}
	return out
}

// medianRound is the round whose throughput is the median, for the
// latency columns.
func medianRound(ms []measured) measured {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b measured) int { return cmp.Compare(a.mbps, b.mbps) })
	return s[(len(s)-1)/2]
}

func sumErrors(ms []measured) int {
	n := 0
	for _, m := range ms {
		n += m.errs
	}
	return n
}

// memory measures peak RSS with 1000 slow clients and with 256 clients
// reading the 2 GiB blob.
func (b *bench) memory(dur time.Duration) {
	fmt.Fprintf(b.out, "\n## Peak memory\n\nPeak resident memory of the server process tree (sampled every 20 ms) during a run of %s.\n\n", 2*dur)
	fmt.Fprintln(b.out, "| load | server | peak RSS MiB | MB/s | errors |")
	fmt.Fprintln(b.out, "| --- | --- | ---: | ---: | ---: |")
	runs := []struct {
		name    string
		blob    string
		clients int
		rate    int64
	}{
		{"1000 clients at 64 KiB/s, 100 MiB blob", "b100m.img", 1000, 64 << 10},
		{"256 clients, 2 GiB blob", "b2g.img", 256, 0},
	}
	if err := b.restartGateway(); err != nil {
		fmt.Fprintf(b.out, "| restarting the gateway failed: %v | | | | |\n", err)
		return
	}
	_, idle := procStat(b.gwHTTP.cmd.Process.Pid)
	fmt.Fprintf(b.out, "| idle after start, blobs cached | gateway | %.1f | - | - |\n", float64(idle)/mib)
	for _, r := range runs {
		for i, s := range []server{b.ngStatic, b.gwHTTP, b.gwHTTPS} {
			if i > 0 {
				// A fresh gateway process for each run; the server value
				// picks up the new process and addresses.
				if err := b.restartGateway(); err != nil {
					fmt.Fprintf(b.out, "| restarting the gateway failed: %v | | | | |\n", err)
					return
				}
				s = []server{b.ngStatic, b.gwHTTP, b.gwHTTPS}[i]
			}
			fmt.Fprintf(os.Stderr, "memory: %s, %s\n", r.name, s.name)
			smp := startSampler(s.cmd.Process.Pid)
			res := runLoad(loadSpec{URL: b.url(s, r.blob), Clients: r.clients, Duration: 2 * dur, Rate: r.rate})
			_, peak := smp.end()
			fmt.Fprintf(b.out, "| %s | %s | %.1f | %.0f | %d |\n", r.name, s.name, float64(peak)/mib, float64(res.Bytes)/1e6/(2*dur).Seconds(), res.Errors)
		}
	}
}

// cold starts one download of an uncached blob and 15 late joiners spread
// over the fill, and compares upstream bytes and the joiners' TTFB.
func (b *bench) cold(rate int64) {
	fill := time.Duration(float64(100*mib) / float64(rate) * float64(time.Second))
	fmt.Fprintf(b.out, "\n## Cold pull-through\n\nOne device asks for an uncached 100 MiB blob; 15 more join at even steps "+
		"over the first 80%% of the fill. The upstream sends at %d MiB/s (a fill takes about %s).\n\n", rate/mib, fill.Round(100*time.Millisecond))
	fmt.Fprintln(b.out, "| server | upstream bytes / blob | late joiners' TTFB p50 | p99 | max | all bodies complete |")
	fmt.Fprintln(b.out, "| --- | ---: | ---: | ---: | ---: | --- |")
	type coldRun struct {
		s    server
		url  string
		path string
	}
	var runs []coldRun
	for i := range coldRounds {
		gw, ngx := fmt.Sprintf("cold-gw-%d.img", i), fmt.Sprintf("cold-ngx-%d.img", i)
		runs = append(runs,
			coldRun{b.gwCold, b.url(b.gwCold, gw), "targets/" + b.sums[gw] + "." + gw},
			coldRun{b.ngProxy, b.ngProxy.base + b.sums[ngx] + "." + ngx, "targets/" + b.sums[ngx] + "." + ngx})
	}
	all := map[string][]time.Duration{}
	for _, c := range runs {
		fmt.Fprintf(os.Stderr, "cold: %s\n", c.s.name)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ttfb []time.Duration
		complete := true
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * fill * 8 / 10 / 15)
				res := runOnce(c.url)
				mu.Lock()
				defer mu.Unlock()
				if i > 0 {
					ttfb = append(ttfb, res.ttfb)
				}
				complete = complete && res.ok
			}()
		}
		wg.Wait()
		all[c.s.name] = append(all[c.s.name], ttfb...)
		sent := upstreamSent(b.slowUp, c.path)
		fmt.Fprintf(b.out, "| %s | %.4f | %s | %s | %s | %v |\n", c.s.name, float64(sent)/float64(100*mib),
			ms(percentile(ttfb, 0.5)), ms(percentile(ttfb, 0.99)), ms(percentile(ttfb, 1)), complete)
	}
	fmt.Fprintf(b.out, "\nOver all %d rounds:\n\n| server | late joiners | TTFB p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |\n", coldRounds)
	for _, s := range []server{b.gwCold, b.ngProxy} {
		t := all[s.name]
		fmt.Fprintf(b.out, "| %s | %d | %s | %s | %s |\n", s.name, len(t), ms(percentile(t, 0.5)), ms(percentile(t, 0.99)), ms(percentile(t, 1)))
	}
}

type onceResult struct {
	ttfb time.Duration
	ok   bool
}

func runOnce(url string) onceResult {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return onceResult{}
	}
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	var got int64
	var res onceResult
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && got == 0 {
			res.ttfb = time.Since(start)
		}
		got += int64(n)
		if err != nil {
			res.ok = errors.Is(err, io.EOF) && resp.StatusCode == http.StatusOK && got == 100*mib
			return res
		}
	}
}

func upstreamSent(base, path string) int64 {
	resp, err := http.Get(base + "/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var m map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return -1
	}
	return m[path]
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func sizeName(blob string) string {
	return strings.NewReplacer("b100m.img", "100 MiB", "b1g.img", "1 GiB", "b2g.img", "2 GiB").Replace(blob)
}
