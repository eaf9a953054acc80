// Command cachebench measures the gateway's cache serving path side by
// side with nginx on loopback: cached blobs to many clients (throughput,
// server CPU seconds per GB, p99 latencies), many slow clients and a large
// blob (peak RSS), and cold pull-through against nginx's proxy_cache_lock
// (upstream bytes per blob, late joiners' time to first byte).
//
// It runs as the orchestrator (`cachebench run`) and re-executes itself
// as the upstream (`cachebench upstream`) and gateway (`cachebench
// gateway`) processes, so each server's CPU and memory are its own.
// scripts/bench-cache.sh builds and runs it; `make bench` calls that.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cachebench run|upstream|gateway [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "upstream":
		err = runUpstream(os.Args[2:])
	case "gateway":
		err = runGateway(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: use run, upstream or gateway", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}
