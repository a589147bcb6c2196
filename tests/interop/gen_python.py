"""Requests signed by PyPI httpsig (draft-cavage) and PyPI http-message-signatures (RFC 9421)."""
import base64
import datetime
import email.utils
import hashlib
import json
import os
import secrets
import sys
import time

import httpsig
import requests
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from importlib.metadata import version

out = sys.argv[1]
keys = os.path.join(out, "keys")
HOST = "api.example.test"
PATH = "/orders/7?expand=items&page=2"
BODY = '{"order": 7, "note": "na\u00efve \u2713"}'.encode()


def read(name):
    with open(os.path.join(keys, name), "rb") as f:
        return f.read()


SECRET = read("hmac.secret")
now = int(time.time())
date = email.utils.formatdate(now, usegmt=True)


def request_json(method, path, headers, body):
    return {
        "method": method,
        "target": path,
        "scheme": "https",
        "authority": HOST,
        "headers": [[k, v] for k, v in headers],
        "body": body.decode() if body else "",
    }


def httpsig_cases():
    cases = []
    for alg, key in [
        ("hmac-sha1", SECRET),
        ("hmac-sha256", SECRET),
        ("hmac-sha512", SECRET),
        ("rsa-sha256", read("rsa.key.pem")),
        ("rsa-sha512", read("rsa.key.pem")),
    ]:
        kid = "interop-" + alg
        for sign_header in ("authorization", "signature"):
            for with_body in (True, False):
                rid = "py-cavage-" + secrets.token_hex(6)
                headers = {"Host": HOST, "Date": date, "X-Request-Id": rid}
                covered = ["(request-target)", "host", "date", "x-request-id"]
                method = "GET"
                body = b""
                if with_body:
                    method = "POST"
                    body = BODY
                    headers["Content-Type"] = "application/json"
                    headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
                    covered += ["content-type", "digest"]
                hs = httpsig.HeaderSigner(kid, key, algorithm=alg, headers=covered, sign_header=sign_header)
                signed = hs.sign(headers, host=HOST, method=method, path=PATH)
                cases.append({
                    "name": f"{alg} in {sign_header}{' with body' if with_body else ''}",
                    "key_id": kid,
                    "algorithm": alg,
                    "covers": covered,
                    "request": request_json(method, PATH, list(signed.items()), body),
                })
    return cases


def hms_cases():
    algs = [
        ("rsa-pss-sha512", algorithms.RSA_PSS_SHA512, read("rsa-pss.key.pem")),
        ("rsa-v1_5-sha256", algorithms.RSA_V1_5_SHA256, read("rsa.key.pem")),
        ("hmac-sha256", algorithms.HMAC_SHA256, SECRET),
        ("ecdsa-p256-sha256", algorithms.ECDSA_P256_SHA256, read("p256.key.pem")),
        ("ecdsa-p384-sha384", algorithms.ECDSA_P384_SHA384, read("p384.key.pem")),
        ("ed25519", algorithms.ED25519, read("ed25519.key.pem")),
    ]
    variants = [
        ("method authority path query + digest", ("@method", "@authority", "@path", "@query", "x-request-id", "content-type"), True),
        ("target-uri + date", ("@method", "@target-uri", "date", "x-request-id"), False),
        ("request-target + query-param", ("@method", "@request-target", '"@query-param";name="expand"', "x-request-id"), False),
    ]
    cases = []
    created = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    for alg, cls, key in algs:
        kid = "interop-" + alg
        for i, (vname, covered, with_body) in enumerate(variants):
            rid = "py-9421-" + secrets.token_hex(6)
            method = "POST" if with_body else "GET"
            headers = {"Date": date, "X-Request-Id": rid}
            if with_body:
                headers["Content-Type"] = "application/json"
            req = requests.Request(method, "https://" + HOST + PATH, headers=headers,
                                   data=BODY if with_body else None).prepare()
            signer = HTTPMessageSigner(
                signature_algorithm=cls,
                key_resolver=MappingKeyResolver(public_keys={}, private_keys={kid: key}),
            )
            signer.sign(
                req,
                key_id=kid,
                created=created,
                nonce=secrets.token_urlsafe(12),
                label="sig1" if i != 1 else "pyhms",
                tag="interop",
                include_alg=(i != 2),
                covered_component_ids=covered,
                body=BODY if with_body else None,
            )
            sent = [("Host", HOST)] + [(k, v) for k, v in req.headers.items()]
            cases.append({
                "name": f"{alg}: {vname}",
                "key_id": kid,
                "algorithm": alg,
                "covers": list(covered) + (["content-digest"] if with_body else []),
                "request": request_json(method, PATH, sent, BODY if with_body else b""),
            })
    return cases


def write(name, generator, scheme, cases):
    with open(os.path.join(out, name), "w") as f:
        json.dump({
            "generator": generator,
            "scheme": scheme,
            "signed_at": now,
            "note": "written by tests/interop/generate.sh; verify at signed_at (the Date/created of every request)",
            "cases": cases,
        }, f, indent=1, ensure_ascii=False)
        f.write("\n")


write("httpsig-python.json", "PyPI httpsig " + version("httpsig"), "cavage", httpsig_cases())
write("http-message-signatures-python.json",
      "PyPI http-message-signatures " + version("http-message-signatures"), "rfc9421", hms_cases())
