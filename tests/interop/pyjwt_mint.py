"""Mint JWT fixtures with PyJWT for countersign's interop test (run by pyjwt.sh).

usage: pyjwt_mint.py KEYS_DIR OUT_DIR

KEYS_DIR holds the committed test keys (PKCS#8 PEM); a missing key is generated once and written
there, so regenerating the fixtures keeps the same keys. OUT_DIR receives:
  jwks.json    the public keys as PyJWT's to_jwk() writes them, one JWK per algorithm (kid, alg, use)
  tokens.json  tokens minted by jwt.encode() at a fixed time, and tokens that must be refused
"""

import json
import os
import sys
from importlib.metadata import version

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.pyjwt.test/"
AUDIENCE = "orders-api"
IAT = 1_700_000_000
PINNED_NOW = IAT + 100

KEYS = {
    "rsa-2048.pem": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256.pem": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384.pem": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed25519.pem": ed25519.Ed25519PrivateKey.generate,
}

ALGS = [
    ("RS256", "rsa-2048.pem", RSAAlgorithm),
    ("RS384", "rsa-2048.pem", RSAAlgorithm),
    ("RS512", "rsa-2048.pem", RSAAlgorithm),
    ("PS256", "rsa-2048.pem", RSAAlgorithm),
    ("PS384", "rsa-2048.pem", RSAAlgorithm),
    ("PS512", "rsa-2048.pem", RSAAlgorithm),
    ("ES256", "p256.pem", ECAlgorithm),
    ("ES384", "p384.pem", ECAlgorithm),
    ("EdDSA", "ed25519.pem", OKPAlgorithm),
]


def load_or_make(keys_dir, name):
    path = os.path.join(keys_dir, name)
    if not os.path.exists(path):
        key = KEYS[name]()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with open(path, "wb") as f:
            f.write(pem)
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def claims(**extra):
    c = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "billing-api"],
        "sub": "pyjwt-client",
        "client_id": "tyk-gateway",
        "scope": "orders:read orders:write",
        "iat": IAT,
        "nbf": IAT,
        "exp": IAT + 3600,
    }
    c.update(extra)
    return c


def main():
    keys_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(keys_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    jwks, accept, refuse = [], [], []
    for alg, key_name, algorithm in ALGS:
        private = load_or_make(keys_dir, key_name)
        kid = "pyjwt-" + alg.lower()
        jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        jwks.append(jwk)
        token = jwt.encode(claims(), private, algorithm=alg, headers={"kid": kid})
        accept.append({"alg": alg, "kid": kid, "token": token})

    rsa_key = load_or_make(keys_dir, "rsa-2048.pem")
    refuse.append({
        "why": "expired an hour before the pinned time",
        "expect": "expired",
        "token": jwt.encode(claims(iat=IAT - 7200, nbf=IAT - 7200, exp=IAT - 3600), rsa_key,
                            algorithm="RS256",
                            headers={"kid": "pyjwt-rs256"}),
    })
    refuse.append({
        "why": "another audience",
        "expect": "aud does not contain",
        "token": jwt.encode(claims(aud="billing-api"), rsa_key, algorithm="RS256",
                            headers={"kid": "pyjwt-rs256"}),
    })
    refuse.append({
        "why": "another issuer",
        "expect": "iss is not the configured issuer",
        "token": jwt.encode(claims(iss="https://evil.test/"), rsa_key, algorithm="RS256",
                            headers={"kid": "pyjwt-rs256"}),
    })
    refuse.append({
        "why": "HS256 with a shared secret under an RSA key's kid",
        "expect": "alg \"HS256\" is not accepted",
        "token": jwt.encode(claims(), "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256",
                            headers={"kid": "pyjwt-rs256"}),
    })
    refuse.append({
        "why": "PS256 signature under a kid pinned to RS256",
        "expect": "does not allow the token's alg",
        "token": jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "pyjwt-rs256"}),
    })
    refuse.append({
        "why": "signed by a key that is not in the JWKS",
        "expect": "signature does not verify",
        "token": jwt.encode(claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048),
                            algorithm="RS256", headers={"kid": "pyjwt-rs256"}),
    })

    with open(os.path.join(out_dir, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump({
            "generator": "PyJWT %s, cryptography %s" % (version("PyJWT"), version("cryptography")),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "pinned_now": PINNED_NOW,
            "accept": accept,
            "refuse": refuse,
        }, f, indent=1)
        f.write("\n")
    print("wrote %d accepted and %d refused tokens to %s" % (len(accept), len(refuse), out_dir))


if __name__ == "__main__":
    main()
