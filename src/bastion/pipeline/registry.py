"""The model registry, and the one way to load a model: verify, then deserialise.

:meth:`ModelRegistry.load` (and ``verify``) walk the provenance chain before any model byte
is parsed:

1. the registry row names the model's digest and its signed release statement;
2. the release statement must verify under a trusted key and name ``NAME:VERSION`` with
   exactly that digest;
3. from the model digest, every artifact is traced back through signed stage statements
   (each output digest is a subject of a verified statement; each of that statement's
   artifact materials is traced in turn) until only pinned sources remain — the ingested
   data digests;
4. every artifact on the way is decrypted and verified in the store;
5. only then is the model deserialised, with skops and an explicit type allow-list.

Any break raises :class:`~bastion.errors.IntegrityError` naming where the chain broke.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import ConfigError, Error, IntegrityError, NotFound
from bastion.pipeline.runner import RELEASE_PREDICATE, STAGE_PREDICATE
from bastion.store.db import models

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = ["ModelRecord", "ModelRegistry", "VerifiedModel", "parse_ref"]

_REF = re.compile(r"^([a-z0-9][a-z0-9._-]{0,63})(?::(\d+|latest))?$")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:VERSION`` or ``NAME:latest`` → (name, version or None)."""
    m = _REF.match(ref.strip())
    if not m:
        raise ConfigError(
            f"model: expected NAME or NAME:VERSION (e.g. adult-income:1), got {ref!r}"
        )
    version = m.group(2)
    return m.group(1), int(version) if version and version != "latest" else None


