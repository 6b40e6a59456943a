"""Provenance: in-toto statements in DSSE envelopes, and the store that keeps them.

Envelopes are signed and verified by :mod:`bastion.security.dsse` (re-exported here:
``pae``, ``sign_envelope``, ``verify_envelope``, ``trusted_keys``, ``MAX_SIGNATURES``), which
checks a signature over the PAE before anything looks inside the payload.

Provenance is an in-toto Statement v1 (payloadType ``application/vnd.in-toto+json``) whose
subjects are artifact digests (SHA-256 of the plaintext, 64 lowercase hex).
:class:`StatementStore` keeps signed statements in the metadata database, content-addressed
by the SHA-256 of the canonical envelope JSON, and indexes them by subject digest. It only
accepts envelopes that verify; what it hands back is still to be verified by the reader
(the database is not a trust anchor), though it does check each envelope against its id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion._canonical import canonical_json
from bastion.errors import ConfigError, IntegrityError, NotFound
from bastion.security.dsse import (
    MAX_SIGNATURES,
    decode_envelope,
    pae,
    sign_envelope,
    strict_json,
    trusted_keys,
    verify_envelope,
)
from bastion.security.hazmat import Ed25519PublicKey
from bastion.security.keys import KeyProvider
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
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PAGE = 500


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
        statement = _check_statement(strict_json(payload))
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
    payload_type, payload, signatures = decode_envelope(envelope)
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
