#!/bin/sh
# Makes the demo's certificates and secrets. Nothing it writes is committed (.gitignore).
#
#   ./make-certs.sh                       everything docker-compose.yml needs, here
#   ./make-certs.sh --out DIR --names orders,orders.default.svc --pki-only
#                                         just the PKI and the HMAC secret, in DIR (what
#                                         deploy/kubernetes/make-secrets.sh uses)
#   --force                               replace what exists
#
# Writes, under the output directory:
#   certs/ca/ca.crt                       the demo CA (its key: certs/ca/ca.key)
#   certs/countersign/tls.crt tls.key ca.crt   countersign's server certificate, SANs from --names
#   certs/tyk/client.crt client.key client.pem the gateway's client certificate (CN tyk-gateway);
#                                         client.pem is cert + key, the form Tyk's upstream
#                                         certificates take
#   certs/demo-client/client.crt client.key    a second client (CN demo-client) for curl
#   keys/tyk-edge-hmac.secret             the HMAC secret Tyk signs with (hex, no newline)
# and, without --pki-only: .env (TYK_GW_SECRET) and tyk/apps/countersign-demo.json (the API
# definition with the HMAC secret filled in).
#
# Needs the openssl command (OpenSSL 1.1+, 3.x or LibreSSL). Without it, and with Docker, it
# runs itself inside an alpine container.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=$here
names="backend,localhost"
pki_only=false
force=false
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --names) names=$2; shift 2 ;;
        --pki-only) pki_only=true; shift ;;
        --force) force=true; shift ;;
        *) echo "make-certs.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if ! command -v openssl >/dev/null 2>&1; then
    if command -v docker >/dev/null 2>&1; then
        echo "openssl not found; running inside alpine with docker" >&2
        mkdir -p "$out"
        out_abs=$(cd "$out" && pwd)
        exec docker run --rm -v "$here:/script:ro" -v "$out_abs:/out" alpine:3.20 sh -c \
            "apk add --no-cache openssl >/dev/null && sh /script/make-certs.sh --out /out --names '$names' $($pki_only && echo --pki-only) $($force && echo --force) && chown -R $(id -u):$(id -g) /out"
    fi
    echo "make-certs.sh: needs the openssl command (or docker)" >&2
    exit 1
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -e "$out/certs/ca/ca.crt" ] && ! $force; then
    echo "make-certs.sh: $out/certs already exists (use --force to replace it)" >&2
    exit 1
fi
mkdir -p "$out/certs/ca" "$out/certs/countersign" "$out/certs/tyk" "$out/certs/demo-client" "$out/keys"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

san=""
old_ifs=$IFS
IFS=,
for n in $names; do
    case $n in
        *[!0-9.]*) san="${san:+$san,}DNS:$n" ;;
        *) san="${san:+$san,}IP:$n" ;;
    esac
done
IFS=$old_ifs
san="$san,IP:127.0.0.1"

cat > "$tmp/ext.cnf" <<CNF
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
CNF

ca="$out/certs/ca"
openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 365 \
    -config "$tmp/ext.cnf" -extensions ca \
    -subj "/CN=countersign demo CA" -keyout "$ca/ca.key" -out "$ca/ca.crt" 2>/dev/null

# leaf NAME_DIR CN EXTENSIONS CERT KEY
leaf() {
    openssl req -new -nodes -newkey rsa:2048 -sha256 -config "$tmp/ext.cnf" \
        -subj "/CN=$2" -keyout "$1/$5" -out "$tmp/req.csr" 2>/dev/null
    openssl x509 -req -in "$tmp/req.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -days 365 -sha256 \
        -extfile "$tmp/ext.cnf" -extensions "$3" -out "$1/$4" 2>/dev/null
}
leaf "$out/certs/countersign" countersign server tls.crt tls.key
cp "$ca/ca.crt" "$out/certs/countersign/ca.crt"
leaf "$out/certs/tyk" tyk-gateway client client.crt client.key
cat "$out/certs/tyk/client.crt" "$out/certs/tyk/client.key" > "$out/certs/tyk/client.pem"
leaf "$out/certs/demo-client" demo-client client client.crt client.key

# The HMAC secret Tyk signs with: Tyk uses the string's bytes as the key.
hmac=$(openssl rand -hex 32)
printf '%s' "$hmac" > "$out/keys/tyk-edge-hmac.secret"

# The containers run as other users (countersign as 65532): the demo's keys must be readable
# by them. Never do this with real keys.
chmod 0755 "$out/certs" "$out/certs/ca" "$out/certs/countersign" "$out/certs/tyk" "$out/certs/demo-client" "$out/keys"
chmod 0644 "$out"/certs/*/* "$out/keys/tyk-edge-hmac.secret"
chmod 0600 "$ca/ca.key"

if ! $pki_only; then
    printf 'TYK_GW_SECRET=%s\n' "$(openssl rand -hex 16)" > "$out/.env"
    mkdir -p "$out/tyk/apps"
    sed "s/@HMAC_SECRET@/$hmac/" "$here/tyk/countersign-demo.json.in" > "$out/tyk/apps/countersign-demo.json"
fi
echo "made the demo PKI and secrets under $out"
