#!/usr/bin/env bash
# Side-by-side comparison of countersign with nginx and haproxy doing the same job: terminate TLS
# with a required client certificate, allow 127.0.0.0/8, proxy with keep-alive to the same backend.
#
# Each proxy runs one worker pinned to core 0 (taskset); the backend (nginx `return 200`) and the
# load generator (oha) share core 1. Figures: CPU time per request at a fixed offered rate (the
# proxy process's utime+stime from /proc, all of nginx's processes), latency percentiles at that
# rate, with the context switches per request (sleeps: voluntary, the process waited for events;
# preemptions: involuntary) over all its threads, max req/s with and without keep-alive, RSS idle
# and under load, time to ready.
#
# Every figure is the median of --repeat rounds (default 3); within a round the targets run one
# after another, so slow drifts of the machine hit every target alike. Each round's CPU time per
# request (all, and user space) is also written to OUT/rounds.tsv, for paired comparisons.
#
# Two reference targets: `direct` (oha straight to the backend: the limit of the load generator) and
# `tcp-relay` (haproxy in TCP mode on core 0 copying bytes to the backend's own mTLS server on
# core 1: the same connections, reads and writes per request as a proxy, without TLS, HTTP or any
# check; its CPU per request is the floor any proxy pays on this machine for moving the bytes).
#
# Access logs are off for the peers and `log.access: denied` for countersign; --access-log turns
# them on for all (nginx's combined format to a file, haproxy's httplog to a file via stdout,
# countersign's `log.access: all` JSON lines to a file), for the second table.
#
# --pgo PATH adds the targets pgo, pgo-hmac, pgo-rsa, pgo-ed25519 and pgo-report: the cs targets run
# with another countersign binary (a profile-guided build from bench/pgo.sh), in the same rounds.
#
# Usage: bench/compare.sh [--rate R] [--seconds S] [--repeat N] [--out NEW_OR_EMPTY_DIR] [--targets LIST] [--pgo PATH] [--skip-saturation] [--access-log]
# Needs: nginx, haproxy (apt-get install nginx haproxy), oha (cargo install oha --locked; the script
# installs it when missing), a release build of countersign (built here when missing).
set -euo pipefail

RATE=2000
SECS=10
OUT=$(mktemp -d /tmp/countersign-bench.XXXXXX)
TARGETS="direct tcp-relay nginx haproxy cs cs-hmac cs-rsa cs-ed25519 cs-report"
SATURATION=1
CONNS=64
REPEAT=3
ACCESS_LOG=0
PGO=""
TARGETS_GIVEN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --targets) TARGETS=$2; TARGETS_GIVEN=1; shift 2 ;;
    --pgo) PGO=$(realpath "$2"); shift 2 ;;
    --skip-saturation) SATURATION=0; shift ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --access-log) ACCESS_LOG=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -n "$PGO" ]; then
  [ -x "$PGO" ] || { echo "--pgo $PGO: not an executable" >&2; exit 2; }
  [ "$TARGETS_GIVEN" = 1 ] || TARGETS="$TARGETS pgo pgo-hmac pgo-rsa pgo-ed25519 pgo-report"
elif [[ " $TARGETS " == *" pgo"* ]]; then
  echo "the pgo targets need --pgo PATH" >&2; exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CS=${CS:-"$ROOT/target/release/countersign"}  # another build: CS=/path/to/countersign
[ -x "$CS" ] || (cd "$ROOT" && cargo build --release --quiet)
command -v oha >/dev/null || cargo install oha --locked --quiet
for t in nginx haproxy taskset python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  # Patterns that cannot match this script's own command line (its --targets may name nginx).
  pkill -f "^nginx: master process .*$OUT" 2>/dev/null || true
  pkill -f "^$HAPROXY -f $OUT" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$ACCESS_LOG" = 1 ]; then
  NGINX_ACCESS_LOG="access_log $OUT/nginx/access.log;"
  HAPROXY_GLOBAL_LOG=$'\n  log stdout format raw local0'
  HAPROXY_DEFAULTS_LOG=$'\n  log global\n  option httplog'
  CS_ACCESS_LOG=all
else
  NGINX_ACCESS_LOG="access_log off;"
  HAPROXY_GLOBAL_LOG=""
  HAPROXY_DEFAULTS_LOG=""
  CS_ACCESS_LOG=denied
fi

