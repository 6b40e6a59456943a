"""TLS for the inference server: on by default, plain HTTP only on loopback, and audited.

:func:`resolve_tls` turns the command-line choice into a :class:`TlsFiles` (or None for
``--unsafe-no-tls``) and refuses what is unsafe:

- ``--tls-cert F --tls-key F``: both files must exist; given together;
- ``--tls-self-signed``: an ECDSA P-256 certificate for ``localhost`` and ``127.0.0.1``
  (and ``::1``), valid 30 days, made with the ``cryptography`` x509 API into
  ``<home>/tls/`` (key file mode 0600) and reused while it has more than a day left;
- ``--unsafe-no-tls``: only when the host is a loopback address (``localhost``,
  ``127.0.0.0/8``, ``::1``); the caller logs and audits it;
- none of these: a :class:`~bastion.errors.ConfigError` (exit 2) naming the options.

Every response over TLS carries :data:`HSTS` (``Strict-Transport-Security``, one year,
subdomains included).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from bastion.errors import ConfigError
from bastion.workspace import localhost_certificate

__all__ = ["HSTS", "TlsFiles", "is_loopback", "resolve_tls", "self_signed"]

_VALID_DAYS = 30
HSTS = ("strict-transport-security", "max-age=31536000; includeSubDomains")
"""Sent on every response over TLS: browsers then refuse plain HTTP to this host for a year."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate chain and its private key, as PEM files."""

    cert: Path
    key: Path


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses; False for anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def self_signed(folder: Path) -> TlsFiles:
    """A development certificate for localhost in ``folder`` (made if missing or stale)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    cert_path, key_path = folder / "localhost.crt", folder / "localhost.key"
    now = dt.datetime.now(dt.UTC)
    if cert_path.is_file() and key_path.is_file():
        try:
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if old.not_valid_after_utc - now > dt.timedelta(days=1):
                return TlsFiles(cert_path, key_path)
        except ValueError:
            pass  # unreadable: make a new one
    pem_cert, pem_key = localhost_certificate(now, _VALID_DAYS)
    tmp_key = key_path.with_suffix(".key.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem_key)
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".crt.tmp")
    fd = os.open(tmp_cert, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem_cert)
    os.chmod(tmp_cert, 0o600)  # public, but every file in the home is 0600
    os.replace(tmp_cert, cert_path)
    return TlsFiles(cert_path, key_path)


def resolve_tls(
    home: Path,
    host: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    self_signed_cert: bool = False,
    unsafe_no_tls: bool = False,
) -> TlsFiles | None:
    """The TLS files to serve with, or None for plain HTTP (loopback only)."""
    chosen = sum([cert is not None or key is not None, self_signed_cert, unsafe_no_tls])
    if chosen == 0:
        raise ConfigError(
            "TLS: choose --tls-cert F --tls-key F, or --tls-self-signed (development), or"
            " --unsafe-no-tls (loopback only)"
        )
    if chosen > 1:
        raise ConfigError(
            "TLS: give only one of --tls-cert/--tls-key, --tls-self-signed, --unsafe-no-tls"
        )
    if unsafe_no_tls:
        if not is_loopback(host):
            raise ConfigError(
                f"--unsafe-no-tls: refused on host {host!r}; plain HTTP is allowed only on"
                " loopback (127.0.0.1, ::1, localhost)"
            )
        return None
    if self_signed_cert:
        return self_signed(home / "tls")
    if cert is None or key is None:
        raise ConfigError("TLS: --tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise ConfigError(f"{flag}: {path} is not a file")
    return TlsFiles(cert, key)
