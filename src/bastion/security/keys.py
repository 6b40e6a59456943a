"""Keys: a keyring of key-encryption keys (AES-256), signing keys (Ed25519) and pseudonym keys.

Data is never encrypted with a keyring key directly. Each artifact gets a fresh data key
(envelope encryption); the keyring only *wraps* and *unwraps* data keys, and signs. That is
the whole :class:`KeyProvider` interface, small enough for a PKCS#11 HSM to implement later
without key material ever leaving it.

:class:`LocalKeyring` keeps the keys in one JSON file, sealed under a passphrase (the file
format, its MAC and its lock are :mod:`bastion.security.keyring_file`): a wrong passphrase,
an edited state or a deleted key all give the same bland :class:`~bastion.errors.AuthError`.

A pseudonym key (32 random bytes) never leaves the keyring either: ``pseudonymize`` turns
each value into ``p_`` + 32 hex characters, the first 128 bits of HMAC-SHA256 under a key
derived for one *domain* with HKDF-SHA256 (info ``bastion pseudonym v1|<domain>``). Equal
values in one domain get equal tokens, across tables and runs, until the key is rotated.

Key life cycle::

    KEK:       active ──rotate──> decrypt-only ──(no blob uses it)──> retired (material erased)
    signing:   active ──rotate──> verify-only  (public key kept for ever)
    pseudonym: active ──rotate──> retired (material erased at once)

A pseudonym key is erased when it is replaced: an HMAC cannot be undone, so the old key's
only use would be to link new data to pseudonyms already handed out, which is what rotation
is meant to stop (and, should the keyring leak later, it could no longer confirm guesses of
low-entropy values such as phone numbers in old releases).

Every change is made under the keyring's lock, on the file as it is on disk now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.errors import ConfigError, IntegrityError, KeyringError, UnknownKeyError
from bastion.security import hazmat
from bastion.security.hazmat import AESGCM, Ed25519PublicKey, InvalidTag
from bastion.security.keyring_file import (
    DEFAULT_SCRYPT_LOG_N,
    MIN_PASSPHRASE_LENGTH,
    KeyKind,
    KeyringFile,
    KeyState,
)

__all__ = [
    "DEFAULT_SCRYPT_LOG_N",
    "MIN_PASSPHRASE_LENGTH",
    "KeyInfo",
    "KeyProvider",
    "LocalKeyring",
    "jwk",
    "verify_ed25519",
]

_WRAP_NONCE = 12
_DEK_LEN = 32
_PSEUDONYM_INFO = b"bastion pseudonym v1|"
_ROW_MAC_INFO = b"bastion row-mac v1"
_PSEUDONYM_HEX = 32  # 128 bits of the HMAC: collisions stay negligible past 10^15 values


class KeyProvider(Protocol):
    """What the store, signer and audit log need from a keyring."""

    def active_kek(self) -> str:
        """Id of the key-encryption key that wraps new data keys."""
        ...

    def wrap(self, kek_id: str, dek: bytes, aad: bytes) -> bytes:
        """Seal a data key under ``kek_id``, bound to ``aad``."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Open a data key; raise IntegrityError on any mismatch, UnknownKeyError if absent."""
        ...

    def active_signing_key(self) -> str:
        """Id of the Ed25519 key that signs new envelopes and checkpoints."""
        ...

    def sign(self, key_id: str, message: bytes) -> bytes:
        """Ed25519 signature over ``message``."""
        ...

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        """Public half of a signing key, for verification (kept after rotation)."""
        ...


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its material."""

    id: str
    kind: KeyKind
    state: KeyState
    created: str
    public_key: str | None = None  # hex of the raw Ed25519 public key


class LocalKeyring(KeyringFile):
    """A passphrase-protected keyring file. Implements :class:`KeyProvider`.

    Open an existing one with :meth:`open`, make a new one with :meth:`create`.
    """

    # -- listing and life cycle -----------------------------------------------------------

    def keys(self) -> list[KeyInfo]:
        """Every key ever made, oldest first, without material."""
        return [
            KeyInfo(e["id"], e["kind"], e["state"], e["created"], e.get("public_key"))
            for e in self._doc["keys"]
        ]

    def add_kek(self) -> str:
        """Make a new active KEK; the previous one becomes decrypt-only. Saved at once."""
        with self._changing():
            return self._add_key("kek", hazmat.new_aead_key())

    def add_signing_key(self) -> str:
        """Make a new active signing key; the previous one becomes verify-only."""
        with self._changing():
            return self._add_key("signing", hazmat.new_signing_key())

    def add_pseudonym_key(self) -> str:
        """Make a new active pseudonym key; the previous one is retired and its material erased.

        Pseudonyms made from now on differ from every earlier one (joins with data
        pseudonymized before the rotation stop working, on purpose).
        """
        with self._changing():
            return self._add_key("pseudonym", secrets.token_bytes(32))

    def retire_kek(self, key_id: str, *, in_use: set[str]) -> None:
        """Erase a decrypt-only KEK's material. Refused while anything still uses it."""
        with self._changing():
            entry = self._entry(key_id)
            if entry["kind"] != "kek":
                raise KeyringError(f"{key_id}: only key-encryption keys are retired")
            if entry["state"] == "active":
                raise KeyringError(f"{key_id}: the active KEK cannot be retired; rotate first")
            if key_id in in_use:
                raise KeyringError(f"{key_id}: still wraps data keys; re-wrap them first")
            entry["state"] = "retired"
            entry.pop("material", None)
            self._material.pop(key_id, None)

    # -- metadata row MACs ----------------------------------------------------------------

    def row_mac_key(self) -> bytes:
        """The key that authenticates metadata rows (see :mod:`bastion.security.rows`).

        HKDF-SHA256 of the keyring's MAC key (itself from the passphrase) with the info
        label ``bastion row-mac v1``: distinct from every other key, and unchanged by key
        rotation, so rows sealed before a rotation still verify after it.
        """
        return hazmat.hkdf_sha256(self._mac_key, info=_ROW_MAC_INFO)

    @property
    def rows_sealed(self) -> bool:
        """Whether this home's metadata rows carry MACs (False only for a pre-MAC home)."""
        return bool(self._doc.get("rows_sealed"))

    def mark_rows_sealed(self) -> None:
        """Record, under the keyring's own MAC, that every row now carries a MAC. Saved at once."""
        with self._changing():
            self._doc["rows_sealed"] = True

    @property
    def audit_anchored(self) -> bool:
        """Whether this home's audit log has a sealed anchor (False only for a home made
        before anchors: it adopts one at its first open, see :mod:`bastion.security.anchor`)."""
        return bool(self._doc.get("audit_anchored"))

    def mark_audit_anchored(self) -> None:
        """Record, under the keyring's MAC, that the home has an anchor: from now on a missing
        anchor file is an attack, not an old home. Saved at once."""
        with self._changing():
            self._doc["audit_anchored"] = True

    @property
    def access_sealed(self) -> bool:
        """Whether this home's access-control rows have a sealed state (False only for a home
        made before it: sealed at its first open, see :mod:`bastion.security.access_state`)."""
        return bool(self._doc.get("access_sealed"))

    def mark_access_sealed(self) -> None:
        """Record, under the keyring's MAC, that the access state is sealed. Saved at once."""
        with self._changing():
            self._doc["access_sealed"] = True

    # -- KeyProvider ----------------------------------------------------------------------

    def _active(self, kind: KeyKind) -> str:
        for entry in reversed(self._doc["keys"]):
            if entry["kind"] == kind and entry["state"] == "active":
                return str(entry["id"])
        raise KeyringError(f"the keyring has no active {kind} key")

    def active_kek(self) -> str:
        return self._active("kek")

    def active_signing_key(self) -> str:
        return self._active("signing")

    def active_pseudonym_key(self) -> str:
        """Id of the key that makes pseudonyms; made (and saved) once for an older keyring."""
        try:
            return self._active("pseudonym")
        except KeyringError:
            pass
        with self._changing():  # another process may have just made one: use it if so
            try:
                return self._active("pseudonym")
            except KeyringError:
                return self._add_key("pseudonym", secrets.token_bytes(32))

    def _kek(self, key_id: str) -> AESGCM:
        aead = self._kek_cache.get(key_id)
        if aead is None:
            material = self._material.get(key_id)
            if material is None or self._entry(key_id)["kind"] != "kek":
                raise UnknownKeyError(f"key {key_id!r} is not a usable KEK in this keyring")
            aead = self._kek_cache[key_id] = hazmat.aead(material)
        return aead

    def wrap(self, kek_id: str, dek: bytes, aad: bytes) -> bytes:
        if len(dek) != _DEK_LEN:
            raise ValueError("data keys are 32 bytes")
        nonce = os.urandom(_WRAP_NONCE)
        return nonce + self._kek(kek_id).encrypt(nonce, dek, aad)

    def unwrap(self, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        aead = self._kek(kek_id)
        try:
            dek = aead.decrypt(wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:], aad)
        except InvalidTag:
            raise IntegrityError("wrapped data key does not authenticate") from None
        if len(dek) != _DEK_LEN:
            raise IntegrityError("wrapped data key has the wrong length")
        return dek

    def sign(self, key_id: str, message: bytes) -> bytes:
        signer = self._signer_cache.get(key_id)
        if signer is None:
            material = self._material.get(key_id)
            entry = self._entry(key_id)
            if material is None or entry["kind"] != "signing":
                raise UnknownKeyError(f"key {key_id!r} is not a signing key in this keyring")
            if entry["state"] != "active":
                raise KeyringError(f"{key_id}: a {entry['state']} key no longer signs")
            signer = self._signer_cache[key_id] = hazmat.signer(material)
        return signer.sign(message)

    def pseudonymize(self, key_id: str, domain: str, values: Sequence[str]) -> list[str]:
        """One token per value: ``"p_"`` + 32 hex characters (128 bits of HMAC-SHA256).

        The HMAC key is derived from the pseudonym key's material for ``domain`` alone
        (HKDF-SHA256), so one domain's tokens say nothing about another's. Equal values in
        one domain get equal tokens; the material itself never leaves the keyring.
        """
        if not domain:
            raise ConfigError("pseudonym domain: expected a non-empty name, got ''")
        base = self._hmac_cache.get((key_id, domain))
        if base is None:
            material = self._material.get(key_id)
            if material is None or self._entry(key_id)["kind"] != "pseudonym":
                raise UnknownKeyError(f"key {key_id!r} is not a usable pseudonym key")
            derived = hazmat.hkdf_sha256(material, info=_PSEUDONYM_INFO + domain.encode("utf-8"))
            base = self._hmac_cache[(key_id, domain)] = hmac.new(derived, digestmod=hashlib.sha256)
        tokens: dict[str, str] = dict.fromkeys(values, "")  # each value is hashed once
        copy = base.copy
        for value in tokens:
            mac = copy()
            mac.update(value.encode("utf-8"))
            tokens[value] = "p_" + mac.hexdigest()[:_PSEUDONYM_HEX]
        return list(map(tokens.__getitem__, values))

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        entry = self._entry(key_id)
        if entry["kind"] != "signing":
            raise UnknownKeyError(f"key {key_id!r} is not a signing key")
        return hazmat.public_key(bytes.fromhex(entry["public_key"]))

    def public_keys_pem(self) -> dict[str, str]:
        """Every signing key's public half in PEM, for verifiers outside the home."""
        return {
            e["id"]: hazmat.public_pem(self.public_key(e["id"]))
            for e in self._doc["keys"]
            if e["kind"] == "signing"
        }

    def public_keys_jwk(self) -> dict[str, Any]:
        """Every signing key's public half as a JWK set (RFC 7517, Ed25519 per RFC 8037).

        Oldest first, the active key last; rotated keys stay, since what they signed
        still verifies. ``kid`` is the key id that DSSE envelopes name in ``keyid`` and
        checkpoints in ``key_id``.
        """
        return {"keys": [jwk(e["id"], self.public_key(e["id"])) for e in self._signing()]}

    def _signing(self) -> list[dict[str, Any]]:
        return [e for e in self._doc["keys"] if e["kind"] == "signing"]


def jwk(key_id: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    """One Ed25519 public key as a JWK (RFC 8037): ``kty`` OKP, ``crv`` Ed25519, ``x`` the
    raw 32 bytes in unpadded base64url."""
    raw = hazmat.public_raw(public_key)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id, "use": "sig", "alg": "EdDSA"}


def verify_ed25519(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid. Never returns False."""
    hazmat.verify(public_key, signature, message)