BACKEND_PORT=18080
BACKEND_TLS_PORT=18081
PROXY_PORT=18443
ADMIN_PORT=19901

# Keys, certificates and configs are made afresh for each run; an earlier run's are not reused.
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "--out $OUT is not empty: give a new or empty directory" >&2
  exit 2
fi
mkdir -p "$OUT"
echo "# output in $OUT"

# --- PKI: one CA, the server certificate, one client certificate (countersign's dev PKI) -------
"$CS" quickstart --dir "$OUT/pki" --no-start >/dev/null
cat "$OUT/pki/server.crt" "$OUT/pki/server.key" > "$OUT/pki/server.pem"

# --- keys for the signed targets ---------------------------------------------------------------
HMAC_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '=+/' | head -c 32)
"$CS" keygen --alg rsa-sha256 --id tyk-rsa --out "$OUT/keys-rsa" >/dev/null
"$CS" keygen --alg ed25519 --id edge-ed25519 --out "$OUT/keys-ed" >/dev/null
cat > "$OUT/keys.yaml" <<EOF
keys:
  - id: tyk-hmac
    algorithm: hmac-sha256
    secret: "$HMAC_SECRET"
  - id: tyk-rsa
    algorithm: rsa-sha256
    public_key: $OUT/keys-rsa/tyk-rsa.pub.pem
  - id: edge-ed25519
    algorithm: ed25519
    public_key: $OUT/keys-ed/edge-ed25519.pub.pem
EOF

# --- the backend: nginx return 200 on core 1 ---------------------------------------------------
mkdir -p "$OUT/backend"
cat > "$OUT/backend/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $OUT/backend/nginx.pid;
error_log $OUT/backend/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok\n"; } }
  # The same answer behind mTLS, for the tcp-relay target (a proxy that only moves bytes).
  server {
    listen 127.0.0.1:$BACKEND_TLS_PORT ssl;
    ssl_certificate $OUT/pki/server.crt;
    ssl_certificate_key $OUT/pki/server.key;
    ssl_client_certificate $OUT/pki/ca.crt;
    ssl_verify_client on;
    location / { return 200 "ok\n"; }
  }
}
EOF
taskset -c 1 "$NGINX" -c "$OUT/backend/nginx.conf" -p "$OUT/backend" &
PIDS+=($!)

wait_port() { for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }
wait_port $BACKEND_PORT
wait_port $BACKEND_TLS_PORT

