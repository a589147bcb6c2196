#!/usr/bin/env bash
# A profile-guided build of countersign: the release build, laid out and inlined for the paths a
# proxied request takes (docs/PERFORMANCE.md: fewer instructions and less CPU per request than
# `cargo build --release` alone).
#
#   bench/pgo.sh [--target TRIPLE] [--static] [--requests N]
#
# 1. builds countersign instrumented (-Cprofile-generate) into target/pgo/instrumented;
# 2. runs the training load against it (examples/pgo_train.rs: mTLS + IP, Tyk HMAC and RSA
#    signatures, RFC 9421 Ed25519 and ECDSA, a JWT, HTTP/2, new handshakes, a few refusals; every
#    answer checked), which writes the profile when the sidecar exits on SIGTERM;
# 3. merges the profile (llvm-profdata, from rustup's llvm-tools component, added when missing);
# 4. builds countersign again with -Cprofile-use into target/pgo/optimized, sends it a shorter run
#    of the same load (every answer checked again), and copies the binary to target/pgo/countersign.
# The profile is made fresh each time, by the same compiler that uses it, so it never goes stale.
# --target builds for another target the machine runs (x86_64-unknown-linux-musl, a static binary,
# needs that target's C compiler for ring: musl-tools, CC_x86_64_unknown_linux_musl=musl-gcc).
# --static links the C library in (-Ctarget-feature=+crt-static; for glibc targets), building for
# the host's triple when no --target is given: the Dockerfile's static glibc binary. RUSTFLAGS
# from the environment go to the two countersign builds, not to the training program.
# Takes two release builds' time plus about a minute; bounded by `timeout`.
set -euo pipefail

TARGET=""
STATIC=0
REQUESTS=40000
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET=$2; shift 2 ;;
    --static) STATIC=1; shift ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "usage: bench/pgo.sh [--target TRIPLE] [--static] [--requests N]" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/target/pgo"
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  rustup component add llvm-tools
fi
[ -x "$PROFDATA" ] || { echo "pgo: no llvm-profdata at $PROFDATA (rustup component add llvm-tools)" >&2; exit 2; }

# The C library linked in: with an explicit --target, so the flag reaches countersign's own
# artifacts and not the build scripts and proc-macros, which must stay dynamic.
FLAGS="${RUSTFLAGS:-}"
if [ "$STATIC" = 1 ]; then
  FLAGS="$FLAGS -Ctarget-feature=+crt-static"
  TARGET=${TARGET:-$HOST}
fi
TARGET_ARGS=()
BIN_DIR=release
if [ -n "$TARGET" ]; then
  TARGET_ARGS=(--target "$TARGET")
  BIN_DIR="$TARGET/release"
fi

rm -rf "$OUT/profiles" "$OUT/train" "$OUT/check" "$OUT/countersign.profdata"
mkdir -p "$OUT/profiles"

echo "== pgo: the instrumented build"
RUSTFLAGS="$FLAGS -Cprofile-generate=$OUT/profiles" \
  cargo build --release --locked --bin countersign "${TARGET_ARGS[@]}" --target-dir "$OUT/instrumented"

echo "== pgo: the training load"
env -u RUSTFLAGS cargo build --locked --example pgo_train
timeout -k 10 900 "$ROOT/target/debug/examples/pgo_train" \
  --sidecar "$OUT/instrumented/$BIN_DIR/countersign" --dir "$OUT/train" --requests "$REQUESTS"
ls "$OUT"/profiles/*.profraw >/dev/null 2>&1 || { echo "pgo: the instrumented sidecar wrote no profile" >&2; exit 1; }
"$PROFDATA" merge -o "$OUT/countersign.profdata" "$OUT/profiles"

echo "== pgo: the optimized build"
RUSTFLAGS="$FLAGS -Cprofile-use=$OUT/countersign.profdata" \
  cargo build --release --locked --bin countersign "${TARGET_ARGS[@]}" --target-dir "$OUT/optimized"

echo "== pgo: the optimized build answers the same load"
timeout -k 10 300 "$ROOT/target/debug/examples/pgo_train" \
  --sidecar "$OUT/optimized/$BIN_DIR/countersign" --dir "$OUT/check" --requests 4000
cp "$OUT/optimized/$BIN_DIR/countersign" "$OUT/countersign"
echo "pgo: $OUT/countersign"
