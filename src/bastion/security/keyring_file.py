"""The keyring file: one JSON document whose keys are sealed under a passphrase.

Each key's material is sealed with AES-256-GCM under a master key derived with scrypt from
a passphrase (HKDF-SHA256 splits it into a sealing key and a MAC key); the file as a whole
carries an HMAC, so a wrong passphrase, an edited state or a deleted key all give the same
bland :class:`~bastion.errors.AuthError`. Every change is an atomic replace of the file.

Every change is made under ``<keyring>.lock`` on the file as it is on disk now (re-read and
re-verified first), so two processes never overwrite each other's new keys.

:class:`KeyringFile` is that file and the material it opens: create, open, verify, add a
key (the previous one of its kind is replaced), save, reload. What the keys are used for
(wrap, sign, pseudonymize, rotate, retire) is :class:`bastion.security.keys.LocalKeyring`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from bastion._canonical import canonical_json
from bastion._fs import atomic_write, file_lock
from bastion.errors import AuthError, ConfigError, IntegrityError, UnknownKeyError
from bastion.security import hazmat
from bastion.security.hazmat import AESGCM, Ed25519PrivateKey, InvalidTag

__all__ = [
    "DEFAULT_SCRYPT_LOG_N",
    "MIN_PASSPHRASE_LENGTH",
    "MIN_SCRYPT_LOG_N",
    "KeyKind",
    "KeyState",
    "KeyringFile",
]

KeyKind = Literal["kek", "signing", "pseudonym"]
KeyState = Literal["active", "decrypt-only", "verify-only", "retired"]

DEFAULT_SCRYPT_LOG_N = 17  # 128 MiB, about 0.45 s here: OWASP's recommendation for scrypt
MIN_SCRYPT_LOG_N = 14
MIN_PASSPHRASE_LENGTH = 12
_FORMAT = "bastion-keyring"
_VERSION = 1
_PREFIX: dict[KeyKind, str] = {"kek": "kek", "signing": "sig", "pseudonym": "psk"}
_REPLACED: dict[KeyKind, KeyState] = {
    "kek": "decrypt-only",
    "signing": "verify-only",
    "pseudonym": "retired",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyringFile:
    """A passphrase-protected keyring file and the key material it opens (with the caches
    of what is made from that material, cleared whenever the file is re-read).

    Open an existing one with :meth:`open`, make a new one with :meth:`create`.
    """

    def __init__(self, path: Path, doc: dict[str, Any], seal_key: bytes, mac_key: bytes):
        self._path = path
        self._doc = doc
        self._seal = hazmat.aead(seal_key)
        self._mac_key = mac_key
        self._material = self._open_all(doc)
        self._kek_cache: dict[str, AESGCM] = {}
        self._signer_cache: dict[str, Ed25519PrivateKey] = {}
        self._hmac_cache: dict[tuple[str, str], hmac.HMAC] = {}

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, passphrase: str, *, scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N
    ) -> Self:
        """Write a new keyring holding one active KEK, signing key and pseudonym key."""
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise ConfigError(
                f"passphrase: expected at least {MIN_PASSPHRASE_LENGTH} characters,"
                f" got {len(passphrase)}"
            )
        if not MIN_SCRYPT_LOG_N <= scrypt_log_n <= 22:
            raise ConfigError(f"scrypt_log_n: expected {MIN_SCRYPT_LOG_N}..22, got {scrypt_log_n}")
        if path.exists():
            raise ConfigError(f"{path}: a keyring already exists here")
        kdf = {
            "name": "scrypt",
            "salt": _b64(os.urandom(16)),
            "log_n": scrypt_log_n,
            "r": 8,
            "p": 1,
        }
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "kdf": kdf,
            "keys": [],
            "rows_sealed": True,  # a new home's rows carry MACs from the start
            "audit_anchored": True,  # ... its audit log an anchor (security.anchor)
            "access_sealed": True,  # ... and its access rows a sealed state (access_state)
        }
        seal_key, mac_key = cls._derive(passphrase, kdf)
        ring = cls(path, doc, seal_key, mac_key)
        ring._add_key("kek", hazmat.new_aead_key())
        ring._add_key("signing", hazmat.new_signing_key())
        ring._add_key("pseudonym", secrets.token_bytes(32))
        ring._save()
        return ring

    @classmethod
    def open(cls, path: Path, passphrase: str) -> Self:
        """Open a keyring; a wrong passphrase or an edited file gives one bland AuthError."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no keyring here (run `bastion init`)") from None
        try:
            doc = json.loads(raw)
            if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
                raise ValueError("format")
            seal_key, mac_key = cls._derive(passphrase, doc["kdf"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IntegrityError(f"{path}: not a Bastion keyring of version {_VERSION}") from None
        return cls(path, cls._verified(path, doc, mac_key), seal_key, mac_key)

    @staticmethod
    def _verified(path: Path, doc: dict[str, Any], mac_key: bytes) -> dict[str, Any]:
        """``doc`` without its MAC once the MAC checks; one bland AuthError otherwise."""
        try:
            if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
                raise ValueError("format")
            mac = _unb64(doc.pop("mac"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IntegrityError(f"{path}: not a Bastion keyring of version {_VERSION}") from None
        expected = hmac.new(
            mac_key, canonical_json(doc, ascii=True, allow_nan=True), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(mac, expected):
            raise AuthError("wrong passphrase or damaged keyring")
        return doc

    @staticmethod
    def _derive(passphrase: str, kdf: dict[str, Any]) -> tuple[bytes, bytes]:
        if kdf.get("name") != "scrypt" or not MIN_SCRYPT_LOG_N <= int(kdf["log_n"]) <= 22:
            raise ValueError("kdf")
        master = hazmat.scrypt(
            passphrase.encode("utf-8"),
            salt=_unb64(kdf["salt"]),
            n=2 ** int(kdf["log_n"]),
            r=int(kdf["r"]),
            p=int(kdf["p"]),
        )
        okm = hazmat.hkdf_sha256(master, info=b"bastion keyring v1", length=64)
        return okm[:32], okm[32:]

    # -- persistence ----------------------------------------------------------------------

    def _aad(self, entry: dict[str, Any]) -> bytes:
        return f"{_FORMAT}/v{_VERSION}|{entry['id']}|{entry['kind']}".encode()

    def _open_material(self, entry: dict[str, Any]) -> bytes:
        sealed = _unb64(entry["material"])
        try:
            return self._seal.decrypt(sealed[:12], sealed[12:], self._aad(entry))
        except InvalidTag:
            raise AuthError("wrong passphrase or damaged keyring") from None

    def _open_all(self, doc: dict[str, Any]) -> dict[str, bytes]:
        return {e["id"]: self._open_material(e) for e in doc["keys"] if e["state"] != "retired"}

    def _add_key(self, kind: KeyKind, material: bytes) -> str:
        key_id = f"{_PREFIX[kind]}-{secrets.token_hex(8)}"
        entry: dict[str, Any] = {"id": key_id, "kind": kind, "state": "active", "created": _now()}
        nonce = os.urandom(12)
        entry["material"] = _b64(nonce + self._seal.encrypt(nonce, material, self._aad(entry)))
        if kind == "signing":
            entry["public_key"] = hazmat.public_key_of(material).hex()
        for other in self._doc["keys"]:
            if other["kind"] == kind and other["state"] == "active":
                other["state"] = _REPLACED[kind]
                if other["state"] == "retired":
                    other.pop("material", None)
                    self._material.pop(other["id"], None)
        self._doc["keys"].append(entry)
        self._material[key_id] = material
        return key_id

    def _save(self) -> None:
        doc = {k: v for k, v in self._doc.items() if k != "mac"}
        mac = hmac.new(
            self._mac_key, canonical_json(doc, ascii=True, allow_nan=True), hashlib.sha256
        ).digest()
        out = dict(doc, mac=_b64(mac))
        atomic_write(self._path, json.dumps(out, indent=1, sort_keys=True).encode() + b"\n")

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the keyring's lock, re-read the file as it is now, and save after the change.

        Another process may have rotated since this one opened the file; changing the stale
        copy would overwrite (and so lose) the keys it added.
        """
        with file_lock(self._path.with_name(self._path.name + ".lock")):
            self.reload()
            yield
            self._save()

    def reload(self) -> None:
        """Re-read the file (another process may have changed it); its MAC is checked first."""
        try:
            raw = json.loads(self._path.read_bytes())
        except (OSError, ValueError):
            raise IntegrityError(
                f"{self._path}: not a Bastion keyring of version {_VERSION}"
            ) from None
        doc = self._verified(self._path, raw, self._mac_key)
        material = self._open_all(doc)
        self._doc, self._material = doc, material
        self._kek_cache.clear()
        self._signer_cache.clear()
        self._hmac_cache.clear()

    def _entry(self, key_id: str) -> dict[str, Any]:
        for entry in self._doc["keys"]:
            if entry["id"] == key_id:
                found: dict[str, Any] = entry
                return found
        raise UnknownKeyError(f"key {key_id!r} is not in the keyring")
