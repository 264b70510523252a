#!/usr/bin/env python3
"""Generates the test keys: the signing keys of the fake OIDC provider
(contract-tests/fixtures/oidc) and a test CA with server and client
certificates (contract-tests/fixtures/tls). Test-only keys: never use them
anywhere else.

    python3 tools/gen_test_keys.py        # needs the `cryptography` package
    python3 tools/gen_test_keys.py tls    # only the TLS certificates
"""
import base64
import datetime
import ipaddress
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def tls():
    """A test CA, a server certificate for localhost/127.0.0.1 and a client
    certificate, for the mutual-TLS test of remote adapters."""
    out = os.path.join(os.path.dirname(OUT), "tls")
    os.makedirs(out, exist_ok=True)
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    later = now + datetime.timedelta(days=3650)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Lienthong test CA")).issuer_name(name("Lienthong test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn, serial, usage, sans, valid=(now, later)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(serial).not_valid_before(valid[0]).not_valid_after(valid[1])
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    server_key, server = leaf("localhost", 2, ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key, client = leaf("lienthong-gateway", 3, ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("lienthong-gateway")])
    # For the tests that TLS failures are named: a certificate long expired,
    # and one for another host name, both signed by the test CA.
    localhost = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    expired_key, expired = leaf("localhost", 4, ExtendedKeyUsageOID.SERVER_AUTH, localhost,
                                valid=(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
                                       datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)))
    other_key, other = leaf("portal.example", 5, ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("portal.example")])
    cert_pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()
    for fname, text in [("ca.pem", cert_pem(ca)), ("server.pem", cert_pem(server)), ("server.key", pem(server_key)),
                        ("client.pem", cert_pem(client)), ("client.key", pem(client_key)),
                        ("expired.pem", cert_pem(expired)), ("expired.key", pem(expired_key)),
                        ("other-name.pem", cert_pem(other)), ("other-name.key", pem(other_key))]:
        with open(os.path.join(out, fname), "w") as f:
            f.write(text)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["tls"]:
        main()
    tls()
