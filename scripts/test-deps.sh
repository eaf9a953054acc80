#!/usr/bin/env bash
# Installs the Debian and npm packages the tests use, once. Safe to run
# again: it installs only what is missing. Daemons are kept from starting
# on install, since tests run their own instances on loopback or in
# network namespaces.
set -euo pipefail

debs=(
  iproute2          # ip netns and veth pairs for the discovery tests
  nftables          # UDP blocking and loss inside test namespaces
  avahi-daemon      # an independent mDNS responder
  avahi-utils       # avahi-browse
  dbus              # a private bus for avahi-browse
  python3-zeroconf  # a second independent mDNS peer
  curl              # the plain-download device of the cache tests
  chromium          # headless browser for the console tests
  chromium-driver   # DevTools driver that comes with it
  fonts-dejavu-core # a font for the console screenshots
  prometheus        # promtool check metrics on /metrics
  systemd           # systemd-analyze verify of the packaged unit
)

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: missing Debian packages ${missing[*]}; run as root to install them, or the tests that need them skip" >&2
  else
    echo "test-deps: installing ${missing[*]}"
    policy=/usr/sbin/policy-rc.d
    had_policy=0
    [ -e "$policy" ] && had_policy=1
    if [ $had_policy = 0 ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 0 ] && rm -f "$policy"
  fi
fi
# tuf-js 4.1.0 (runs on Node 20) for the cache's device tests.
if command -v npm >/dev/null && [ ! -e "$(dirname "$0")/../cache/testdata/tufjs/node_modules/tuf-js/package.json" ]; then
  (cd "$(dirname "$0")/../cache/testdata/tufjs" && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "test-deps: npm ci in cache/testdata/tufjs failed; the tuf-js device tests skip" >&2
fi
echo "test-deps: ready"
