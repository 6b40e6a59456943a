"""The signed, audited history of a model name: which versions exist, and which row is one.

Versions come from signed, audited data, not from the ``models`` table alone. A row and its
``model.register`` audit entry (hash-chained, checkpointed) commit in one transaction, and
every release statement signs its version and the statement id of the version before it (a
chain per model name). The *history* of a name (:func:`build_history`) puts rows, audit
entries and release statements side by side: a deleted, renumbered, inserted or replaced
version is a problem that ``bastion verify`` reports (:func:`audit_versions`); ``NAME``
resolves to the newest version only when the history has none, and ``NAME:VERSION`` only
when that version's own entries agree (:func:`resolve`); a new release is numbered from it
(:func:`next_release`).

:class:`~bastion.pipeline.registry.ModelRegistry` is the public face of all of this
(``ws.models.get``, ``audit_versions``, ``next_release``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import ConfigError, Error, IntegrityError, NotFound
from bastion.pipeline.provenance import RELEASE_PREDICATE
from bastion.store.db import models, statements

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "History",
    "ModelRecord",
    "Registration",
    "Releases",
    "audit_versions",
    "build_history",
    "next_release",
    "parse_ref",
    "read_record",
    "read_registrations",
    "read_releases",
    "resolve",
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
class Registration:
    """A ``model.register`` audit entry."""

    version: int
    digest: str
    statement_id: str
    seq: int


@dataclass
class Releases:
    """Verified release statements: id → statement, and name → version → ids."""

    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_name: dict[str, dict[int, list[str]]] = field(default_factory=dict)


@dataclass
class History:
    """Everything the home says about the versions of one name, and where it disagrees."""

    name: str
    rows: dict[int, ModelRecord]
    registered: dict[int, Registration]
    signed: dict[int, list[str]]
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    orphans: set[int] = field(default_factory=set)  # signed, never registered, newest

    @property
    def newest(self) -> int | None:
        known = set(self.registered) | set(self.rows) | self.orphans
        return max(known) if known else None

    def problems_of(self, version: int | None) -> list[str]:
        """Every problem (version None) or the problems of one version (and damaged rows)."""
        return [m for v, m in self.problems if version is None or v in (version, None)]


def _version_of(row: Any) -> int | None:
    """The version a (damaged) row claims, if it is a number at all."""
    try:
        return int(row.version)
    except (TypeError, ValueError):
        return None


def read_record(ws: Workspace, row: Any) -> ModelRecord:
    """A ``models`` row, its MAC checked first (ForgedRow: an edited or forged row)."""
    ws.rows.check("models", row._mapping)
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


def resolve(history: History, ref: str, version: int | None) -> ModelRecord:
    """The row of ``version`` (None: the newest), refused when the history disagrees."""
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


def read_registrations(ws: Workspace) -> dict[str, dict[int, Registration]]:
    """Every ``model.register`` audit entry, by name and version (first one wins)."""
    found: dict[str, dict[int, Registration]] = {}
    start = 1
    while True:
        page = ws.audit.entries(start=start, limit=_AUDIT_PAGE, action="model.register")
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
                Registration(
                    version,
                    str(details.get("digest", "")),
                    str(details.get("statement", "")),
                    entry.seq,
                ),
            )
        if len(page) < _AUDIT_PAGE:
            return found
        start = page[-1].seq + 1


def read_releases(ws: Workspace) -> Releases:
    """Every release statement that verifies, by id and by the name and version it
    signs. One that does not verify is left out here (``bastion verify`` reports it)."""
    from bastion.security.signing import trusted_keys, verify_statement

    trusted = trusted_keys(ws.keyring)
    query = sa.select(statements.c.id).where(statements.c.predicate_type == RELEASE_PREDICATE)
    with ws.engine.connect() as conn:
        ids = [str(i) for i in conn.execute(query).scalars()]
    releases = Releases()
    for sid in sorted(ids):
        try:
            statement = verify_statement(ws.statements.get(sid), trusted)
            name, version = parse_ref(str(statement["predicate"]["model"]))
        except (Error, KeyError, TypeError):
            continue
        if statement["predicateType"] != RELEASE_PREDICATE or version is None:
            continue
        releases.by_id[sid] = statement
        releases.by_name.setdefault(name, {}).setdefault(version, []).append(sid)
    return releases


def _read_rows(
    ws: Workspace, name: str
) -> tuple[dict[int, ModelRecord], list[tuple[int | None, str]]]:
    """The readable rows of ``name`` by version, and a problem for each damaged one."""
    rows: dict[int, ModelRecord] = {}
    problems: list[tuple[int | None, str]] = []
    with ws.engine.connect() as conn:
        for row in conn.execute(sa.select(models).where(models.c.name == name)):
            try:
                record = read_record(ws, row)
            except IntegrityError as exc:
                problems.append((_version_of(row), str(exc)))
                continue
            rows[record.version] = record
    return rows, problems


def build_history(
    ws: Workspace,
    name: str,
    registrations: Mapping[str, Mapping[int, Registration]],
    releases: Releases,
) -> History:
    """The history of ``name``: its rows, registrations and signed releases, and every
    place where they disagree."""
    rows, problems = _read_rows(ws, name)
    damaged = {v for v, _m in problems}
    h = History(name, rows, dict(registrations.get(name, {})), releases.by_name.get(name, {}))
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
    _check_chain(h, releases)
    return h


def _check_chain(h: History, releases: Releases) -> None:
    """Each registered version's release names the one registered before it."""
    before: Registration | None = None
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


def audit_versions(ws: Workspace) -> tuple[list[ModelRecord], list[tuple[str, str]]]:
    """Every readable row, and every problem of every name's history as (subject,
    message) — for ``bastion verify``."""
    registrations, releases = read_registrations(ws), read_releases(ws)
    with ws.engine.connect() as conn:
        names = {str(n) for n in conn.execute(sa.select(models.c.name).distinct()).scalars()}
    names |= set(registrations) | set(releases.by_name)
    records: list[ModelRecord] = []
    problems: list[tuple[str, str]] = []
    for name in sorted(names):
        h = build_history(ws, name, registrations, releases)
        records.extend(r for _v, r in sorted(h.rows.items()))
        problems.extend(
            (f"{name}:{v}" if v is not None else name, message) for v, message in h.problems
        )
    return records, problems


def next_release(ws: Workspace, name: str, digest: str) -> tuple[int, bool, str | None]:
    """``(version, new?, previous release statement id)`` for a model about to be
    released: the same bytes keep their version; a damaged history is refused."""
    h = build_history(ws, name, read_registrations(ws), read_releases(ws))
    problems = [m for v, m in h.problems if v not in h.orphans]
    if problems:
        raise IntegrityError(f"model {name}: cannot release a new version: " + "; ".join(problems))
    previous: str | None = None
    for v, reg in sorted(h.registered.items()):
        if reg.digest == digest:
            return v, False, previous
        previous = reg.statement_id
    return (h.newest or 0) + 1, True, previous
