#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after another, or N at a time
# with -j N. Limits on every run: 2 s per input (-timeout), 512 MB RSS and 512 MB per allocation.
#
#   fuzz/run.sh SECONDS [-j N] [TARGET...]
#
# Corpora grow in fuzz/corpus/<target>/ (not committed), seeded from fuzz/seeds/<target>/
# (committed, written by fuzz/seed.py); crashes land in fuzz/artifacts/<target>/ and logs in
# fuzz/logs/<target>.log. Exit status 1 when any target found a crash, hang or over-allocation.
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only flags it needs.
set -euo pipefail

usage() { echo "usage: fuzz/run.sh SECONDS [-j N] [TARGET...]" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
export RUSTC_BOOTSTRAP=1
target_dir=${CARGO_FUZZ_TARGET_DIR:-$here/target}

# One target, with the binaries built below (run in its own session so an interrupt stops it).
if [[ ${1:-} == --one ]]; then
    t=$2 seconds=$3
    mkdir -p fuzz/logs "fuzz/corpus/$t" "fuzz/artifacts/$t"
    seeds=()
    [[ -d fuzz/seeds/$t ]] && seeds=("fuzz/seeds/$t")
    dict=()
    [[ -f fuzz/dict/$t.dict ]] && dict=("-dict=fuzz/dict/$t.dict")
    triple=$(rustc -vV | sed -n 's/^host: //p')
    exec "$target_dir/$triple/release/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$seconds" -timeout=2 -rss_limit_mb=512 -malloc_limit_mb=512 \
        -print_final_stats=1 "${dict[@]}" "fuzz/corpus/$t" "${seeds[@]}" >"fuzz/logs/$t.log" 2>&1
fi

[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || usage
seconds=$1; shift
jobs=1
targets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -j) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; jobs=$2; shift 2 ;;
        -*) usage ;;
        *) targets+=("$1"); shift ;;
    esac
done

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 2; }
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(cargo fuzz list)

# Built once, so every target fuzzes the same code (edits during a run do not rebuild).
echo "building ${#targets[@]} targets (target dir $target_dir)"
cargo fuzz build --target-dir "$target_dir"
mkdir -p fuzz/logs

status=0
pids=()
names=()
wait_one() {
    local pid=${pids[0]} t=${names[0]}
    pids=("${pids[@]:1}"); names=("${names[@]:1}")
    if wait "$pid"; then
        printf '%-16s ok   %s\n' "$t" "$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$') execs, corpus $(find "fuzz/corpus/$t" -type f | wc -l)"
    else
        status=1
        printf '%-16s FAIL see fuzz/logs/%s.log and fuzz/artifacts/%s/\n' "$t" "$t" "$t"
        grep -m3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "fuzz/logs/$t.log" | sed 's/^/    /' || true
    fi
}
stop() {
    for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    exit 130
}
trap stop INT TERM
for t in "${targets[@]}"; do
    echo "fuzzing $t for ${seconds}s"
    setsid "$0" --one "$t" "$seconds" &
    pids+=("$!"); names+=("$t")
    while [[ ${#pids[@]} -ge $jobs ]]; do wait_one; done
done
while [[ ${#pids[@]} -gt 0 ]]; do wait_one; done
exit $status
