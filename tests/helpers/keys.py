"""A fixed-key KeyProvider for the artifact test vectors, and nothing else.

It wraps data keys exactly as :class:`bastion.security.keys.LocalKeyring` does
(``nonce(12) ‖ AES-256-GCM(KEK, nonce, DEK, aad)``), but with KEKs given in hex, so that
checked-in vectors can be opened and regenerated. The nonce can be pinned for the generator;
it is never pinned outside tests/vectors.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import IntegrityError, UnknownKeyError

__all__ = ["FixedKeyring"]


class FixedKeyring:
    """KEKs by id, from hex; the first one is active. Signing is not supported."""

    def __init__(self, keks: dict[str, str], *, wrap_nonce: bytes | None = None) -> None:
        self._keks = {kek_id: AESGCM(bytes.fromhex(hex_key)) for kek_id, hex_key in keks.items()}
        self._active = next(iter(keks))
        self._wrap_nonce = wrap_nonce

    def active_kek(self) -> str:
        return self._active

    def _kek(self, kek_id: str) -> AESGCM:
        try:
            return self._keks[kek_id]
        except KeyError:
            raise UnknownKeyError(f"key {kek_id!r} is not in the keyring") from None

    def wrap(self, kek_id: str, dek: bytes, aad: bytes) -> bytes:
        nonce = self._wrap_nonce or os.urandom(12)
        return nonce + self._kek(kek_id).encrypt(nonce, dek, aad)

    def unwrap(self, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        aead = self._kek(kek_id)
        try:
            return aead.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag:
            raise IntegrityError("wrapped data key does not authenticate") from None

    def active_signing_key(self) -> str:
        raise NotImplementedError("FixedKeyring only wraps data keys")

    def sign(self, key_id: str, message: bytes) -> bytes:
        raise NotImplementedError("FixedKeyring only wraps data keys")

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        raise NotImplementedError("FixedKeyring only wraps data keys")
