#!/usr/bin/env python3
"""Writes the committed seed corpora, fuzz/seeds/<target>/, from the published test vectors
(tests/fixtures/vectors, a copy of the shared vectors), the interop fixtures
(tests/fixtures/interop), the example configs in deploy/, and inputs of the unit tests.

Standard library only. Run from anywhere: `python3 fuzz/seed.py`. The directories are replaced.
"""

import base64
import hashlib
import hmac
import json
import shutil
import struct
import urllib.parse
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
FIXTURES = ROOT / "tests" / "fixtures"
SEEDS = FUZZ / "seeds"

seeds: dict[str, dict[str, bytes]] = {}


def add(target: str, name: str, data) -> None:
    if isinstance(data, str):
        data = data.encode()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    seeds.setdefault(target, {})[safe] = data


def raw_request(method: str, target: str, headers, body: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n").encode() + body.encode()


def target_of(m: dict) -> str:
    if "request_target" in m:
        return m["request_target"]
    after = m["target_uri"].split("://", 1)[1]
    return after[after.index("/"):]


# --- draft-cavage-10 Appendix C -------------------------------------------------------------
cav = json.loads((FIXTURES / "vectors/cavage10/vectors.json").read_text())
creq = cav["request"]
for c in cav["cases"]:
    add("cavage", c["id"] + "-authorization", c["authorization_header"])
    add("cavage", c["id"] + "-signature", c["signature_header"])
    for header, value in [("Authorization", c["authorization_header"]),
                          ("Signature", c["signature_header"])]:
        req = raw_request(creq["method"], creq["request_target"],
                          creq["headers"] + [[header, value]], creq["body"])
        add("verify", f"cavage-{c['id']}-{header}", req)

# --- RFC 9421 ----------------------------------------------------------------------------------
rfc = json.loads((FIXTURES / "vectors/rfc9421/vectors.json").read_text())
for c in rfc["cases"]:
    m = rfc["messages"][c["message"]]
    if "method" not in m:
        continue  # a response (@status)
    headers = m["headers"] + [["Signature-Input", c["signature_input_header"]],
                              ["Signature", c["signature_header"]]]
    req = raw_request(m["method"], target_of(m), headers, m.get("body", ""))
    add("rfc9421", c["id"], req)
    add("verify", "rfc9421-" + c["id"], req)
for t in rfc["transform_variants"]:
    req = raw_request(t["method"], target_of(t), t["headers"])
    add("rfc9421", "transform-" + t["name"], req)
    add("verify", "transform-" + t["name"], req)

# --- interop fixtures (independent signers) ----------------------------------------------------
for f in sorted((FIXTURES / "interop").glob("*.json")):
    doc = json.loads(f.read_text())
    for i, c in enumerate(doc["cases"]):
        r = c["request"]
        req = raw_request(r["method"], r["target"], r["headers"], r.get("body") or "")
        add("verify", f"{f.stem}-{i}", req)
        if doc["scheme"] == "rfc9421":
            add("rfc9421", f"{f.stem}-{i}", req)
        else:
            for k, v in r["headers"]:
                if k.lower() in ("authorization", "signature"):
                    add("cavage", f"{f.stem}-{i}", v)

# --- Tyk's format (signed here with the verify target's `tyk-hmac` key) --------------------
TYK_SECRET = b"tyk-shared-secret"
tyk_date = "Fri, 04 Dec 2026 20:47:54 UTC"
body = '{"order": 7}'
digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
signing = "\n".join([
    "(request-target): post /orders/7",
    f"x-aux-date: {tyk_date}",
    f"digest: {digest}",
    "x-request-id: tyk-1",
])
mac = base64.b64encode(hmac.new(TYK_SECRET, signing.encode(), hashlib.sha256).digest()).decode()
params = ('keyId="tyk-hmac",algorithm="hmac-sha256",headers="(request-target) date digest '
          f'x-request-id",signature="{urllib.parse.quote(mac, safe="")}"')
add("cavage", "tyk-escaped", "Signature " + params)
add("verify", "tyk-hmac-aux-date", raw_request("POST", "/api/orders/7", [
    ("Host", "api.example.test"), ("Date", tyk_date), ("X-Aux-Date", tyk_date),
    ("Digest", digest), ("X-Request-Id", "tyk-1"), ("Content-Length", str(len(body))),
    ("Authorization", "Signature " + params)], body))

# The cavage unit tests' inputs.
for i, s in enumerate([
    'Signature keyId="tyk-gw-1",algorithm="hmac-sha256",headers="(request-target) x-request-id '
    'accept date",signature="ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D"',
    ' KeyID = "a=b==" ,  ALGORITHM="hmac-sha256" , Headers = "Date X-Request-Id", '
    'SIGNATURE="abc=", created=123, expires="456", ext="ignored"',
    'keyId="k",signature="x"',
    r'keyId="a\"b\\c",signature="x"',
    'keyId="k",headers="(request-target) (created) (expires) host",created=1402170695,'
    'expires=1402170699,signature="YWJj"',
]):
    add("cavage", f"unit-{i}", s)

# --- PROXY protocol ----------------------------------------------------------------------------
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"
for name, line in [
    ("v1-tcp4", b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"),
    ("v1-tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n"),
    ("v1-unknown", b"PROXY UNKNOWN\r\n"),
    ("v1-unknown-addrs", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"),
]:
    add("proxy_protocol", name, line + TLS_HELLO)
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"") -> bytes:
    payload = addresses + tlvs
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(payload)) + payload


v4 = bytes([203, 0, 113, 7, 10, 0, 0, 1]) + struct.pack(">HH", 51000, 443)
v6 = (bytes.fromhex("20010db8000000000000000000000007")
      + bytes.fromhex("20010db8000000000000000000000001") + struct.pack(">HH", 40000, 443))
tlv_authority = b"\x02" + struct.pack(">H", 11) + b"example.com"
tlv_ssl = b"\x20" + struct.pack(">H", 5) + b"\x01\x00\x00\x00\x00"
add("proxy_protocol", "v2-tcp4", v2(1, 0x11, v4) + TLS_HELLO)
add("proxy_protocol", "v2-tcp6", v2(1, 0x21, v6) + TLS_HELLO)
add("proxy_protocol", "v2-tcp4-tlvs", v2(1, 0x11, v4, tlv_authority + tlv_ssl) + TLS_HELLO)
add("proxy_protocol", "v2-udp4", v2(1, 0x12, v4))
add("proxy_protocol", "v2-unix", v2(1, 0x31, b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")))
add("proxy_protocol", "v2-local", v2(0, 0x00, b"") + TLS_HELLO)
add("proxy_protocol", "tls-without-header", TLS_HELLO)

# --- dates ---------------------------------------------------------------------------------------
for i, d in enumerate([
    "Sun, 05 Jan 2014 21:31:40 GMT", "Tue, 20 Apr 2021 02:07:55 GMT",
    "Thu, 04 Dec 2025 10:00:00 UTC", "Thu, 04 Dec 2025 11:00:00 +0100",
    "Thu, 04 Dec 2025 06:30:00 -03:30", "Thu, 04 Dec 2025 14:00:00 +04",
    "Thu, 04 Dec 2025 11:00:00 CET", "Thu, 04 Dec 2025 02:00:00 PST",
    "Wed, 31 Dec 2025 23:59:60 GMT", "Thu, 4 Dec 2025 10:00:00 GMT", "Sat, 01 Jan 2000 00:00:00 Z",
    # the ends of the range
    "Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 +0100",
    "Fri, 31 Dec 9999 23:59:59 GMT", "Fri, 31 Dec 9999 23:59:59 -1400",
]):
    add("date", f"date-{i}", d)

# --- the path normalizer (the unit tests' inputs) ----------------------------------------------
for i, p in enumerate([
    "/", "/a/b", "/a.b/c", "/a/.well-known", "/v1/orders/42", "/public/../admin",
    "/public/%2e%2e/admin", "/public/%2E%2E%2Fadmin", "/public/..%2Fadmin", "//admin",
    "/admin;jsessionid=1/x", "/admin;x", "/a/./b/", "/..", "/../../etc", "/pub\\..\\admin",
    "/%61dmin", "/a/b/..", "/a/%252e%252e/b", "/%2F%2Fadmin", "/a/%3Fq=1%23f",
]):
    add("path", f"path-{i}", p)

# --- configs -----------------------------------------------------------------------------------
add("config", "compose", (ROOT / "deploy/compose/countersign.yaml").read_text())
add("config", "contract", """listen: 0.0.0.0:8443
upstream: http://127.0.0.1:8080
admin: 127.0.0.1:9901
mode: enforce
log:
  access: all
tls:
  cert: keys/rsa.pub.pem
  key: keys/rsa.key.pem
  client_ca: keys/rsa.pub.pem
  client_auth: required
  crl: [client-ca.crl]
  allow_clients:
    - subject_cn: tyk-edge
    - san_dns: gw.example.com
    - san_uri: spiffe://example.org/ns/edge/sa/tyk
    - sha256: 5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b5f2b
client_ip:
  from: x_forwarded_for
  trusted_proxies: [10.0.0.0/8]
  client_cert_header: Client-Cert
ip_allow: [203.0.113.0/24, "2001:db8::/32"]
keys: keys.yaml
signature:
  schemes: [cavage, rfc9421]
  required: ["(request-target)", date]
  clock_skew: 300s
  digest: optional
  replay: memory
  cavage_header: X-Tyk-Signature
  tyk_compat: true
  strip_path_prefix: /api
  min_rsa_bits: 2048
jwt:
  jwks_url: https://auth.example.com/.well-known/jwks.json
  issuer: https://auth.example.com/
  audience: orders-api
routes:
  - path: /healthz
    require: []
  - path: /admin
    methods: [POST, DELETE]
    require: [mtls, jwt]
    scopes: [orders:admin]
  - path: /
    require: [mtls, ip, signature]
""")
add("config", "plain", """listen: 127.0.0.1:8080
upstream: http://127.0.0.1:9000
keys: keys.yaml
signature:
  replay: redis://127.0.0.1:6379/0
routes:
  - path: /
    require: [signature]
""")

# --- key registries ----------------------------------------------------------------------------
interop_keys = (FIXTURES / "interop/keys.yaml").read_text()
add("registry", "interop", interop_keys)
add("registry", "compose", (ROOT / "deploy/compose/keys/keys.yaml").read_text())
p256_pem = (FIXTURES / "interop/keys/p256.pub.pem").read_text()
jwks = json.loads((FIXTURES / "vectors/rfc9421/keys/jwks.json").read_text())
remote = {"keys": [
    {"id": "inline-hmac", "algorithm": "hmac-sha256",
     "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
    {"id": "inline-p256", "algorithm": "ecdsa-p256-sha256", "public_key": p256_pem,
     "ip_allow": ["203.0.113.0/24"], "not_before": "2026-01-01T00:00:00Z",
     "not_after": "2027-06-30T00:00:00Z", "required": ["(request-target)", "date", "digest"]},
    {"id": "legacy-batch-job",
     "api_key_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
     "ip_allow": ["10.1.2.0/24"]},
]}
for k in jwks.get("keys", [])[:3]:
    alg = {"OKP": "ed25519", "EC": "ecdsa-p256-sha256", "oct": "hmac-sha256"}.get(k.get("kty"))
    if alg:
        remote["keys"].append({"id": "jwk-" + k.get("kid", k["kty"]), "algorithm": alg, "jwk": k})
add("registry", "remote-json", json.dumps(remote, indent=1))

# --- AdmissionReviews --------------------------------------------------------------------------


def pod(annotations: dict, probes: bool = True) -> dict:
    container = {
        "name": "orders", "image": "example/orders:1.4.2",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    if probes:
        container["livenessProbe"] = {"httpGet": {"path": "/livez", "port": "http",
                                                  "scheme": "HTTP"}, "periodSeconds": 10}
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8080,
                                                   "httpHeaders": [{"name": "X-Probe",
                                                                    "value": "1"}]}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "orders-5f7c9d8b6-", "namespace": "shop",
                     "labels": {"app": "orders"}, "annotations": annotations},
        "spec": {"containers": [container], "restartPolicy": "Always"},
    }


def review(obj, operation: str = "CREATE", resource: str = "pods") -> bytes:
    return json.dumps({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "3c9f6a8e-52b1-4d7e-9f0a-6b8c2d1e4f70",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": "shop", "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj, "oldObject": None, "dryRun": False,
        },
    }, separators=(",", ":")).encode()


add("admission", "opted-in", review(pod({"countersign.dev/inject": "true"})))
add("admission", "all-annotations", review(pod({
    "countersign.dev/inject": "true", "countersign.dev/native-sidecar": "false",
    "countersign.dev/config": "orders-countersign", "countersign.dev/tls-secret": "orders-tls",
    "countersign.dev/keys-secret": "orders-keys", "countersign.dev/upstream-port": "8080",
    "countersign.dev/rewrite-probes": "true"})))
add("admission", "no-probes", review(pod({"countersign.dev/inject": "true"}, probes=False)))
add("admission", "not-opted-in", review(pod({})))
add("admission", "update", review(pod({"countersign.dev/inject": "true"}), operation="UPDATE"))
add("admission", "bad-annotation", review(pod({"countersign.dev/inject": "maybe"})))
add("admission", "not-a-review", b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}')

# --- write -------------------------------------------------------------------------------------
for target, files in seeds.items():
    d = SEEDS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    print(f"{target}: {len(files)} seeds")
