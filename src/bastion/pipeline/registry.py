"""The model registry, and the one way to load a model: verify, then deserialise.

:meth:`ModelRegistry.load` (and ``verify``) walk the provenance chain before any model byte
is parsed:

1. ``NAME:VERSION`` is resolved against the signed, audited history of ``NAME``
   (:mod:`bastion.pipeline.history`); the registry row names the model's digest and its
   signed release statement;
2. the release statement must verify under a trusted key and name ``NAME:VERSION`` with
   exactly that digest;
3. from the model digest, every artifact is traced back through signed stage statements
   (each output digest is a subject of a verified statement; each of that statement's
   artifact materials is traced in turn) until only pinned sources remain — the ingested
   data digests (:mod:`bastion.pipeline.trace`);
4. every artifact on the way is decrypted and verified in the store;
5. only then is the model deserialised, with skops and an explicit type allow-list.

Any break raises :class:`~bastion.errors.IntegrityError` naming where the chain broke.

The database row is storage, not a trusted party. What a model is served with — its
:class:`Contract`: the pipeline file the request schema is read from, the training table
the screening profile is built from, its gates and metrics — comes from the verified
release statement, never from the row's ``record`` JSON (an edited record is reported).
This module holds the registry's face (rows listed and resolved, a model verified and
loaded) and what it hands out (:class:`Contract`, :class:`VerifiedModel`,
:class:`LoadedModel`).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import IntegrityError
from bastion.pipeline import history
from bastion.pipeline.history import ModelRecord, parse_ref
from bastion.pipeline.provenance import RELEASE_PREDICATE
from bastion.pipeline.trace import trace
from bastion.spec.labels import class_labels, label_names
from bastion.store.db import models

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "Contract",
    "LoadedModel",
    "ModelRecord",
    "ModelRegistry",
    "VerifiedModel",
    "class_labels",
    "parse_ref",
]


@dataclass(frozen=True)
class Contract:
    """What a model is served and shown with, read from its verified release statement.

    ``train_table`` is None for a model released before release statements named it; such
    a model cannot be served with input screening (release it again).
    """

    model: str
    config: str  # sha256 of the pipeline file: the data schema and label of requests
    train_table: str | None  # sha256 of the training table: the screening profile
    gates: list[dict[str, Any]]
    passed: bool
    metrics: dict[str, Any]
    compiled: str | None = None  # sha256 of the compiled form (release stage), if released
    parity: str | None = None  # sha256 of its signed parity check against scikit-learn

    @classmethod
    def from_release(cls, statement: Mapping[str, Any], ref: str) -> Contract:
        """The contract of ``ref`` in a VERIFIED release statement."""
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
        predicate = statement["predicate"]
        config = subjects.get(f"{ref}/pipeline.yaml")
        if not config:
            raise IntegrityError(f"model {ref}: its signed release names no pipeline file")
        return cls(
            ref,
            config,
            subjects.get(f"{ref}/train_table"),
            list(predicate.get("gates") or []),
            bool(predicate.get("passed")),
            dict(predicate.get("metrics") or {}),
            subjects.get(f"{ref}/compiled"),
            subjects.get(f"{ref}/parity"),
        )


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose signature and whole provenance chain were checked."""

    record: ModelRecord
    chain: list[dict[str, Any]]  # the verified stage statements, model first
    sources: list[dict[str, str]]  # the pinned data the chain ends in
    contract: Contract  # from the verified release statement


class LoadedModel:
    """A verified model that answers with the label's own class names, as the server does.

    The train stage fits on ``label == positive`` as 0/1; :meth:`predict` turns that back
    into the label's values (``"<=50K"``/``">50K"``). ``classes_`` are those names, in the
    column order of :meth:`predict_proba`; ``estimator`` is the raw scikit-learn pipeline
    (0/1) for code that needs it.
    """

    def __init__(self, estimator: Any, classes: builtins.list[str]) -> None:
        import numpy as np

        self.estimator = estimator
        self.classes_ = np.array(classes, dtype=object)

    @property
    def feature_names_in_(self) -> Any:
        """The input columns the estimator was fitted on (AttributeError if it has none)."""
        return self.estimator.feature_names_in_

    def predict(self, data: Any) -> Any:
        """Class names, one per row (the column of the highest probability)."""
        return self.classes_[self.predict_proba(data).argmax(axis=1)]

    def predict_proba(self, data: Any) -> Any:
        """Probabilities, rows × classes, columns in the order of ``classes_``."""
        return self.estimator.predict_proba(data)

    def __repr__(self) -> str:
        return f"LoadedModel(classes={list(self.classes_)!r}, estimator={self.estimator!r})"


