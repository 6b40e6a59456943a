"""HAZARDOUS MATERIALS: the raw cryptographic primitives, as a few small recipes.

    !!! This is the one place in Bastion that imports ``cryptography.hazmat``.
    !!! Pipeline stages, defenses and shells never import it (tests/architecture
    !!! enforces both). Use the safe layers above instead: ``security.keys`` (wrap,
    !!! unwrap, sign), ``store`` (encrypted blobs), ``security.signing`` (DSSE).

Each recipe fixes its algorithm and parameters, so no caller chooses them:

- AEAD: AES-256-GCM (:func:`new_aead_key`, :func:`aead`; :class:`InvalidTag` on a bad tag);
- signatures: Ed25519 over raw 32-byte keys (:func:`new_signing_key`, :func:`signer`,
  :func:`public_key_of`, :func:`public_key`, :func:`verify`, :func:`public_pem`,
  :func:`public_raw`);
- key derivation: HKDF-SHA256 without salt (:func:`hkdf_sha256`) and scrypt
  (:func:`scrypt`);
- TLS: a self-signed localhost certificate (:mod:`bastion.security.hazmat.x509`).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bastion.errors import SignatureError

__all__ = [
    "AESGCM",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "InvalidTag",
    "aead",
    "hkdf_sha256",
    "new_aead_key",
    "new_signing_key",
    "public_key",
    "public_key_of",
    "public_pem",
    "public_raw",
    "scrypt",
    "signer",
    "verify",
]

# -- AEAD: AES-256-GCM ------------------------------------------------------------------------


def new_aead_key() -> bytes:
    """A fresh random 256-bit AES-GCM key."""
    return AESGCM.generate_key(256)


def aead(key: bytes) -> AESGCM:
    """AES-GCM under ``key``: ``encrypt(nonce, data, aad)`` and ``decrypt(nonce, ct, aad)``,
    which raises :class:`InvalidTag` when the ciphertext does not authenticate."""
    return AESGCM(key)


# -- signatures: Ed25519 ----------------------------------------------------------------------


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key, as its raw 32 bytes."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def signer(private_raw: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key of raw 32 bytes (``.sign(message)``)."""
    return Ed25519PrivateKey.from_private_bytes(private_raw)


def public_key_of(private_raw: bytes) -> bytes:
    """The raw 32-byte public half of a raw Ed25519 private key."""
    return signer(private_raw).public_key().public_bytes_raw()


def public_key(public_raw: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key of raw 32 bytes."""
    return Ed25519PublicKey.from_public_bytes(public_raw)


def public_raw(key: Ed25519PublicKey) -> bytes:
    """A public key's raw 32 bytes."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(key: Ed25519PublicKey) -> str:
    """A public key as PEM SubjectPublicKeyInfo text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Raise :class:`~bastion.errors.SignatureError` unless ``signature`` is valid."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


# -- key derivation -----------------------------------------------------------------------------


def hkdf_sha256(key: bytes, *, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) of ``key`` with no salt and the label ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def scrypt(secret: bytes, *, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    """scrypt (RFC 7914) of ``secret``."""
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(secret)