@dataclass(frozen=True)
class ModelRecord:
    """A registered model version."""

    name: str
    version: int
    digest: str
    statement_id: str
    run_id: str
    status: str
    created: str
    record: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose signature and whole provenance chain were checked."""

    record: ModelRecord
    chain: list[dict[str, Any]]  # the verified stage statements, model first
    sources: list[dict[str, str]]  # the pinned data the chain ends in


class ModelRegistry:
    """Registered models of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def list(self, name: str | None = None) -> builtins.list[ModelRecord]:
        """Needs ``model:read`` (on ``name`` when given)."""
        self.ws.authorize("model:read", resource_type="model", resource=name or None)
        query = sa.select(models).order_by(models.c.name, models.c.version)
        if name:
            query = query.where(models.c.name == name)
        with self.ws.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def get(self, ref: str) -> ModelRecord:
        name, version = parse_ref(ref)
        query = sa.select(models).where(models.c.name == name)
        query = (
            query.where(models.c.version == version)
            if version is not None
            else query.order_by(models.c.version.desc()).limit(1)
        )
        with self.ws.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"model {ref}: not registered (see `bastion models list`)")
        return self._record(row)

    def _record(self, row: Any) -> ModelRecord:
        self.ws.rows.check("models", row._mapping)  # ForgedRow: an edited or forged row
        return ModelRecord(
            row.name,
            int(row.version),
            row.digest,
            row.statement_id,
            row.run_id,
            row.status,
            row.created,
            json.loads(row.record),
        )

    def verify(self, ref: str, *, checked: set[str] | None = None) -> VerifiedModel:
        """Check the release signature and the provenance chain back to the sources.

        ``checked`` holds digests whose blobs the caller has just verified (``bastion
        verify`` checks every blob first), so they are not decrypted a second time; the
        digests verified here are added to it. Needs ``model:read`` on the model.
        """
        from bastion.security.signing import trusted_keys, verify_statement

        self.ws.authorize("model:read", resource_type="model", resource=parse_ref(ref)[0])
        rec = self.get(ref)
        trusted = trusted_keys(self.ws.keyring)
        where = f"model {rec.ref}"
        release = verify_statement(
            self.ws.statements.get(rec.statement_id),
            trusted,
            expected_subjects={rec.ref: rec.digest},
        )
        if release["predicateType"] != RELEASE_PREDICATE:
            raise IntegrityError(f"{where}: release statement has the wrong predicate type")
        if release["predicate"].get("model") != rec.ref:
            raise IntegrityError(f"{where}: release statement names another model")
        if not release["predicate"].get("passed"):
            raise IntegrityError(f"{where}: released without passing its gates")
        chain: list[dict[str, Any]] = []
        sources: list[dict[str, str]] = []
        checked = set() if checked is None else checked
        memo: dict[str, bool | None] = {}
        if not self._trace(
            rec.digest, trusted, verify_statement, where, memo, chain, sources, checked
        ):
            raise IntegrityError(
                f"{where}: provenance chain broken: no signed path from the model back to"
                " pinned sources"
            )
        return VerifiedModel(rec, chain, sources)

    def _trace(
        self,
        digest: str,
        trusted: Mapping[str, Any],
        verify: Any,
        where: str,
        memo: dict[str, bool | None],
        chain: builtins.list[dict[str, Any]],
        sources: builtins.list[dict[str, str]],
        checked: set[str],
    ) -> bool:
        """True when ``digest`` is produced by a verified stage statement whose artifact
        materials are themselves traced, down to pinned sources. Appends what it used."""
        if digest in memo:
            return bool(memo[digest])  # None while in progress: a cycle is not a path
        memo[digest] = None
        if digest not in checked:
            try:
                self.ws.store.verify(digest)
            except Error as exc:
                raise IntegrityError(f"{where}: artifact {digest[:12]}…: {exc}") from None
            checked.add(digest)
        problems = []
        for envelope in self.ws.statements.for_subject(digest):
            try:
                statement: dict[str, Any] = verify(envelope, trusted)
            except Error as exc:
                problems.append(str(exc))
                continue
            if statement["predicateType"] != STAGE_PREDICATE:
                continue
            materials = statement["predicate"].get("materials", [])
            if any(m.get("kind") not in ("artifact", "source") for m in materials):
                raise IntegrityError(f"{where}: unknown material kind in the chain")
            mark_chain, mark_sources = len(chain), len(sources)
            chain.append(statement)
            ok = True
            for m in materials:
                if m["kind"] == "source":
                    sources.append(
                        {"name": m["name"], "sha256": m["sha256"], "uri": m.get("uri", "")}
                    )
                elif not self._trace(
                    m["sha256"], trusted, verify, where, memo, chain, sources, checked
                ):
                    ok = False
                    break
            if ok:
                memo[digest] = True
                return True
            del chain[mark_chain:], sources[mark_sources:]
        if problems:
            raise IntegrityError(f"{where}: artifact {digest[:12]}…: {problems[0]}")
        memo[digest] = False
        return False

    def unsafe_load_unverified(self, ref: str) -> tuple[Any, ModelRecord]:
        """Deserialise WITHOUT checking the signature or provenance: debugging only.

        Logged as a warning and recorded in the audit log every time, as the workspace's
        principal. Needs ``model:read`` on the model. The model still goes through skops
        with the type allow-list (never pickle) and the store still checks the blob's
        integrity on read.
        """
        import logging

        from bastion.pipeline.serialization import load_model

        actor = self.ws.authorize(
            "model:read", resource_type="model", resource=parse_ref(ref)[0]
        ).principal
        rec = self.get(ref)
        logging.getLogger("bastion").warning(
            "UNSAFE: loading %s without verifying its signature and provenance", rec.ref
        )
        self.ws.audit.record(
            actor, "model.unsafe_load_unverified", f"model:{rec.ref}", "ok", {"digest": rec.digest}
        )
        return load_model(self.ws.store.read_bytes(rec.digest)), rec

    def load(self, ref: str) -> tuple[Any, VerifiedModel]:
        """Verify, then deserialise: the only way Bastion hands out a model. Needs
        ``model:read`` on the model (checked by ``verify``)."""
        from bastion.pipeline.serialization import load_model

        rec = self.get(ref)
        # read_bytes verifies the model blob itself, so the chain walk need not decrypt it
        verified = self.verify(ref, checked={rec.digest})
        model = load_model(self.ws.store.read_bytes(verified.record.digest))
        return model, verified
