#!/usr/bin/env bash
# Regenerates tests/fixtures/interop/: keys, a key registry, and requests signed by libraries
# nobody here wrote:
#   PyPI httpsig                  (draft-cavage)   -> httpsig-python.json
#   PyPI http-message-signatures  (RFC 9421)       -> http-message-signatures-python.json
#   npm  http-signature           (Joyent, cavage) -> http-signature-node.json
#   npm  http-message-signatures  (RFC 9421)       -> http-message-signatures-node.json
# The libraries are installed into a throwaway venv and node_modules under $INTEROP_WORK
# (default /tmp/countersign-interop); nothing is installed into the repository.
# `cargo test` then verifies every fixture offline (src/signature/tests/interop.rs).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${INTEROP_OUT:-$repo/tests/fixtures/interop}"
work="${INTEROP_WORK:-/tmp/countersign-interop}"

PY_HTTPSIG=1.3.0
PY_HMS=3.0.0
NPM_HTTP_SIGNATURE=1.4.0
NPM_HMS=1.0.6

mkdir -p "$work" "$out/keys"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
fi
"$work/venv/bin/pip" install -q --disable-pip-version-check \
  "httpsig==$PY_HTTPSIG" "http-message-signatures==$PY_HMS" requests cryptography
mkdir -p "$work/node"
( cd "$work/node"
  [ -f package.json ] || npm init -y >/dev/null
  npm install --silent --no-audit --no-fund \
    "http-signature@$NPM_HTTP_SIGNATURE" "http-message-signatures@$NPM_HMS" )

# Keys (kept when present, so regenerated fixtures stay comparable) and the registry.
"$work/venv/bin/python" "$here/keys.py" "$out"

"$work/venv/bin/python" "$here/gen_python.py" "$out"
NODE_PATH="$work/node/node_modules" node "$here/gen_node.js" "$out"

echo "wrote:"
ls -1 "$out"/*.json "$out/keys.yaml"
