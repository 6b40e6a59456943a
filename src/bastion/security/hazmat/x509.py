"""HAZARDOUS MATERIALS: a self-signed TLS certificate for a development server on localhost.

The one recipe the server's ``--tls-self-signed`` needs, kept here so that only
``security.hazmat`` imports ``cryptography.hazmat``: an ECDSA P-256 key and a certificate
for ``localhost``, ``127.0.0.1`` and ``::1``, signed with SHA-256, valid from five minutes
before ``now`` for ``days`` days, a CA of path length 0.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["localhost_certificate"]


def localhost_certificate(now: dt.datetime, days: int) -> tuple[bytes, bytes]:
    """A new ``(certificate PEM, unencrypted PKCS#8 private key PEM)`` for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key
