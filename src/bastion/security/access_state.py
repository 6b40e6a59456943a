"""The access state: which access-control rows are the current ones, sealed outside the database.

A row MAC (:mod:`bastion.security.rows`) proves that Bastion wrote a row, not that the row
is still current. Whoever can write the database but lacks the passphrase could put back a
token row copied before its revocation (un-revoking it), a grant deleted by
``revoke_grant``, a principal row from before ``disable``, or delete a grant or role
permission: every row would still check. The access state closes that. The file
``access-state.json`` beside the keyring lists every access-control row whose MAC checks,
in the tables ``principals``, ``role_permissions``, ``grants`` and ``tokens``, by its
primary key and the first 16 bytes of its MAC, and carries an HMAC-SHA256 under a key only
the passphrase gives (HKDF-SHA256 of the row MAC key, info ``bastion access-state v1``)::

    {"format": "bastion-access-state", "version": 1,
     "state":   {table: [[label, [primary key...], hex(mac[:16])], ...], ...},
     "pending": null | the same as "state",
     "mac":     base64(HMAC(key, "bastion access-state v1\\n" || canonical JSON of the rest))}

(canonical JSON: keys sorted, separators ``,`` and ``:``, UTF-8; rows sorted; ``label`` is
the row's key as ``bastion verify`` names it.) Compared with the database (:func:`compare`):

    the file lists a row the database lacks                      deleted
    a row checks, but its MAC is not the one the file lists      an older copy put back
    a row checks that the file does not list                     put back after deletion,
                                                                 or written outside Bastion
    a row does not check                                         the row check's business:
                                                                 refused where used, reported

**Writes.** Every access-control write (:meth:`AccessStore.apply
<bastion.security.access_store.AccessStore.apply>`) runs under ``access-state.json.lock``
(:func:`~bastion._fs.file_lock`, so writers in several processes take turns): read the
file; the database must match it, or the write is refused (a write must never seal a
tampered state); in one transaction, make the change and its audit entry, then list the
rows as they now are and write the file with the old state and the new one as
``pending``; commit; write the file with the new state alone. Every write is atomic
(temporary file, fsync, rename). A crash between leaves a file that accepts either state:
the old one if the commit never happened, the pending one if it did; the next write or
open settles it. Homes made before the access state (keyring without ``access_sealed``)
are sealed at their first open with the passphrase, audited ``access.sealed``: trust on
first use, as for row MACs.

**Checks.** Every workspace open (each CLI command, each ``Workspace.open``) compares
(:meth:`AccessState.check`: without the lock, and a mismatch again under it, since a write
by another process may commit between reading the file and reading the rows); on a
mismatch the workspace refuses every operation except ``verify`` (exit 1, the message
names the rows) and ``bastion verify`` reports each row. ``bastion serve`` checks when it
opens and then every 5 seconds on a timer thread (:meth:`Workspace.watch_access_state
<bastion.workspace.Workspace>`): the token check on the request path only reads a flag.

**What remains.** The file and the rows rolled back *together* to the same older copy
verify (the file is sealed, not witnessed): whoever kept both copies can restore a state
as old as those copies. The audit log records every access change; only state kept off
the home bounds that rollback. A home shared by several hosts needs the file lock to work
across them (a local file system, or one host writing).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from bastion._canonical import canonical_json
from bastion._fs import atomic_write, file_lock
from bastion.errors import ConfigError, ForgedCredential, IntegrityError
from bastion.security.hazmat import hkdf_sha256
from bastion.security.rows import SEALED, SEALED_TABLES, RowMac

__all__ = [
    "STATE_FILE",
    "STATE_FORMAT",
    "TABLES",
    "AccessState",
    "StateProblem",
    "Update",
    "compare",
    "refusal",
    "snapshot",
]

STATE_FILE: Final = "access-state.json"
STATE_FORMAT: Final = "bastion-access-state"
TABLES: Final = ("principals", "role_permissions", "grants", "tokens")
_VERSION: Final = 1
_CONTEXT: Final = b"bastion access-state v1\n"
_INFO: Final = b"bastion access-state v1"
_TAG: Final = 16  # bytes of each row's MAC kept: it names a genuine version of the row
_MAX_FILE: Final = 64 << 20
_IDENTITY: Final[Mapping[str, tuple[str, ...]]] = {
    "principals": ("name",),
    "role_permissions": ("role", "permission"),
    "grants": ("id",),  # the surrogate key: an edited scope is the same row, forged
    "tokens": ("id",),
}

Ident = tuple[str, tuple[Any, ...]]
"""A row's identity: its table and primary key values."""

State = dict[Ident, tuple[str, str]]
"""Each listed row: identity → (hex of the MAC's first 16 bytes, label)."""


