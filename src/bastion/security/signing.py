# Over 400 lines, because dSSE envelopes and the statement store share one verification path.
"""Signatures and provenance: DSSE envelopes signed with Ed25519, in-toto statements in them.

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
malformed envelope or statement gives :class:`~bastion.errors.IntegrityError`. Nothing here
returns ``False``.

Provenance is an in-toto Statement v1 (payloadType ``application/vnd.in-toto+json``) whose
subjects are artifact digests (SHA-256 of the plaintext, 64 lowercase hex).
:class:`StatementStore` keeps signed statements in the metadata database, content-addressed
by the SHA-256 of the canonical envelope JSON, and indexes them by subject digest. It only
accepts envelopes that verify; what it hands back is still to be verified by the reader
(the database is not a trust anchor), though it does check each envelope against its id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion._canonical import canonical_json
from bastion.errors import ConfigError, IntegrityError, NotFound, SignatureError
from bastion.security import hazmat
from bastion.security.hazmat import Ed25519PublicKey
from bastion.security.keys import KeyInfo, KeyProvider, verify_ed25519
from bastion.security.schema import statement_subjects, statements

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "MAX_SIGNATURES",
    "STATEMENT_TYPE",
    "StatementStore",
    "make_statement",
    "pae",
    "sign_envelope",
    "sign_statement",
    "trusted_keys",
    "verify_envelope",
    "verify_statement",
]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_SIGNATURES = 16  # bounds the work a hostile envelope can ask of a verifier
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PAGE = 500


class _Keyring(Protocol):
    def keys(self) -> Sequence[KeyInfo]: ...


# -- DSSE -------------------------------------------------------------------------------


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
    payload_type, payload, signatures = _decode_envelope(envelope)
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


def _decode_envelope(
    envelope: Mapping[str, Any] | str | bytes,
) -> tuple[str, bytes, list[tuple[str | None, bytes]]]:
    if isinstance(envelope, str | bytes):
        try:
            envelope = _strict_json(envelope)
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


def _strict_json(data: str | bytes) -> Any:
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


# -- in-toto statements -------------------------------------------------------------------


def _check_digest(digest: object, field: str, error: type[Exception]) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise error(f"{field}: expected 64 lowercase hex characters (SHA-256), got {digest!r}")
    return digest


def make_statement(
    subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 about ``subjects`` (``(name, sha256 hex)`` pairs)."""
    if not subjects:
        raise ConfigError("subjects: expected at least one (name, sha256) pair, got none")
    subject_list = []
    for i, (name, digest) in enumerate(subjects):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"subjects[{i}].name: expected a non-empty string, got {name!r}")
        _check_digest(digest, f"subjects[{i}].digest", ConfigError)
        subject_list.append({"name": name, "digest": {"sha256": digest}})
    if not isinstance(predicate_type, str) or not predicate_type:
        raise ConfigError(f"predicate_type: expected a non-empty URI, got {predicate_type!r}")
    try:
        predicate_copy = json.loads(canonical_json(dict(predicate)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"predicate: expected JSON-serialisable data ({exc})") from None
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject_list,
        "predicateType": predicate_type,
        "predicate": predicate_copy,
    }


