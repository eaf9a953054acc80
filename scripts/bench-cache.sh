#!/usr/bin/env bash
# Benchmarks the gateway's cache serving path side by side with nginx
# from Debian on loopback, and prints the results as markdown. Bounded:
# about ten minutes on a 2-core machine with the default 5s runs and 3
# rounds per row.
#   scripts/bench-cache.sh [-dur 5s] [-trials 3] [-phases cached,memory,cold] [-out FILE] [-cold-rate BYTES_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench-cache: nginx is missing; run as root to install nginx-light, or install it yourself" >&2
    exit 1
  fi
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ $had_policy = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  [ $had_policy = 0 ] && rm -f "$policy"
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/cachebench" ./cache/bench/cachebench
echo "# cache bench: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nginx -v 2>&1)"
timeout 15m "$bin/cachebench" run "$@"
