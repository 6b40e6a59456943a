# Over 400 lines, because one job, resolving a model from signed, audited history.
"""The model registry, and the one way to load a model: verify, then deserialise.

:meth:`ModelRegistry.load` (and ``verify``) walk the provenance chain before any model byte
is parsed:

1. ``NAME:VERSION`` is resolved against the signed, audited history of ``NAME`` (below);
   the registry row names the model's digest and its signed release statement;
2. the release statement must verify under a trusted key and name ``NAME:VERSION`` with
   exactly that digest;
3. from the model digest, every artifact is traced back through signed stage statements
   (each output digest is a subject of a verified statement; each of that statement's
   artifact materials is traced in turn) until only pinned sources remain — the ingested
   data digests;
4. every artifact on the way is decrypted and verified in the store;
5. only then is the model deserialised, with skops and an explicit type allow-list.

Any break raises :class:`~bastion.errors.IntegrityError` naming where the chain broke.

The database row is storage, not a trusted party. What a model is served with — its
:class:`Contract`: the pipeline file the request schema is read from, the training table
the screening profile is built from, its gates and metrics — comes from the verified
release statement, never from the row's ``record`` JSON (an edited record is reported).

Versions come from signed, audited data too. A row and its ``model.register`` audit entry
(hash-chained, checkpointed) commit in one transaction, and every release statement signs
its version and the statement id of the version before it (a chain per model name). The
*history* of a name puts rows, audit entries and release statements side by side: a
deleted, renumbered, inserted or replaced version is a problem that ``bastion verify``
reports; ``NAME`` resolves to the newest version only when the history has none, and
``NAME:VERSION`` only when that version's own entries agree.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import ConfigError, Error, IntegrityError, NotFound
from bastion.pipeline.provenance import RELEASE_PREDICATE, STAGE_PREDICATE
from bastion.spec.labels import class_labels, label_names
from bastion.store.db import models, statements

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

_REF = re.compile(r"^([a-z0-9][a-z0-9._-]{0,63})(?::(\d+|latest))?$")
_REGISTERED = re.compile(r"^model:([a-z0-9][a-z0-9._-]{0,63}):(\d+)$")
_AUDIT_PAGE = 10_000


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
    """A registered model version, as its database row says (verify before trusting)."""

    name: str
    version: int
    digest: str
    statement_id: str
    run_id: str
    status: str
    created: str
    record: dict[str, Any]  # informational only: nothing that decides is read from it

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


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


@dataclass(frozen=True)
class _Registration:
    """A ``model.register`` audit entry."""

    version: int
    digest: str
    statement_id: str
    seq: int


@dataclass
class _Releases:
    """Verified release statements: id → statement, and name → version → ids."""

    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_name: dict[str, dict[int, builtins.list[str]]] = field(default_factory=dict)


@dataclass
class _History:
    """Everything the home says about the versions of one name, and where it disagrees."""

    name: str
    rows: dict[int, ModelRecord]
    registered: dict[int, _Registration]
    signed: dict[int, builtins.list[str]]
    problems: builtins.list[tuple[int | None, str]] = field(default_factory=list)
    orphans: set[int] = field(default_factory=set)  # signed, never registered, newest

    @property
    def newest(self) -> int | None:
        known = set(self.registered) | set(self.rows) | self.orphans
        return max(known) if known else None

    def problems_of(self, version: int | None) -> builtins.list[str]:
        """Every problem (version None) or the problems of one version (and damaged rows)."""
        return [m for v, m in self.problems if version is None or v in (version, None)]


def _version_of(row: Any) -> int | None:
    """The version a (damaged) row claims, if it is a number at all."""
    try:
        return int(row.version)
    except (TypeError, ValueError):
        return None


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
            return [self._record(row) for row in conn.execute(query)]

    def get(self, ref: str) -> ModelRecord:
        """The row of ``NAME:VERSION``, or of the newest version of ``NAME``, after
        checking it against the signed, audited history of the name."""
        name, version = parse_ref(ref)
        history = self._history(name, self._registrations(), self._releases())
        return self._resolve(history, ref, version)

    @staticmethod
    def _resolve(history: _History, ref: str, version: int | None) -> ModelRecord:
        name = history.name
        if version is None:
            problems = history.problems_of(None)
            if problems:
                raise IntegrityError(
                    f"model {name}: refusing to pick the newest version: "
                    + "; ".join(problems)
                    + " (see `bastion verify`; name a version to use it)"
                )
            version = history.newest
            if version is None:
                raise NotFound(f"model {ref}: not registered (see `bastion models list`)")
        problems = history.problems_of(version)
        if problems:
            raise IntegrityError(f"model {name}:{version}: " + "; ".join(problems))
        record = history.rows.get(version)
        if record is None:
            raise NotFound(f"model {ref}: not registered (see `bastion models list`)")
        return record

    def _record(self, row: Any) -> ModelRecord:
        self.ws.rows.check("models", row._mapping)  # ForgedRow: an edited or forged row
        try:
            return ModelRecord(
                str(row.name),
                int(row.version),
                str(row.digest),
                str(row.statement_id),
                str(row.run_id),
                str(row.status),
                str(row.created),
                dict(json.loads(row.record)),
            )
        except (TypeError, ValueError):
            raise IntegrityError(
                f"model {row.name}:{row.version}: its database row is damaged"
            ) from None

    # -- the signed, audited history ---------------------------------------------------

    def _registrations(self) -> dict[str, dict[int, _Registration]]:
        """Every ``model.register`` audit entry, by name and version (first one wins)."""
        found: dict[str, dict[int, _Registration]] = {}
        start = 1
        while True:
            page = self.ws.audit.entries(start=start, limit=_AUDIT_PAGE, action="model.register")
            for entry in page:
                m = _REGISTERED.match(entry.resource)
                if entry.outcome != "ok" or not m:
                    continue
                try:
                    details = entry.details
                except ValueError:
                    details = {}
                version = int(m.group(2))
                found.setdefault(m.group(1), {}).setdefault(
                    version,
                    _Registration(
                        version,
                        str(details.get("digest", "")),
                        str(details.get("statement", "")),
                        entry.seq,
                    ),
                )
            if len(page) < _AUDIT_PAGE:
                return found
            start = page[-1].seq + 1

    def _releases(self) -> _Releases:
        """Every release statement that verifies, by id and by the name and version it
        signs. One that does not verify is left out here (``bastion verify`` reports it)."""
        from bastion.security.signing import trusted_keys, verify_statement

        trusted = trusted_keys(self.ws.keyring)
        query = sa.select(statements.c.id).where(statements.c.predicate_type == RELEASE_PREDICATE)
        with self.ws.engine.connect() as conn:
            ids = [str(i) for i in conn.execute(query).scalars()]
        releases = _Releases()
        for sid in sorted(ids):
            try:
                statement = verify_statement(self.ws.statements.get(sid), trusted)
                name, version = parse_ref(str(statement["predicate"]["model"]))
            except (Error, KeyError, TypeError):
                continue
            if statement["predicateType"] != RELEASE_PREDICATE or version is None:
                continue
            releases.by_id[sid] = statement
            releases.by_name.setdefault(name, {}).setdefault(version, []).append(sid)
        return releases

    def _history(
        self,
        name: str,
        registrations: Mapping[str, Mapping[int, _Registration]],
        releases: _Releases,
    ) -> _History:
        rows: dict[int, ModelRecord] = {}
        problems: builtins.list[tuple[int | None, str]] = []
        with self.ws.engine.connect() as conn:
            for row in conn.execute(sa.select(models).where(models.c.name == name)):
                try:
                    record = self._record(row)
                except IntegrityError as exc:
                    problems.append((_version_of(row), str(exc)))
                    continue
                rows[record.version] = record
        damaged = {v for v, _m in problems}
        h = _History(name, rows, dict(registrations.get(name, {})), releases.by_name.get(name, {}))
        h.problems = problems
        for v, reg in sorted(h.registered.items()):
            found = rows.get(v)
            if v in damaged:
                continue
            if found is None:
                h.problems.append(
                    (
                        v,
                        f"{name}:{v} is registered (audit entry {reg.seq}) but its record is"
                        " missing: deleted or renumbered",
                    )
                )
            elif (found.digest, found.statement_id) != (reg.digest, reg.statement_id):
                h.problems.append(
                    (
                        v,
                        f"{name}:{v}: its record does not match its registration (audit entry"
                        f" {reg.seq}): replaced",
                    )
                )
        for v in sorted(set(rows) - set(h.registered)):
            h.problems.append(
                (
                    v,
                    f"{name}:{v}: its record has no registration in the audit log: inserted"
                    " or renumbered",
                )
            )
        top = max(set(rows) | set(h.registered), default=0)
        for v in sorted(x for x in h.signed if x > top):
            h.orphans.add(v)
            h.problems.append(
                (
                    v,
                    f"{name}:{v} has a signed release but is not registered: its record and"
                    " registration are missing (deleted, or a release that did not finish)",
                )
            )
        self._check_chain(h, releases)
        return h

    @staticmethod
    def _check_chain(h: _History, releases: _Releases) -> None:
        """Each registered version's release names the one registered before it."""
        before: _Registration | None = None
        for v, reg in sorted(h.registered.items()):
            statement = releases.by_id.get(reg.statement_id)
            predicate = statement["predicate"] if statement else {}
            if statement is not None and "previous" in predicate:
                expected = before.statement_id if before else None
                if predicate.get("version") != v or predicate["previous"] != expected:
                    was = f"{h.name}:{before.version}" if before else "none"
                    h.problems.append(
                        (
                            v,
                            f"{h.name}:{v}: its signed release follows another version than"
                            f" the one registered before it ({was}): a version was deleted,"
                            " renumbered or replaced",
                        )
                    )
            before = reg

    def audit_versions(self) -> tuple[builtins.list[ModelRecord], builtins.list[tuple[str, str]]]:
        """Every readable row, and every problem of every name's history as (subject,
        message) — for ``bastion verify``."""
        registrations, releases = self._registrations(), self._releases()
        with self.ws.engine.connect() as conn:
            names = {str(n) for n in conn.execute(sa.select(models.c.name).distinct()).scalars()}
        names |= set(registrations) | set(releases.by_name)
        records: builtins.list[ModelRecord] = []
        problems: builtins.list[tuple[str, str]] = []
        for name in sorted(names):
            h = self._history(name, registrations, releases)
            records.extend(r for _v, r in sorted(h.rows.items()))
            problems.extend(
                (f"{name}:{v}" if v is not None else name, message) for v, message in h.problems
            )
        return records, problems

    def next_release(self, name: str, digest: str) -> tuple[int, bool, str | None]:
        """``(version, new?, previous release statement id)`` for a model about to be
        released: the same bytes keep their version; a damaged history is refused."""
        h = self._history(name, self._registrations(), self._releases())
        problems = [m for v, m in h.problems if v not in h.orphans]
        if problems:
            raise IntegrityError(
                f"model {name}: cannot release a new version: " + "; ".join(problems)
            )
        previous: str | None = None
        for v, reg in sorted(h.registered.items()):
            if reg.digest == digest:
                return v, False, previous
            previous = reg.statement_id
        return (h.newest or 0) + 1, True, previous

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
        trusted = trusted_keys(self.ws.keyring)
        chain: list[dict[str, Any]] = []
        sources: list[dict[str, str]] = []
        checked = set() if checked is None else checked
        memo: dict[tuple[str, str | None], bool | None] = {}
        if not self._trace(
            rec.digest, trusted, verify_statement, where, memo, chain, sources, checked
        ):
            raise IntegrityError(
                f"{where}: provenance chain broken: no signed path from the model back to"
                " pinned sources"
            )
        return VerifiedModel(rec, chain, sources, contract)

    def _trace(
        self,
        digest: str,
        trusted: Mapping[str, Any],
        verify: Any,
        where: str,
        memo: dict[tuple[str, str | None], bool | None],
        chain: builtins.list[dict[str, Any]],
        sources: builtins.list[dict[str, str]],
        checked: set[str],
        name: str | None = None,
    ) -> bool:
        """True when ``digest`` is produced by a verified stage statement whose artifact
        materials are themselves traced, down to pinned sources. Appends what it used.

        ``name`` is the ``stage.output`` the consumer read it as (its material's name).
        Stages that pass a table through unchanged give several outputs the same digest
        (content addressing); the statement that names the output is tried first, so the
        chain shows every stage the data went through, not a shortcut. Any other statement
        that verifies and traces is still accepted: the order is all this changes."""
        key = (digest, name)
        if key in memo:
            return bool(memo[key])  # None while in progress: a cycle is not a path
        memo[key] = None
        problems = []
        for envelope in self._producers(digest, name, where, checked):
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
                    m["sha256"], trusted, verify, where, memo, chain, sources, checked,
                    m.get("name"),
                ):  # fmt: skip
                    ok = False
                    break
            if ok:
                memo[key] = True
                return True
            del chain[mark_chain:], sources[mark_sources:]
        if problems:
            raise IntegrityError(f"{where}: artifact {digest[:12]}…: {problems[0]}")
        memo[key] = False
        return False

    def _producers(
        self, digest: str, name: str | None, where: str, checked: set[str]
    ) -> builtins.list[dict[str, Any]]:
        """The stored artifact checked (once), then the envelopes with ``digest`` as a
        subject, those naming it ``name`` first (see :meth:`_trace`)."""
        if digest not in checked:
            try:
                self.ws.store.verify(digest)
            except Error as exc:
                raise IntegrityError(f"{where}: artifact {digest[:12]}…: {exc}") from None
            checked.add(digest)
        envelopes = list(self.ws.statements.for_subject(digest))
        if name is not None:
            envelopes.sort(key=lambda e: not _names(e, name, digest))
        return envelopes

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


def _names(envelope: Mapping[str, Any], name: str, digest: str) -> bool:
    """Whether the (not yet verified) statement in ``envelope`` names ``name`` as the
    subject with ``digest``: only an ordering hint for :meth:`ModelRegistry._trace`, which
    verifies every statement it uses."""
    import base64
    import json

    try:
        statement = json.loads(base64.b64decode(envelope["payload"]))
        return any(
            s.get("name") == name and s.get("digest", {}).get("sha256") == digest
            for s in statement.get("subject", [])
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