def _check_statement(statement: object) -> dict[str, Any]:
    """Raise IntegrityError unless ``statement`` has the in-toto Statement v1 shape."""
    if not isinstance(statement, dict):
        raise IntegrityError("statement: expected a JSON object")
    if statement.get("_type") != STATEMENT_TYPE:
        raise IntegrityError(
            f"statement: _type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}"
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise IntegrityError("statement: subject must be a non-empty list")
    for i, subject in enumerate(subjects):
        if not isinstance(subject, dict) or not isinstance(subject.get("name"), str):
            raise IntegrityError(f"statement: subject[{i}] needs a string name")
        digest = subject.get("digest")
        if not isinstance(digest, dict):
            raise IntegrityError(f"statement: subject[{i}].digest must be an object")
        _check_digest(
            digest.get("sha256"), f"statement: subject[{i}].digest.sha256", IntegrityError
        )
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise IntegrityError("statement: predicateType must be a non-empty string")
    if not isinstance(statement.get("predicate", {}), dict):
        raise IntegrityError("statement: predicate must be an object")
    return statement


def sign_statement(keys: KeyProvider, statement: Mapping[str, Any]) -> dict[str, Any]:
    """Sign an in-toto statement (from :func:`make_statement`) into a DSSE envelope."""
    try:
        checked = _check_statement(dict(statement))
        payload = canonical_json(checked)
    except (IntegrityError, TypeError, ValueError) as exc:
        raise ConfigError(f"statement: not a valid in-toto Statement v1 ({exc})") from None
    return sign_envelope(keys, INTOTO_PAYLOAD_TYPE, payload)


def verify_statement(
    envelope: Mapping[str, Any] | str | bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    expected_subjects: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Verify the envelope, then parse and check the statement it carries; return it.

    Every ``name -> sha256`` in ``expected_subjects`` must appear as a subject, else
    :class:`IntegrityError`.
    """
    expected = dict(expected_subjects or {})
    for name, digest in expected.items():
        _check_digest(digest, f"expected_subjects[{name!r}]", ConfigError)
    payload_type, payload = verify_envelope(envelope, trusted)
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(
            f"envelope: payloadType is {payload_type!r}, expected {INTOTO_PAYLOAD_TYPE!r}"
        )
    try:
        statement = _check_statement(_strict_json(payload))
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"statement: payload is not valid JSON ({exc})") from None
    present = {(s["name"], s["digest"]["sha256"]) for s in statement["subject"]}
    for name, digest in sorted(expected.items()):
        if (name, digest) not in present:
            raise IntegrityError(f"statement does not cover subject {name!r} with sha256 {digest}")
    return statement


# -- storage ------------------------------------------------------------------------------


def _normalise(envelope: Mapping[str, Any] | str | bytes) -> tuple[str, str]:
    """``(id, canonical JSON)`` of an envelope: fixed field set, standard base64."""
    payload_type, payload, signatures = _decode_envelope(envelope)
    doc = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": key_id or "", "sig": base64.b64encode(sig).decode("ascii")}
            for key_id, sig in signatures
        ],
    }
    text = canonical_json(doc)
    return hashlib.sha256(text).hexdigest(), text.decode("utf-8")


class StatementStore:
    """Signed in-toto statements in the metadata database, indexed by subject digest."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def add(
        self, envelope: Mapping[str, Any] | str | bytes, *, trusted: Mapping[str, Ed25519PublicKey]
    ) -> str:
        """Verify ``envelope`` and store it; return its id. Adding it again is a no-op."""
        statement = verify_statement(envelope, trusted)
        statement_id, text = _normalise(envelope)
        digests = sorted({s["digest"]["sha256"] for s in statement["subject"]})
        row = {
            "id": statement_id,
            "payload_type": INTOTO_PAYLOAD_TYPE,
            "predicate_type": statement["predicateType"],
            "envelope": text,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with self._engine.begin() as conn:
                if self._exists(conn, statement_id):
                    return statement_id
                conn.execute(sa.insert(statements).values(**row))
                conn.execute(
                    sa.insert(statement_subjects),
                    [{"statement_id": statement_id, "digest": d} for d in digests],
                )
        except DBIntegrityError:
            with self._engine.connect() as conn:
                if not self._exists(conn, statement_id):
                    raise
        return statement_id

    @staticmethod
    def _exists(conn: sa.Connection, statement_id: str) -> bool:
        query = sa.select(statements.c.id).where(statements.c.id == statement_id)
        return conn.execute(query).first() is not None

    @staticmethod
    def _load(statement_id: str, text: str) -> dict[str, Any]:
        if (
            not isinstance(text, str)
            or hashlib.sha256(text.encode("utf-8")).hexdigest() != statement_id
        ):
            raise IntegrityError(f"statement {statement_id}: stored envelope does not match its id")
        envelope: Any
        try:
            envelope = json.loads(text)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            raise IntegrityError(f"statement {statement_id}: stored envelope is not a JSON object")
        return envelope

    def get(self, statement_id: str) -> dict[str, Any]:
        """The envelope stored under ``statement_id`` (verify it with verify_statement)."""
        _check_digest(statement_id, "statement id", ConfigError)
        query = sa.select(statements.c.envelope).where(statements.c.id == statement_id)
        with self._engine.connect() as conn:
            text = conn.execute(query).scalar_one_or_none()
        if text is None:
            raise NotFound(f"statement {statement_id}: not in the store")
        return self._load(statement_id, text)

    def for_subject(self, digest: str) -> list[dict[str, Any]]:
        """Every stored envelope with a subject of this SHA-256 digest, oldest first."""
        _check_digest(digest, "digest", ConfigError)
        query = (
            sa.select(statements.c.id, statements.c.envelope)
            .join(statement_subjects, statement_subjects.c.statement_id == statements.c.id)
            .where(statement_subjects.c.digest == digest)
            .order_by(statements.c.created, statements.c.id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._load(row.id, row.envelope) for row in rows]

    def all(self) -> Iterator[tuple[str, dict[str, Any] | IntegrityError]]:
        """Every stored ``(id, envelope)``, in id order, read a page at a time. A damaged
        row comes as ``(id, IntegrityError)``, so a caller can report it and go on."""
        after = ""
        while True:
            query = (
                sa.select(statements.c.id, statements.c.envelope)
                .where(statements.c.id > after)
                .order_by(statements.c.id)
                .limit(_PAGE)
            )
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                try:
                    envelope: dict[str, Any] | IntegrityError = self._load(row.id, row.envelope)
                except IntegrityError as exc:
                    envelope = exc
                yield row.id, envelope
            if len(rows) < _PAGE:
                return
            after = rows[-1].id
