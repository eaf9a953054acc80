#!/usr/bin/env bash
# Runs the whole Wardgate path on loopback: a hub with a TUF repository
# of two releases and their SBOMs, an enrolled gateway, and 20 simulated
# devices. Prints a summary and leaves no process or file behind.
# With DEMO_KEEP=1 it leaves the hub and gateway running after the
# devices, prints curl commands for trying the device API by hand, and
# stops everything on Ctrl-C.
set -euo pipefail

bin=${BIN:-bin}
work=$(mktemp -d -t wardgate-demo-XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

http_get() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.stdout.write(r.read().decode())
except Exception:
    sys.exit(1)
PY
}

wait_for() {
  for _ in $(seq 1 100); do
    if http_get "$1" >/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "demo: $1 did not become ready; logs are below" >&2
  tail -n 30 "$work"/*.log >&2
  return 1
}

hub_port=$(free_port SOCK_DGRAM)
hub_admin=$(free_port SOCK_STREAM)
gw_port=$(free_port SOCK_STREAM)
gw_admin=$(free_port SOCK_STREAM)

echo "== manufacturer: repository with two releases and their SBOMs"
"$bin/wardhub" repo init "$work/repo"
head -c 3145728 /dev/urandom >"$work/pump-3.2.0.img"
head -c 1048576 /dev/urandom >"$work/monitor-5.1.0.img"
"$bin/wardhub" repo add "$work/repo" "$work/pump-3.2.0.img" -product infusion-pump -version 3.2.0 \
  -models IP-200 -hw-revisions B,C -sbom testdata/sbom/medical-device.cdx.json -install-duration 5m
"$bin/wardhub" repo add "$work/repo" "$work/monitor-5.1.0.img" -product patient-monitor -version 5.1.0 \
  -models MON-5 -sbom testdata/sbom/zephyr-firmware.spdx -install-duration 5m
"$bin/wardhub" enroll -data "$work/hub" -repo "$work/repo" -out "$work/bundle"

echo "== hub on udp/127.0.0.1:$hub_port"
"$bin/wardhub" serve -data "$work/hub" -repo "$work/repo" -listen "127.0.0.1:$hub_port" \
  -admin "127.0.0.1:$hub_admin" 2>"$work/hub.log" &
pids+=($!)
wait_for "http://127.0.0.1:$hub_admin/healthz"

echo "== gateway: init, enroll, serve"
cfg="$work/gateway/wardgate.toml"
"$bin/wardgate" init -config "$cfg" -data "$work/gateway/data"
# Point the generated config at the demo's hub and ports. The demo's
# device groups are small, so the small-cell threshold is lowered to 2.
sed -i \
  -e "s|^hub = \"\"|hub = \"127.0.0.1:$hub_port\"|" \
  -e "s|^listen = \[\"127.0.0.1:8443\"\]|listen = [\"127.0.0.1:$gw_port\"]|" \
  -e "s|^listen = \"127.0.0.1:9090\"|listen = \"127.0.0.1:$gw_admin\"|" \
  -e "s|^min_cell_devices = 11|min_cell_devices = 2|" "$cfg"
"$bin/wardgate" enroll -config "$cfg" -bundle "$work/bundle"
"$bin/wardgate" serve -config "$cfg" 2>"$work/gateway.log" &
gw_pid=$!
pids+=($gw_pid)
wait_for "http://127.0.0.1:$gw_admin/readyz"

echo "== 20 simulated devices"
"$bin/devicesim" -gateway "https://127.0.0.1:$gw_port" \
  -gateway-ca "$work/gateway/data/tls/device-api-ca.pem" \
  -device-ca-cert "$work/hub/ca/device-ca.pem" -device-ca-key "$work/hub/ca/device-ca.key" \
  -tuf-root "$work/bundle/root.json" -tuf-every 4 \
  -profile IP-200:B:3.1.0:infusion-pump:8 \
  -profile IP-200:A:3.1.0:infusion-pump:2 \
  -profile MON-5:A:5.0.0:patient-monitor:8 \
  -profile XR-1:A:1.0.0:imaging:2

if [ "${DEMO_KEEP:-}" = 1 ]; then
  "$bin/wardhub" device-cert -data "$work/hub" -manufacturer "Acme Medical" -serial BYHAND-1 -out "$work/device" >/dev/null
  curl_dev="curl --cacert $work/gateway/data/tls/device-api-ca.pem --cert $work/device/device.pem --key $work/device/device.key"
  cat <<EOF
== the hub and gateway keep running; try the device API as device Acme Medical/BYHAND-1:
$curl_dev -d '{"model":"IP-200","hardware_revision":"B","version":"3.1.0"}' https://127.0.0.1:$gw_port/v1/checkin
$curl_dev -r 0-99 -o /dev/null -D - https://127.0.0.1:$gw_port/v1/blobs/sha256/HASH   (HASH from an offer's url)
$curl_dev https://127.0.0.1:$gw_port/tuf/default/metadata/timestamp.json
Admin commands work too, for example: $bin/wardgate status -config $cfg
Press Ctrl-C to stop everything and delete $work.
EOF
  wait "$gw_pid" || true
  exit 0
fi

echo "== gateway status"
"$bin/wardgate" status -config "$cfg"

echo "== why a device with hardware revision A gets no pump release"
"$bin/wardgate" explain -config "$cfg" "Acme Medical/SIM-0009" infusion-pump/3.2.0/pump-3.2.0.img

# A clean stop flushes the telemetry relay over the tunnel.
kill -TERM "$gw_pid"
wait "$gw_pid" || { echo "demo: gateway exited with an error" >&2; tail -n 30 "$work/gateway.log" >&2; exit 1; }

echo "== hub"
"$bin/wardhub" stats -admin "127.0.0.1:$hub_admin"
echo "demo finished"