class ModelRegistry:
    """Registered models of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- reading rows ------------------------------------------------------------------

    def list(self, name: str | None = None) -> builtins.list[ModelRecord]:
        """The rows, as stored; a damaged row raises IntegrityError naming it. Needs
        ``model:read`` (on ``name`` when given)."""
        self.ws.authorize("model:read", resource_type="model", resource=name or None)
        query = sa.select(models).order_by(models.c.name, models.c.version)
        if name:
            query = query.where(models.c.name == name)
        with self.ws.engine.connect() as conn:
            return [history.read_record(self.ws, row) for row in conn.execute(query)]

    def get(self, ref: str) -> ModelRecord:
        """The row of ``NAME:VERSION``, or of the newest version of ``NAME``, after
        checking it against the signed, audited history of the name."""
        name, version = parse_ref(ref)
        ws = self.ws
        h = history.build_history(
            ws, name, history.read_registrations(ws), history.read_releases(ws)
        )
        return history.resolve(h, ref, version)

    # -- the signed, audited history ---------------------------------------------------

    def audit_versions(self) -> tuple[builtins.list[ModelRecord], builtins.list[tuple[str, str]]]:
        """Every readable row, and every problem of every name's history as (subject,
        message) — for ``bastion verify``."""
        return history.audit_versions(self.ws)

    def next_release(self, name: str, digest: str) -> tuple[int, bool, str | None]:
        """``(version, new?, previous release statement id)`` for a model about to be
        released: the same bytes keep their version; a damaged history is refused."""
        return history.next_release(self.ws, name, digest)

    # -- verification ------------------------------------------------------------------

    def verify(self, ref: str, *, checked: set[str] | None = None) -> VerifiedModel:
        """Resolve ``ref``, then check the release signature and the provenance chain back
        to the sources.

        ``checked`` holds digests whose blobs the caller has just verified (``bastion
        verify`` checks every blob first), so they are not decrypted a second time; the
        digests verified here are added to it. Needs ``model:read`` on the model.
        """
        self.ws.authorize("model:read", resource_type="model", resource=parse_ref(ref)[0])
        return self.verify_record(self.get(ref), checked=checked)

    def _release(self, rec: ModelRecord) -> dict[str, Any]:
        """The verified release statement of ``rec``, checked to name it."""
        from bastion.security.signing import trusted_keys, verify_statement

        where = f"model {rec.ref}"
        release = verify_statement(
            self.ws.statements.get(rec.statement_id),
            trusted_keys(self.ws.keyring),
            expected_subjects={rec.ref: rec.digest},
        )
        if release["predicateType"] != RELEASE_PREDICATE:
            raise IntegrityError(f"{where}: release statement has the wrong predicate type")
        if release["predicate"].get("model") != rec.ref:
            raise IntegrityError(f"{where}: release statement names another model")
        return release

    def signed_contract(self, rec: ModelRecord) -> Contract:
        """The contract from ``rec``'s release statement, whose signature is checked (the
        provenance chain is not: see :meth:`verify_record`)."""
        return Contract.from_release(self._release(rec), rec.ref)

    def verify_record(self, rec: ModelRecord, *, checked: set[str] | None = None) -> VerifiedModel:
        """Check one row's release signature, contract and provenance chain (the row's
        place in the history is :meth:`get`'s and :meth:`audit_versions`' job)."""
        from bastion.security.signing import trusted_keys, verify_statement

        where = f"model {rec.ref}"
        release = self._release(rec)
        if not release["predicate"].get("passed") and not release["predicate"].get("override"):
            raise IntegrityError(f"{where}: released without passing its gates or an override")
        contract = Contract.from_release(release, rec.ref)
        for key in ("config", "train_table"):
            said = rec.record.get(key)
            if said is not None and said != getattr(contract, key):
                raise IntegrityError(
                    f"{where}: the record's {key} is not the one its signed release names:"
                    " the record was edited"
                )
        checked = set() if checked is None else checked
        found = trace(
            self.ws, rec.digest, trusted_keys(self.ws.keyring), verify_statement, where, checked
        )
        if found is None:
            raise IntegrityError(
                f"{where}: provenance chain broken: no signed path from the model back to"
                " pinned sources"
            )
        return VerifiedModel(rec, found.chain, found.sources, contract)

    def unsafe_load_unverified(self, ref: str) -> tuple[Any, ModelRecord]:
        """Deserialise WITHOUT checking the signature or provenance: debugging only.

        Logged as a warning and recorded in the audit log every time, as the workspace's
        principal. Needs ``model:read`` on the model. The model still goes through skops
        with the type allow-list (never pickle) and the store still checks the blob's
        integrity on read.
        """
        import logging

        from bastion.spec.serialization import load_model

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

    def load(self, ref: str) -> tuple[LoadedModel, VerifiedModel]:
        """Verify, then deserialise: the only way Bastion hands out a model. Needs
        ``model:read`` on the model. The model predicts the label's class names, the
        server's answers (:class:`LoadedModel`; ``.estimator`` is the raw 0/1 pipeline)."""
        from bastion.spec.loader import parse_pipeline
        from bastion.spec.serialization import load_model

        self.ws.authorize("model:read", resource_type="model", resource=parse_ref(ref)[0])
        rec = self.get(ref)
        # read_bytes verifies the model blob itself, so the chain walk need not decrypt it
        verified = self.verify_record(rec, checked={rec.digest})
        estimator = load_model(self.ws.store.read_bytes(verified.record.digest))
        config = verified.contract.config  # the signed pipeline file: the label's classes
        data = parse_pipeline(
            self.ws.store.read_bytes(config), f"stored pipeline file {config}", check_env=False
        ).data
        return LoadedModel(estimator, label_names(estimator, data)), verified