@dataclass(frozen=True, slots=True)
class StateProblem:
    """One row that differs from the sealed access state."""

    table: str
    key: str  # the row's label, "col=value, ..."
    kind: str  # deleted | replayed | unlisted

    @property
    def subject(self) -> str:
        return f"{self.table}:{self.key}"

    @property
    def message(self) -> str:
        return {
            "deleted": f"deleted: the sealed access state ({STATE_FILE}) lists this row",
            "replayed": "not the current row: an older copy was put back (its MAC checks,"
            f" but {STATE_FILE} holds another version)",
            "unlisted": f"not in the sealed access state ({STATE_FILE}): a deleted row put"
            " back, or one written outside Bastion",
        }[self.kind]


def refusal(problems: list[StateProblem]) -> str:
    """The message that refuses a workspace whose access rows differ from their state."""
    shown = "; ".join(f"{p.table} row ({p.key}) {p.message.split(':')[0]}" for p in problems[:3])
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    return (
        f"refused: the access-control rows differ from their sealed state ({STATE_FILE}):"
        f" {shown}{more}. They were changed outside Bastion (a row rolled back or deleted);"
        " `bastion verify` lists them, and only verify runs until the database is restored"
    )


def _label(table: str, row: Mapping[Any, Any]) -> str:
    shown = []
    for column in SEALED[table][0]:
        text = str(row.get(column))
        shown.append(f"{column}={text if len(text) <= 80 else text[:77] + '...'}")
    return ", ".join(shown)


def snapshot(
    conn: sa.Connection, rows: RowMac, known: State | None = None
) -> tuple[State, dict[Ident, str]]:
    """The rows as the database holds them: (those whose MAC checks, those that do not).

    A row whose stored MAC is the one ``known`` lists is taken as listed without computing
    its MAC (its contents are the row check's business): an open costs one HMAC only for
    rows that changed.
    """
    good: State = {}
    bad: dict[Ident, str] = {}
    for table in TABLES:
        for found in conn.execute(sa.select(SEALED_TABLES[table])):
            row = found._mapping
            ident: Ident = (table, tuple(row[c] for c in _IDENTITY[table]))
            label = _label(table, row)
            stored = row["mac"]
            tag = bytes(stored[:_TAG]).hex() if isinstance(stored, bytes | memoryview) else ""
            listed = known.get(ident) if known is not None else None
            same = listed is not None and listed[0] == tag and len(stored) == 32
            if tag and (same or rows.bad(table, row) is None):
                good[ident] = (tag, label)
            else:
                bad[ident] = label
    return good, bad


def compare(sealed: State, good: State, bad: Mapping[Ident, str]) -> list[StateProblem]:
    """Every row in which the database (``good`` and ``bad`` from :func:`snapshot`) differs
    from the ``sealed`` state; see the module docstring."""
    found: list[StateProblem] = []
    for ident, (tag, label) in sealed.items():
        now = good.get(ident)
        if now is None:
            if ident not in bad:
                found.append(StateProblem(ident[0], label, "deleted"))
        elif now[0] != tag:
            found.append(StateProblem(ident[0], now[1], "replayed"))
    for ident in good.keys() - sealed.keys():
        found.append(StateProblem(ident[0], good[ident][1], "unlisted"))
    return sorted(found, key=lambda p: (TABLES.index(p.table), p.key, p.kind))


def _problems(
    state: State, pending: State | None, good: State, bad: Mapping[Ident, str]
) -> list[StateProblem]:
    """:func:`compare` against ``state``; none if the database holds ``pending`` instead (a
    write committed and not yet settled, or one in progress)."""
    problems = compare(state, good, bad)
    if problems and pending is not None and not compare(pending, good, bad):
        return []
    return problems


def _to_json(state: State) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {table: [] for table in TABLES}
    for (table, key), (tag, label) in state.items():
        out[table].append([label, list(key), tag])
    for entries in out.values():
        entries.sort(key=lambda e: json.dumps(e, sort_keys=True))
    return out


