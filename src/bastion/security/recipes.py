"""The crypto recipes other layers may call: every algorithm and parameter fixed here.

Only ``security`` imports :mod:`bastion.security.hazmat` (the raw primitives); the store
and the server use these instead:

- :func:`new_data_key` and :func:`data_cipher`: AES-256-GCM under a fresh per-artifact
  data key (the blob format, ``docs/formats/artifact.md``); a ciphertext that does not
  authenticate raises :class:`InvalidTag`;
- :func:`localhost_certificate`: the server's ``--tls-self-signed`` certificate.
"""

from __future__ import annotations

import datetime as dt

from bastion.security import hazmat
from bastion.security.hazmat import AESGCM, InvalidTag

__all__ = ["DataCipher", "InvalidTag", "data_cipher", "localhost_certificate", "new_data_key"]

DataCipher = AESGCM
"""AES-GCM: ``encrypt_into`` / ``decrypt_into`` (and ``encrypt`` / ``decrypt``)."""


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return hazmat.new_aead_key()


def data_cipher(dek: bytes) -> DataCipher:
    """AES-256-GCM under the data key ``dek``."""
    return hazmat.aead(dek)


def localhost_certificate(now: dt.datetime, days: int) -> tuple[bytes, bytes]:
    """A new self-signed ``(certificate PEM, private key PEM)`` for localhost, valid
    ``days`` days from ``now`` (see :mod:`bastion.security.hazmat.x509`)."""
    from bastion.security.hazmat.x509 import localhost_certificate as make

    return make(now, days)
