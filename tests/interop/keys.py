"""Makes the interop key pairs and HMAC secret (if missing) and the registry that names them."""
import os
import secrets
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out = sys.argv[1]
keys = os.path.join(out, "keys")


def write(name, data, private):
    path = os.path.join(keys, name)
    with open(path, "wb") as f:
        f.write(data)
    if private:
        os.chmod(path, 0o600)


def pair(name, key):
    if os.path.exists(os.path.join(keys, name + ".key.pem")):
        return
    write(name + ".key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), True)
    write(name + ".pub.pem", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), False)


pair("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048))
pair("rsa-pss", rsa.generate_private_key(public_exponent=65537, key_size=2048))
pair("p256", ec.generate_private_key(ec.SECP256R1()))
pair("p384", ec.generate_private_key(ec.SECP384R1()))
pair("ed25519", ed25519.Ed25519PrivateKey.generate())
if not os.path.exists(os.path.join(keys, "hmac.secret")):
    write("hmac.secret", secrets.token_urlsafe(32).encode(), True)

entries = [
    ("interop-hmac-sha1", "hmac-sha1", "secret_file: keys/hmac.secret\n    legacy_sha1: true"),
    ("interop-hmac-sha256", "hmac-sha256", "secret_file: keys/hmac.secret"),
    ("interop-hmac-sha512", "hmac-sha512", "secret_file: keys/hmac.secret"),
    ("interop-rsa-sha256", "rsa-sha256", "public_key: keys/rsa.pub.pem"),
    ("interop-rsa-sha512", "rsa-sha512", "public_key: keys/rsa.pub.pem"),
    ("interop-rsa-v1_5-sha256", "rsa-v1_5-sha256", "public_key: keys/rsa.pub.pem"),
    ("interop-rsa-pss-sha512", "rsa-pss-sha512", "public_key: keys/rsa-pss.pub.pem"),
    ("interop-ecdsa-p256-sha256", "ecdsa-p256-sha256", "public_key: keys/p256.pub.pem"),
    ("interop-ecdsa-p384-sha384", "ecdsa-p384-sha384", "public_key: keys/p384.pub.pem"),
    ("interop-ed25519", "ed25519", "public_key: keys/ed25519.pub.pem"),
]
with open(os.path.join(out, "keys.yaml"), "w") as f:
    f.write("# Written by tests/interop/generate.sh: the keys the interop fixtures are signed with.\n")
    f.write("keys:\n")
    for kid, alg, src in entries:
        f.write(f"  - id: {kid}\n    algorithm: {alg}\n    {src}\n")
