#!/bin/sh
# Makes the two Secrets the example needs, with a fresh demo CA, and writes them to
# secrets.generated.yaml beside this script (not committed), so `kubectl apply -f` on this
# directory creates them with the rest:
#
#   deploy/kubernetes/make-secrets.sh [NAMESPACE]     # default: default
#   kubectl apply -n NAMESPACE -f deploy/kubernetes/
#
# orders-countersign-tls   tls.crt, tls.key (for orders.NAMESPACE.svc), ca.crt (the client CA)
# orders-countersign-keys  keys.yaml and the HMAC secret it names
# The gateway's client certificate (CN tyk-gateway) and the HMAC secret are left in
# deploy/kubernetes/pki/ for configuring Tyk.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ns=${1:-default}
out=${OUT:-$here}
pki="$out/pki"

"$here/../compose/make-certs.sh" --out "$pki" --pki-only --force \
    --names "orders,orders.$ns,orders.$ns.svc,orders.$ns.svc.cluster.local"

b64() { openssl base64 -A < "$1"; }
keys_yaml=$(cat <<'KEYS'
keys:
  - id: tyk-edge-hmac
    algorithm: hmac-sha256
    secret_file: /etc/countersign/keys/tyk-edge-hmac.secret
KEYS
)
cat > "$out/secrets.generated.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: orders-countersign-tls
  labels:
    app.kubernetes.io/name: orders
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$pki/certs/countersign/tls.crt")
  tls.key: $(b64 "$pki/certs/countersign/tls.key")
  ca.crt: $(b64 "$pki/certs/ca/ca.crt")
---
apiVersion: v1
kind: Secret
metadata:
  name: orders-countersign-keys
  labels:
    app.kubernetes.io/name: orders
type: Opaque
data:
  keys.yaml: $(printf '%s\n' "$keys_yaml" | openssl base64 -A)
  tyk-edge-hmac.secret: $(b64 "$pki/keys/tyk-edge-hmac.secret")
YAML
echo "wrote $out/secrets.generated.yaml; the gateway's client certificate is in $pki/certs/tyk/"
