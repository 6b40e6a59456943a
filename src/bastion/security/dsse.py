"""DSSE envelopes signed with Ed25519: the exact bytes signed, signing, and verifying.

Signing (DSSE v1, https://github.com/secure-systems-lab/dsse)::

    PAE(type, body) = b"DSSEv1 " + len(type) + b" " + type + b" " + len(body) + b" " + body
    sig             = Ed25519(active signing key, PAE(UTF8(payloadType), payload))
    envelope        = {"payloadType": type, "payload": b64(body),
                       "signatures": [{"keyid": key id, "sig": b64(sig)}]}

The key never leaves the :class:`~bastion.security.keys.KeyProvider`; we hand it the PAE
bytes and check the returned signature against the public key before using it.

Verifying takes the trusted keys as a required argument (``{key id: public key}``, usually
:func:`trusted_keys` of the home's keyring) and follows the order DSSE prescribes: decode
the envelope, verify a signature over the PAE, and only then look inside the payload.
``keyid`` is an unauthenticated hint, so it only chooses *which* trusted key to try; a
signature without one is tried against every trusted key. Anything wrong raises: a bad or
missing signature or an untrusted key id gives :class:`~bastion.errors.SignatureError`, a
malformed envelope gives :class:`~bastion.errors.IntegrityError`. Nothing here returns
``False``. What a payload says is read by :mod:`bastion.security.signing` (in-toto
statements), only after :func:`verify_envelope` has returned.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bastion.errors import ConfigError, IntegrityError, SignatureError
from bastion.security import hazmat
from bastion.security.hazmat import Ed25519PublicKey
from bastion.security.keys import KeyInfo, KeyProvider, verify_ed25519

__all__ = [
    "MAX_SIGNATURES",
    "decode_envelope",
    "pae",
    "sign_envelope",
    "strict_json",
    "trusted_keys",
    "verify_envelope",
]

MAX_SIGNATURES = 16  # bounds the work a hostile envelope can ask of a verifier


class _Keyring(Protocol):
    def keys(self) -> Sequence[KeyInfo]: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes that get signed."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(keys: KeyProvider, payload_type: str, payload: bytes) -> dict[str, Any]:
    """Sign ``payload`` with the keyring's active signing key; return the DSSE envelope."""
    if not isinstance(payload_type, str) or not payload_type:
        raise ConfigError(f"payload_type: expected a non-empty media type, got {payload_type!r}")
    if not isinstance(payload, bytes):
        raise ConfigError(f"payload: expected bytes, got {type(payload).__name__}")
    key_id = keys.active_signing_key()
    message = pae(payload_type, payload)
    signature = keys.sign(key_id, message)
    # Check before use: a faulty signer (HSM glitch, wrong key id) must not leave here.
    verify_ed25519(keys.public_key(key_id), signature, message)
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key_id, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def verify_envelope(
    envelope: Mapping[str, Any] | str | bytes, trusted: Mapping[str, Ed25519PublicKey]
) -> tuple[str, bytes]:
    """Return ``(payloadType, payload)`` once one signature verifies under a trusted key.

    Raises :class:`SignatureError` when no signature does (untrusted key id, wrong
    signature, no signatures) and :class:`IntegrityError` when the envelope is malformed.
    """
    payload_type, payload, signatures = decode_envelope(envelope)
    message = pae(payload_type, payload)
    untrusted: list[str] = []
    for key_id, signature in signatures:
        if key_id is None:
            candidates = list(trusted.values())
        elif key_id in trusted:
            candidates = [trusted[key_id]]
        else:
            untrusted.append(key_id)
            continue
        for public_key in candidates:
            try:
                verify_ed25519(public_key, signature, message)
            except SignatureError:
                continue
            return payload_type, payload
    if untrusted and len(untrusted) == len(signatures):
        raise SignatureError(f"envelope is signed only by untrusted keys: {sorted(untrusted)}")
    raise SignatureError("envelope signature does not verify under any trusted key")


def decode_envelope(
    envelope: Mapping[str, Any] | str | bytes,
) -> tuple[str, bytes, list[tuple[str | None, bytes]]]:
    if isinstance(envelope, str | bytes):
        try:
            envelope = strict_json(envelope)
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"envelope is not valid JSON: {exc}") from None
    if not isinstance(envelope, Mapping):
        raise IntegrityError("envelope: expected a JSON object")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise IntegrityError("envelope: payloadType is missing or not a string")
    payload = _b64decode(envelope.get("payload"), "payload")
    entries = envelope.get("signatures")
    if not isinstance(entries, list) or not entries:
        raise SignatureError("envelope carries no signatures")
    if len(entries) > MAX_SIGNATURES:
        raise IntegrityError(f"envelope: more than {MAX_SIGNATURES} signatures")
    signatures: list[tuple[str | None, bytes]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise IntegrityError(f"envelope: signatures[{i}] is not an object")
        key_id = entry.get("keyid")
        if key_id == "":
            key_id = None
        if key_id is not None and not isinstance(key_id, str):
            raise IntegrityError(f"envelope: signatures[{i}].keyid is not a string")
        signatures.append((key_id, _b64decode(entry.get("sig"), f"signatures[{i}].sig")))
    return payload_type, payload, signatures


def _b64decode(text: object, field: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE verifiers must accept either)."""
    if not isinstance(text, str):
        raise IntegrityError(f"envelope: {field} is missing or not a string")
    normal = text.replace("-", "+").replace("_", "/")
    normal += "=" * (-len(normal) % 4)
    try:
        return base64.b64decode(normal.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise IntegrityError(f"envelope: {field} is not valid base64") from None


def strict_json(data: str | bytes) -> Any:
    """json.loads that refuses duplicate keys and NaN/Infinity (no parser differentials)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    return json.loads(data, object_pairs_hook=pairs, parse_constant=constant)


def trusted_keys(keyring: _Keyring) -> dict[str, Ed25519PublicKey]:
    """Every signing key of ``keyring`` (active or verify-only) as ``{key id: public key}``."""
    infos = keyring.keys()  # KeyInfo records, not a mapping
    return {
        info.id: hazmat.public_key(bytes.fromhex(info.public_key))
        for info in infos
        if info.kind == "signing" and info.public_key
    }