# --- helpers -----------------------------------------------------------------------------------
cpu_ticks() { # utime and stime (clock ticks) summed over the given pids: "user sys"
  local u=0 s=0
  for p in "$@"; do
    [ -r /proc/$p/stat ] || continue
    set -- $(sed 's/^.*) //' /proc/$p/stat)
    u=$((u + ${12})); s=$((s + ${13}))
  done
  echo "$u $s"
}
ctx_switches() { # voluntary and involuntary context switches summed over every thread of the given pids
  local v=0 n=0 f
  for p in "$@"; do
    for f in /proc/$p/task/*/status; do
      [ -r "$f" ] || continue
      read -r a b < <(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2} END {print v+0, n+0}' "$f")
      v=$((v + a)); n=$((n + b))
    done
  done
  echo "$v $n"
}
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$1/status 2>/dev/null || echo 0; }
hwm_kib() { awk '/VmHWM/ {print $2}' /proc/$1/status 2>/dev/null || echo 0; }
TICKS=$(getconf CLK_TCK)

# nginx's master and its workers (the workers' command line does not name the config).
nginx_pids() {
  local m
  for _ in $(seq 1 100); do [ -s "$1" ] && break; sleep 0.05; done
  m=$(cat "$1")
  echo "$m $(pgrep -P "$m" | tr '\n' ' ')"
}

# oha against the proxy: $1 = extra args; prints JSON.
load() {
  local url=$1; shift
  taskset -c 1 oha --no-tui --output-format json -c $CONNS "$@" \
    --cacert "$OUT/pki/ca.crt" --cert "$OUT/pki/client.crt" --key "$OUT/pki/client.key" "$url" 2>/dev/null
}

# haproxy with config $1 on core 0, its output to $2; it is the target's one process.
start_haproxy() {
  taskset -c 0 "$HAPROXY" -f "$1" -db >"$2" 2>&1 &
  PIDS+=($!)
  TARGET_PIDS=($!)
  wait_port $PROXY_PORT
}

# Starts a target; sets TARGET_PIDS (the processes whose CPU counts), URL and HEADERS.
start_target() {
  local name=$1
  TARGET_PIDS=()
  HEADERS=()
  URL="https://localhost:$PROXY_PORT/bench"
  case "$name" in
    direct)
      URL="http://127.0.0.1:$BACKEND_PORT/bench"
      TARGET_PIDS=($(nginx_pids "$OUT/backend/nginx.pid"))
      return ;;
    tcp-relay)
      # The floor: haproxy in TCP mode copies bytes between oha and the backend's mTLS server
      # (which terminates TLS on core 1): the same connections, reads and writes per request as a
      # proxy, without TLS, HTTP or any check.
      mkdir -p "$OUT/relay"
      cat > "$OUT/relay/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$PROXY_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_TLS_PORT
EOF
      start_haproxy "$OUT/relay/haproxy.cfg" "$OUT/relay/haproxy.log" ;;
    nginx)
      mkdir -p "$OUT/nginx"
      cat > "$OUT/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 4096; }
http {
  $NGINX_ACCESS_LOG
  keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PROXY_PORT ssl;
    http2 on;
    ssl_certificate $OUT/pki/server.crt;
    ssl_certificate_key $OUT/pki/server.key;
    ssl_client_certificate $OUT/pki/ca.crt;
    ssl_verify_client on;
    ssl_session_cache shared:SSL:10m;
    allow 127.0.0.0/8;
    deny all;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Cert-Subject \$ssl_client_s_dn;
    }
  }
}
EOF
      # nginx 1.22 has no `http2 on;`: use listen ... ssl http2 instead.
      if ! "$NGINX" -t -c "$OUT/nginx/nginx.conf" >/dev/null 2>&1; then
        sed -i 's/    http2 on;//; s/ssl;$/ssl http2;/' "$OUT/nginx/nginx.conf"
      fi
      taskset -c 0 "$NGINX" -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" &
      PIDS+=($!)
      wait_port $PROXY_PORT
      sleep 0.2
      TARGET_PIDS=($(nginx_pids "$OUT/nginx/nginx.pid")) ;;
    haproxy)
      mkdir -p "$OUT/haproxy"
      cat > "$OUT/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1$HAPROXY_GLOBAL_LOG
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive$HAPROXY_DEFAULTS_LOG
frontend fe
  bind 127.0.0.1:$PROXY_PORT ssl crt $OUT/pki/server.pem ca-file $OUT/pki/ca.crt verify required alpn h2,http/1.1
  acl allowed src 127.0.0.0/8
  http-request deny unless allowed
  http-request set-header X-Client-Cert-Subject %{+Q}[ssl_c_s_dn]
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$BACKEND_PORT
EOF
      start_haproxy "$OUT/haproxy/haproxy.cfg" "$OUT/haproxy/access.log" ;;
    cs|cs-hmac|cs-rsa|cs-ed25519|cs-report|pgo|pgo-hmac|pgo-rsa|pgo-ed25519|pgo-report)
      local require="[mtls, ip]" mode=enforce bin=$CS
      if [[ $name == pgo* ]]; then
        bin=$PGO
        name=cs${name#pgo}
      fi
      case "$name" in
        cs-hmac|cs-rsa|cs-ed25519) require="[mtls, ip, signature]" ;;
        cs-report) require="[mtls, ip, signature]"; mode=report ;;
      esac
      cat > "$OUT/cs-$name.yaml" <<EOF
listen: 127.0.0.1:$PROXY_PORT
admin: 127.0.0.1:$ADMIN_PORT
upstream: http://127.0.0.1:$BACKEND_PORT
mode: $mode
log:
  access: $CS_ACCESS_LOG
tls:
  cert: $OUT/pki/server.crt
  key: $OUT/pki/server.key
  client_ca: $OUT/pki/ca.crt
ip_allow: [127.0.0.0/8]
keys: $OUT/keys.yaml
signature:
  clock_skew: 1h
  max_age: 1h
  required: []
routes:
  - path: /
    require: $require
EOF
      local t0=$(date +%s%N)
      taskset -c 0 "$bin" run -c "$OUT/cs-$name.yaml" --workers 1 --log-format json > "$OUT/$1.log" 2>&1 &
      PIDS+=($!)
      TARGET_PIDS=($!)
      for _ in $(seq 1 400); do
        curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.005
      done
      READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
      # One signed request, valid for the whole run (skew 1h, replay off): every request carries it.
      case "$name" in
        cs-hmac)
          mapfile -t HEADERS < <("$CS" sign --scheme tyk --alg hmac-sha256 --key-id tyk-hmac --secret "$HMAC_SECRET" \
            --method GET --url "https://localhost:$PROXY_PORT/bench") ;;
        cs-rsa)
          mapfile -t HEADERS < <("$CS" sign --scheme tyk --alg rsa-sha256 --key-id tyk-rsa --key-file "$OUT/keys-rsa/tyk-rsa.key.pem" \
            --method GET --url "https://localhost:$PROXY_PORT/bench") ;;
        cs-ed25519|cs-report)
          mapfile -t HEADERS < <("$CS" sign --scheme rfc9421 --alg ed25519 --key-id edge-ed25519 --key-file "$OUT/keys-ed/edge-ed25519.key.pem" \
            --method GET --url "https://localhost:$PROXY_PORT/bench" --components '@method @authority @path @query') ;;
      esac ;;
  esac
}

stop_target() {
  for p in "${TARGET_PIDS[@]}"; do
    [ "$1" = direct ] && continue
    kill "$p" 2>/dev/null || true
  done
  pkill -f "nginx.*$OUT/nginx/nginx.conf" 2>/dev/null || true
  sleep 0.3
}

header_args() { for h in "${HEADERS[@]:-}"; do [ -n "$h" ] && printf -- '-H\0%s\0' "$h"; done; }

declare -A CPU_US SYS_US VCSW NVCSW P50 P99 P999 SAT SATP99 NOKA RSS_IDLE RSS_LOAD READY OK CPU_RANGE
# Each metric collects one value per round (space-separated); the report shows the median.
append() { local -n arr=$1; arr[$2]="${arr[$2]:-} $3"; }
median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:] if x not in ('-','')]; m=round(statistics.median(v),2) if v else None; print('-' if m is None else (int(m) if m == int(m) else m))" $1; }
for round in $(seq 1 "$REPEAT"); do
echo "# round $round of $REPEAT" >&2
for t in $TARGETS; do
  READY_MS="-"
  start_target "$t"
  sleep 0.3
  main_pid=${TARGET_PIDS[0]}
  append RSS_IDLE "$t" "$(rss_kib "$main_pid")"
  mapfile -d '' -t HA < <(header_args)
  # Warm-up, then the fixed-rate run.
  load "$URL" -z 2s -q "$RATE" "${HA[@]}" >/dev/null || true
  read -r ubefore sbefore < <(cpu_ticks "${TARGET_PIDS[@]}")
  read -r vbefore nbefore < <(ctx_switches "${TARGET_PIDS[@]}")
  json=$(load "$URL" -z "${SECS}s" -q "$RATE" "${HA[@]}")
  read -r uafter safter < <(cpu_ticks "${TARGET_PIDS[@]}")
  read -r vafter nafter < <(ctx_switches "${TARGET_PIDS[@]}")
  echo "$json" > "$OUT/$t-rate.json"
  read -r ok p50 p99 p999 < <(python3 -c '
import json,sys
j=json.load(sys.stdin)
sd=j.get("statusCodeDistribution",{})
ok=sum(v for k,v in sd.items() if k.startswith("2"))
lp=j.get("latencyPercentiles",{})
print(ok, lp.get("p50",0)*1000, lp.get("p99",0)*1000, lp.get("p99.9",0)*1000)' <<< "$json")
  append OK "$t" "$ok"
  cpu=$(python3 -c "print(round(($uafter+$safter-$ubefore-$sbefore)/$TICKS*1e6/max($ok,1),2))")
  user=$(python3 -c "print(round(($uafter-$ubefore)/$TICKS*1e6/max($ok,1),2))")
  append CPU_US "$t" "$cpu"
  # Each round's figures too, for paired comparisons (targets of one round run minutes apart at most).
  printf '%s\t%s\t%s\t%s\n' "$round" "$t" "$cpu" "$user" >> "$OUT/rounds.tsv"
  append VCSW "$t" "$(python3 -c "print(round(($vafter-$vbefore)/max($ok,1),3))")"
  append NVCSW "$t" "$(python3 -c "print(round(($nafter-$nbefore)/max($ok,1),3))")"
  append SYS_US "$t" "$(python3 -c "print(round(($safter-$sbefore)/$TICKS*1e6/max($ok,1),2))")"
  append P50 "$t" "$(printf '%.2f' "$p50")"; append P99 "$t" "$(printf '%.2f' "$p99")"; append P999 "$t" "$(printf '%.2f' "$p999")"
  append RSS_LOAD "$t" "$(hwm_kib "$main_pid")"
  append READY "$t" "$READY_MS"
  if [ $SATURATION = 1 ]; then
    json=$(load "$URL" -z "${SECS}s" "${HA[@]}")
    echo "$json" > "$OUT/$t-sat.json"
    read -r rps p99 < <(python3 -c '
import json,sys
j=json.load(sys.stdin); s=j["summary"]; lp=j.get("latencyPercentiles",{})
print(round(s.get("requestsPerSec",0)), round(lp.get("p99",0)*1000,2))' <<< "$json")
    append SAT "$t" "$rps"; append SATP99 "$t" "$p99"
    json=$(load "$URL" -z "${SECS}s" --disable-keepalive "${HA[@]}")
    echo "$json" > "$OUT/$t-noka.json"
    append NOKA "$t" "$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"].get("requestsPerSec",0)))' <<< "$json")"
  fi
  stop_target "$t"
done
done

# Medians (and the CPU range) per target.
for t in $TARGETS; do
  CPU_RANGE[$t]=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{min(v):g}–{max(v):g}')" ${CPU_US[$t]})
  for m in CPU_US SYS_US VCSW NVCSW P50 P99 P999 SAT SATP99 NOKA RSS_IDLE RSS_LOAD READY OK; do
    declare -n ref=$m
    ref[$t]=$(median "${ref[$t]:-}")
    unset -n ref
  done
done

# --- report ------------------------------------------------------------------------------------
better_cpu=$(python3 -c "
v=[x for x in [${CPU_US[nginx]:-0}, ${CPU_US[haproxy]:-0}] if x>0]
print(min(v) if v else 0)")
echo
LOGS="access logs off for the peers, log.access: denied for countersign"
[ "$ACCESS_LOG" = 1 ] && LOGS="access logs on for all"
echo "## Fixed offered load: $RATE req/s, $LOGS, $CONNS keep-alive connections, ${SECS}s, median of $REPEAT rounds (proxy on core 0; backend and oha on core 1)"
echo
echo "| target | 2xx | CPU µs/req | (range) | of it kernel µs | better peer ÷ this | sleeps / preemptions per req | p50 ms | p99 ms | p99.9 ms | RSS idle MiB | RSS peak MiB | ready ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for t in $TARGETS; do
  ratio=$(python3 -c "c=${CPU_US[$t]}; b=$better_cpu; print(round(b/c,2) if c>0 and b>0 else '-')")
  printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${OK[$t]}" "${CPU_US[$t]}" "${CPU_RANGE[$t]}" "${SYS_US[$t]}" "$ratio" "${VCSW[$t]}" "${NVCSW[$t]}" "${P50[$t]}" "${P99[$t]}" "${P999[$t]}" \
    "$(python3 -c "print(round(${RSS_IDLE[$t]:-0}/1024,1))")" "$(python3 -c "print(round(${RSS_LOAD[$t]:-0}/1024,1))")" "${READY[$t]}"
done
if [ $SATURATION = 1 ]; then
  better_sat=$(python3 -c "print(max(${SAT[nginx]:-0}, ${SAT[haproxy]:-0}))")
  better_noka=$(python3 -c "print(max(${NOKA[nginx]:-0}, ${NOKA[haproxy]:-0}))")
  echo
  echo "## Saturation ($CONNS connections, ${SECS}s, median of $REPEAT rounds; oha shares core 1 with the backend, so these are relative figures)"
  echo
  echo "| target | req/s keep-alive | ÷ better peer | p99 ms | req/s new TLS handshakes | ÷ better peer |"
  echo "|---|---|---|---|---|---|"
  for t in $TARGETS; do
    printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "${SAT[$t]}" "$(python3 -c "print(round(${SAT[$t]}/max($better_sat,1),2))")" "${SATP99[$t]}" \
      "${NOKA[$t]}" "$(python3 -c "print(round(${NOKA[$t]}/max($better_noka,1),2))")"
  done
fi
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); nginx $("$NGINX" -v 2>&1 | cut -d/ -f2); $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3); $(oha --version)"
