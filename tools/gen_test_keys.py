#!/usr/bin/env python3
"""Generates the signing keys of the fake OIDC provider used in tests
(contract-tests/fixtures/oidc). Test-only keys: never use them anywhere else.

    python3 tools/gen_test_keys.py        # needs the `cryptography` package
"""
import base64
import json
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contract-tests", "fixtures", "oidc")


def b64(n, length=None):
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def main():
    os.makedirs(OUT, exist_ok=True)
    keys = []
    for i in (1, 2, 3):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = k.public_key().public_numbers()
        kid = f"rsa-{i}"
        open(os.path.join(OUT, f"{kid}.pem"), "w").write(pem(k))
        open(os.path.join(OUT, f"{kid}.pub.pem"), "w").write(k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
        keys.append({"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": b64(n.n), "e": b64(n.e)})
    k = ec.generate_private_key(ec.SECP256R1())
    n = k.public_key().public_numbers()
    open(os.path.join(OUT, "ec-1.pem"), "w").write(pem(k))
    keys.append({"kid": "ec-1", "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256",
                 "x": b64(n.x, 32), "y": b64(n.y, 32)})
    with open(os.path.join(OUT, "jwks.json"), "w") as f:
        json.dump({"keys": keys}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
