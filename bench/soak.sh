#!/usr/bin/env bash
# The soak: the release sidecar under steady mTLS + signed load for MINUTES, with the HMAC key and
# the server certificate rotating every minute (examples/soak_client.rs does the work and says how).
#
#   bench/soak.sh MINUTES [soak_client options: --rate N --concurrency N --rotate-every S
#                          --warmup-minutes N ...]
#
# MINUTES measured minutes follow a warm-up at the same load (one minute unless --warmup-minutes
# says otherwise: the replay store fills, connections and TLS sessions are made). Prints
# per-minute requests, errors, p50/p99 and the sidecar's RSS (warm-up minutes marked w1, ...),
# then a summary and PASS/FAIL (exit 1): zero errors, every rotation taken, RSS growth under 10 %
# over the measured minutes.
# Everything runs on 127.0.0.1 in a temporary directory, removed at the end unless SOAK_KEEP=1;
# the sidecar is stopped with SIGTERM (and dies with the client if it is killed); the whole run is
# bounded by `timeout`.
set -euo pipefail

[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/soak.sh MINUTES [options]" >&2; exit 2; }
minutes=$1; shift
warmup=1
args=("$@")
for i in "${!args[@]}"; do
    [[ ${args[$i]} == --warmup-minutes ]] && warmup=${args[$((i + 1))]:-1}
    [[ ${args[$i]} == --warmup-minutes=* ]] && warmup=${args[$i]#*=}
done
[[ $warmup =~ ^[0-9]+$ ]] || { echo "--warmup-minutes wants a whole number" >&2; exit 2; }
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

cargo build --release --bin countersign --example soak_client
dir=$(mktemp -d -t countersign-soak.XXXXXX)
cleanup() { [[ ${SOAK_KEEP:-0} == 1 ]] && echo "files kept in $dir" || rm -rf "$dir"; }
trap cleanup EXIT

status=0
timeout --kill-after=10 $(((minutes + warmup) * 60 + 180)) \
    "$target/release/examples/soak_client" --sidecar "$target/release/countersign" \
    --dir "$dir" --minutes "$minutes" "$@" || status=$?
if [[ $status -ne 0 && -f $dir/sidecar.log ]]; then
    echo "--- last lines of the sidecar's log"
    tail -n 20 "$dir/sidecar.log"
fi
exit $status