class AccessState:
    """Reads, checks and replaces the sealed access state of one home."""

    def __init__(self, path: Path, rows: RowMac, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("access state key: expected 32 bytes")
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._rows = rows
        self._key = key

    @classmethod
    def of(cls, path: Path, keys: Any, rows: RowMac) -> AccessState:
        """The access state at ``path``, keyed from the keyring's row MAC key."""
        source = getattr(keys, "row_mac_key", None)
        if not callable(source):
            raise ConfigError(f"keys: {type(keys).__name__} has no row MAC key")
        return cls(path, rows, hkdf_sha256(source(), info=_INFO))

    # -- the file ---------------------------------------------------------------------

    def _mac(self, doc: Mapping[str, Any]) -> bytes:
        return hmac.digest(
            self._key, _CONTEXT + canonical_json(doc, allow_nan=True), hashlib.sha256
        )

    def write(self, state: State, pending: State | None = None) -> None:
        """Replace the file atomically (callers hold :attr:`lock_path`)."""
        doc: dict[str, Any] = {
            "format": STATE_FORMAT,
            "version": _VERSION,
            "state": _to_json(state),
            "pending": None if pending is None else _to_json(pending),
        }
        doc["mac"] = base64.b64encode(self._mac(doc)).decode("ascii")
        atomic_write(self.path, json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n")

    def read(self) -> tuple[State, State | None]:
        """(state, pending) once the file's MAC checks; IntegrityError naming the file if it
        is missing, not an access state, or does not check."""

        def bad(why: str) -> IntegrityError:
            return IntegrityError(f"{self.path}: the sealed access state is {why}")

        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise bad("missing (deleted)") from None
        except OSError as exc:
            raise bad(f"unreadable ({exc.strerror})") from None
        try:
            if len(raw) > _MAX_FILE:
                raise ValueError("size")
            doc = json.loads(raw)
            if not isinstance(doc, dict) or set(doc) != {
                "format", "version", "state", "pending", "mac",
            }:  # fmt: skip
                raise ValueError("keys")
            if doc["format"] != STATE_FORMAT or doc["version"] != _VERSION:
                raise ValueError("format")
            mac = base64.b64decode(doc.pop("mac"), validate=True)
        except (ValueError, TypeError, binascii.Error):
            raise bad(f"not a {STATE_FORMAT} v{_VERSION} file") from None
        if not hmac.compare_digest(mac, self._mac(doc)):
            raise bad("edited or written without the passphrase (its MAC does not check)")
        try:
            state = self._parse(doc["state"])
            pending = None if doc["pending"] is None else self._parse(doc["pending"])
        except (ValueError, TypeError, KeyError):  # pragma: no cover - the MAC checked
            raise bad(f"not a {STATE_FORMAT} v{_VERSION} file") from None
        return state, pending

    @staticmethod
    def _parse(tables: Any) -> State:
        state: State = {}
        if set(tables) != set(TABLES):
            raise ValueError("tables")
        for table in TABLES:
            for label, key, tag in tables[table]:
                state[(table, tuple(key))] = (str(tag), str(label))
        return state

    # -- checks -----------------------------------------------------------------------

    def check(self, engine: sa.Engine) -> list[StateProblem]:
        """Every row in which the database differs from the sealed state (none: it matches
        the state, or a pending one, which is then settled). IntegrityError for a bad file.

        Read without the lock first (an open does not wait for writers); a mismatch, or a
        pending state to settle, is decided again under the lock. Without the lock, the file
        and the rows are read at two moments: a write by another process that commits and
        seals between them makes its new rows look unlisted (or replayed). Writers hold the
        lock from their read of the file to their final write, so under it the file and the
        rows are one state and a mismatch is a real one. Where the lock cannot be taken (a
        read-only home), the lock-free verdict stands.
        """
        state, pending = self.read()
        with engine.connect() as conn:
            good, bad = snapshot(conn, self._rows, state)
        problems = _problems(state, pending, good, bad)
        if not problems and pending is None:
            return problems
        try:
            with file_lock(self.lock_path):
                return self._check_locked(engine)
        except OSError:
            return problems

    def _check_locked(self, engine: sa.Engine) -> list[StateProblem]:
        """:meth:`check` under the lock: compare, then drop a pending state, keeping
        whichever of the two the database holds."""
        state, pending = self.read()
        with engine.connect() as conn:
            good, bad = snapshot(conn, self._rows, state)
        problems = _problems(state, pending, good, bad)
        if pending is not None:
            held = pending if not compare(pending, good, bad) else None
            if held is None and not compare(state, good, bad):
                held = state
            if held is not None:
                with contextlib.suppress(OSError):  # a read-only home: the next writer settles
                    self.write(held)
        return problems

    def adopt(self, engine: sa.Engine) -> dict[str, int]:
        """Seal the rows the database holds now (a new home, or the first open of one made
        before the access state): trust on first use. The count per table."""
        with file_lock(self.lock_path), engine.connect() as conn:
            good, _bad = snapshot(conn, self._rows)
            self.write(good)
        return {table: sum(1 for t, _k in good if t == table) for table in TABLES}

    @contextlib.contextmanager
    def updating(self, engine: sa.Engine) -> Iterator[Update]:
        """Hold the lock around one access-control write; see the module docstring.

        Raises :class:`~bastion.errors.ForgedCredential` (before anything is written) when
        the database does not match the sealed state, IntegrityError for a bad file.
        """
        with file_lock(self.lock_path):
            state, pending = self.read()
            with engine.connect() as conn:
                good, bad = snapshot(conn, self._rows, state)
            base, problems = state, compare(state, good, bad)
            if problems and pending is not None and not compare(pending, good, bad):
                base, problems = pending, []
            if problems:
                raise ForgedCredential(refusal(problems), problems[0].table, problems[0].key)
            update = Update(self, base)
            yield update
            if update.staged is not None:
                self.write(update.staged)
            elif base is not state or pending is not None:
                self.write(base)


class Update:
    """One write in progress: :meth:`stage` it inside the transaction, before the commit."""

    def __init__(self, owner: AccessState, base: State) -> None:
        self._owner = owner
        self._base = base
        self.staged: State | None = None

    def stage(self, conn: sa.Connection) -> None:
        """List the rows as this transaction leaves them; write them to the file as pending."""
        good, _bad = snapshot(conn, self._owner._rows, self._base)
        self._owner.write(self._base, good)
        self.staged = good
