#!/usr/bin/env bash
# Interop fixtures from code nobody here wrote: PyJWT (with pyca/cryptography) mints a token for
# every algorithm countersign accepts, plus tokens it must refuse, and writes the JWKS it publishes
# for the committed test keys. `cargo test` verifies the committed output (tests/e2e/jwt/pyjwt.rs);
# run this script again to regenerate it. Needs python3 with venv and network access to PyPI.
#
#   tests/interop/pyjwt.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$(mktemp -d /tmp/countersign-pyjwt.XXXXXX)"
trap 'rm -rf "$venv"' EXIT

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check PyJWT cryptography
"$venv/bin/python" "$here/pyjwt_mint.py" \
    "$root/tests/fixtures/jwt/keys" "${PYJWT_OUT:-$root/tests/fixtures/jwt/pyjwt}"
