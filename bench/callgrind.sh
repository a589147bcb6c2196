#!/usr/bin/env bash
# Instructions per request (valgrind's callgrind), for countersign and nginx doing the same job:
# deterministic where CPU time in a VM is not. Uses the PKI and configs bench/compare.sh wrote:
#
#   bench/compare.sh --out /tmp/cmp --targets "nginx cs" --seconds 2 --repeat 1 --skip-saturation
#   bench/callgrind.sh [--sim] /tmp/cmp [REQUESTS]
#
# Each proxy runs under callgrind with one worker; after a 200-request warm-up the counters are
# zeroed, REQUESTS (default 4000) requests go over 8 keep-alive mTLS connections, and the counters
# are dumped: their total divided by REQUESTS is the figure (user space only; 8 handshakes included).
# --sim adds callgrind's cache and branch simulation and prints, per request, the simulated
# first-level instruction and data cache misses and the mispredicted conditional and indirect
# branches: what a change of code layout (a profile-guided build) moves where instruction counts
# barely do. The simulated caches are valgrind's model of this machine's, not its counters.
set -euo pipefail
SIM=()
if [ "${1:-}" = --sim ]; then SIM=(--cache-sim=yes --branch-sim=yes); shift; fi
B=${1:?the output directory of bench/compare.sh}
N=${2:-4000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CS=${CS:-"$ROOT/target/release/countersign"}  # another build to compare: CS=/path/to/countersign
for t in valgrind callgrind_control oha nginx; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
W=$(mktemp -d /tmp/countersign-callgrind.XXXXXX)
cleanup() { pkill -f "nginx.*$B/backend/nginx.conf" 2>/dev/null || true; pkill -f "valgrind.*$W" 2>/dev/null || true; }
trap cleanup EXIT
OHA=(oha --no-tui -c 8 --cacert "$B/pki/ca.crt" --cert "$B/pki/client.crt" --key "$B/pki/client.key" https://localhost:18443/bench)

taskset -c 1 nginx -c "$B/backend/nginx.conf" -p "$B/backend" &
sleep 0.3
measure() {
  local name=$1; shift
  valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$W/$name.out" "$@" > "$W/$name.log" 2>&1 &
  local vg=$!
  for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/18443) 2>/dev/null && break; sleep 0.1; done
  "${OHA[@]}" -n 200 > /dev/null 2>&1
  callgrind_control -z "$vg" > /dev/null 2>&1
  "${OHA[@]}" -n "$N" 2>&1 | grep -E '^\s+\[2' | sed "s/^/$name: /"
  callgrind_control -d "$vg" > /dev/null 2>&1
  sleep 1
  kill -INT "$vg" 2>/dev/null || true
  sleep 2; kill -9 "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
  local ir
  ir=$(grep -m1 '^summary:\|^totals:' "$W/$name.out.1" | awk '{print $2}')
  echo "$name: $((ir / N)) instructions per request"
  if [ ${#SIM[@]} -gt 0 ]; then
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
    grep -m1 '^summary:\|^totals:' "$W/$name.out.1" | awk -v n="$N" -v who="$name" '{
      printf "%s: per request %.0f I1 misses, %.0f D1 misses, %.1f LL misses, %.0f mispredicted conditional branches (of %.0f), %.1f mispredicted indirect (of %.0f)\n",
        who, $5 / n, ($6 + $7) / n, ($8 + $9 + $10) / n, $12 / n, $11 / n, $14 / n, $13 / n }'
  fi
}
measure countersign "$CS" run -c "$B/cs-cs.yaml" --workers 1 --log-format json
sed 's/^daemon off;/daemon off;\nmaster_process off;/' "$B/nginx/nginx.conf" > "$W/nginx.conf"
measure nginx nginx -c "$W/nginx.conf" -p "$B/nginx"
