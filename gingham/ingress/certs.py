"""Certificates for trying HTTPS in a minute: a CA, server certificates signed by it, the default one.

ECDSA P-256 keys (the cheapest handshake HAProxy offers); PEM out, as a `kubernetes.io/tls`
Secret holds them. `gingham lab tls` writes a CA and a Secret manifest for some hosts; the
agent makes the self-signed default certificate that unknown SNI names get.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAYS = 825  # the longest a public server certificate may live; plenty for a lab


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=DAYS)))


def make_ca(name: str = "gingham lab CA") -> tuple[bytes, bytes]:
    """(certificate, key) of a CA, in PEM."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_builder(name, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_cert(hosts: list[str], ca: tuple[bytes, bytes] | None = None) -> tuple[bytes, bytes]:
    """(certificate, key) for `hosts` (DNS names, wildcards or addresses), signed by `ca`, or
    self-signed without one."""
    key = _key()
    if ca is None:
        issuer_key: ec.EllipticCurvePrivateKey = key
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    else:
        ca_cert = x509.load_pem_x509_certificate(ca[0])
        loaded = serialization.load_pem_private_key(ca[1], None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey), "the CA key must be an ECDSA key (make_ca's)"
        issuer_key, issuer = loaded, ca_cert.subject
    cert = (_builder(hosts[0], issuer, key.public_key())
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def secret_manifest(namespace: str, name: str, cert: bytes, key: bytes) -> str:
    """A v1 Secret of type kubernetes.io/tls holding the pair, as YAML (`data`, base64)."""
    import base64
    import json
    b64 = {k: base64.b64encode(v).decode() for k, v in (("tls.crt", cert), ("tls.key", key))}
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {json.dumps(name)}, namespace: {json.dumps(namespace)}}}\n"
            f"type: kubernetes.io/tls\ndata:\n  tls.crt: {b64['tls.crt']}\n  tls.key: {b64['tls.key']}\n")


def lab_ca(directory: str) -> tuple[bytes, bytes]:
    """The CA kept in `directory` (ca.crt, ca.key), made there the first time."""
    import os
    crt, key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    if not (os.path.exists(crt) and os.path.exists(key)):
        os.makedirs(directory, exist_ok=True)
        c, k = make_ca()
        with open(crt, "wb") as f:
            f.write(c)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(k)
    with open(crt, "rb") as f, open(key, "rb") as g:
        return f.read(), g.read()
