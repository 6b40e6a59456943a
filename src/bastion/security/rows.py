"""Row MACs: every metadata row a security decision reads is authenticated.

The database is storage, not a trusted party. Each row of the tables below carries
``mac`` = HMAC-SHA256(row key, :func:`encode_row`), where the row key is
:meth:`~bastion.security.keys.LocalKeyring.row_mac_key` (HKDF-SHA256 of the keyring's MAC
key, info ``bastion row-mac v1``; it comes from the passphrase alone, so key rotation does
not change it and no row needs re-sealing). Whoever can write the database but lacks the
passphrase can delete rows, but cannot insert or edit one that checks::

    table             key (bound)                               sealed columns
    principals        name                                      kind, created, disabled
    role_permissions  role, permission                          -
    grants            principal, role, resource_type, resource  created    (id is a surrogate)
    tokens            id                                        principal, role, resource_type,
                                                                resource, secret_hash, created,
                                                                expires, revoked, description
    models            name, version                             digest, statement_id, run_id,
                                                                status, created, record
    artifacts         digest                                    size, media_type, name,
                                                                created, created_by
    audit_checkpoints tree_size                                 root, ts, key_id, signature,
                                                                frontier
    blocks            id                                        principal, code, created,
                                                                created_by, detail, lifted,
                                                                lifted_by, lift_reason

The encoding (one function, fixed test vector in ``tests/unit/security/test_rows.py``)::

    encode_row = b"bastion-row v1\\n" || str(table) || u32(n) || (str(column) || value(v))*n
    str(s)     = u32(len(utf8(s))) || utf8(s)
    value(v)   = b"N"                       for NULL
               | b"B" || 0x00 | 0x01        for a boolean
               | b"I" || str(decimal(v))    for an integer
               | b"S" || str(v)             for text
               | b"Y" || u32(len(v)) || v   for bytes

with the key columns first, then the sealed columns, in the order of the table above; u32
is big-endian. Values are typed, so ``1`` and ``"1"`` and ``True`` differ: a value stored
under another type (SQLite lets an attacker store text in an integer column) does not check.

What a MAC cannot catch: a deleted row, and a row put back as it was earlier, MAC included
(a revoked token's row restored from a copy made before its revocation, a deleted grant
restored, a disabled principal's row from before ``disable``). For the access-control
tables (principals, role_permissions, grants, tokens) the sealed access state catches both
(:mod:`bastion.security.access_state`: ``access-state.json`` lists the current rows by key
and MAC; a workspace refuses all but ``verify`` on a mismatch, and ``verify`` names each
row). Deleted or older models and checkpoints are the signed history's job (release
statements, the audit anchor); a deleted or older artifact row is reported by ``verify``
against the blobs and statements. A deleted block row is still enforced from its
``serve.block`` audit entry and reported by ``verify`` (:mod:`bastion.security.blocks`).

Homes made before row MACs existed (their keyring lacks ``rows_sealed``): the migration
cannot compute MACs (it has no key), so on the first open with the passphrase
:func:`seal_missing` seals every row without a MAC, once, in one transaction audited as
``rows.sealed`` (with the count per table), and the keyring then records, under its own
MAC, that the home is sealed. From then on a row without a MAC is refused like any forged
row. A new home's keyring says so from the start; its seeded role permissions are sealed by
``Workspace.init``. Rows forged before that first open are sealed with the rest: an upgrade
trusts the database it finds once, as the previous version did.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from bastion.errors import ConfigError, ForgedRow
from bastion.security.schema import (
    artifacts,
    audit_checkpoints,
    blocks,
    grants,
    models,
    principals,
    role_permissions,
    tokens,
)

__all__ = ["SEALED", "SEALED_TABLES", "BadRow", "RowMac", "encode_row", "scan", "seal_missing"]

_MAGIC: Final = b"bastion-row v1\n"

SEALED: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "principals": (("name",), ("kind", "created", "disabled")),
    "role_permissions": (("role", "permission"), ()),
    "grants": (("principal", "role", "resource_type", "resource"), ("created",)),
    "tokens": (
        ("id",),
        (
            "principal",
            "role",
            "resource_type",
            "resource",
            "secret_hash",
            "created",
            "expires",
            "revoked",
            "description",
        ),
    ),
    "models": (
        ("name", "version"),
        ("digest", "statement_id", "run_id", "status", "created", "record"),
    ),
    "artifacts": (("digest",), ("size", "media_type", "name", "created", "created_by")),
    "audit_checkpoints": (("tree_size",), ("root", "ts", "key_id", "signature", "frontier")),
    "blocks": (
        ("id",),
        (
            "principal",
            "code",
            "created",
            "created_by",
            "detail",
            "lifted",
            "lifted_by",
            "lift_reason",
        ),
    ),
}
"""Table → (key columns, sealed columns): what each row's MAC covers."""

SEALED_TABLES: Final[Mapping[str, sa.Table]] = {
    t.name: t
    for t in (
        principals,
        role_permissions,
        grants,
        tokens,
        models,
        artifacts,
        audit_checkpoints,
        blocks,
    )
}


Row = Mapping[Any, Any]
"""A row as a mapping of column name to value (a dict, or a SQLAlchemy ``RowMapping``)."""


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _text(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _u32(len(raw)) + raw


def _value(v: object) -> bytes:
    if isinstance(v, str):
        raw = v.encode("utf-8")
        return b"S" + len(raw).to_bytes(4, "big") + raw
    kind = type(v)
    if v is None:
        return b"N"
    if kind is bool:
        return b"B\x01" if v else b"B\x00"
    if kind is int:
        return b"I" + _text(str(v))
    if isinstance(v, bytes | bytearray | memoryview):
        raw = bytes(v)
        return b"Y" + _u32(len(raw)) + raw
    raise TypeError(kind.__name__)


# Per table: the encoding's fixed head and each column's name, encoded once.
_LAYOUT: Final[dict[str, tuple[bytes, tuple[tuple[str, bytes], ...]]]] = {
    table: (
        _MAGIC + _text(table) + _u32(len(key + sealed)),
        tuple((column, _text(column)) for column in key + sealed),
    )
    for table, (key, sealed) in SEALED.items()
}


_MEMO_SIZE: Final = 4096


_COLUMNS: Final[dict[str, tuple[str, ...]]] = {t: k + c for t, (k, c) in SEALED.items()}


def encode_row(table: str, values: Row) -> bytes:
    """The canonical bytes a row's MAC covers: its table, key and sealed columns.

    Raises :class:`~bastion.errors.ConfigError` for a table that is not sealed, KeyError
    for a missing column and TypeError for a value of a type no column holds.
    """
    layout = _LAYOUT.get(table)
    if layout is None:
        raise ConfigError(f"table: expected one of {', '.join(SEALED)}, got {table!r}")
    head, columns = layout
    parts = [head]
    for column, name in columns:
        parts.append(name)
        parts.append(_value(values[column]))
    return b"".join(parts)


def _describe(table: str, values: Row) -> str:
    """The row's key as ``col=value, ...`` (key columns are names and ids, never secrets)."""
    shown = []
    for column in SEALED[table][0]:
        text = str(values.get(column))
        shown.append(f"{column}={text if len(text) <= 80 else text[:77] + '...'}")
    return ", ".join(shown)


@dataclass(frozen=True, slots=True)
class BadRow:
    """One row whose MAC does not check."""

    table: str
    key: str  # "col=value, ..."

    def error(self) -> ForgedRow:
        return ForgedRow(
            f"{self.table} row ({self.key}): does not match its MAC; it was written or edited"
            " outside Bastion",
            self.table,
            self.key,
        )


class RowMac:
    """Seals and checks rows with one key. Build it with :meth:`of` from the keyring."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("row MAC key: expected 32 bytes")
        self._key = key
        self._good: set[Any] = set()

    @classmethod
    def of(cls, keys: object) -> RowMac:
        """The row MAC of a keyring; ConfigError if ``keys`` cannot give a row key."""
        source = getattr(keys, "row_mac_key", None)
        if not callable(source):
            raise ConfigError(
                f"keys: {type(keys).__name__} has no row MAC key; metadata rows need one"
            )
        key = source()
        if not isinstance(key, bytes):
            raise ConfigError("keys: row_mac_key() must return bytes")
        return cls(key)

    def mac(self, table: str, values: Row) -> bytes:
        """HMAC-SHA256 of :func:`encode_row`."""
        return hmac.digest(self._key, encode_row(table, values), "sha256")

    def sealed(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with its ``mac`` added, ready to insert."""
        return {**values, "mac": self.mac(table, values)}

    def bad(self, table: str, row: Row) -> BadRow | None:
        """None when ``row`` (with its ``mac`` column) checks, else what is wrong.

        Rows that checked are remembered by their exact typed values and MAC (the whole
        input of the computation), so a token presented again costs no HMAC.
        """
        stored = row.get("mac")
        try:
            memo: Any = (table, stored, tuple([(type(row[c]), row[c]) for c in _COLUMNS[table]]))
            if memo in self._good:
                return None
        except (KeyError, TypeError):  # a missing column, an unhashable value: no memo
            memo = None
        try:
            expected = self.mac(table, row)
        except (KeyError, TypeError):
            expected = b""
        if (
            not isinstance(stored, bytes | bytearray | memoryview)
            or not expected
            or not hmac.compare_digest(bytes(stored), expected)
        ):
            return BadRow(table, _describe(table, row))
        if memo is not None:
            if len(self._good) >= _MEMO_SIZE:
                self._good.clear()
            self._good.add(memo)
        return None

    def check(self, table: str, row: Row) -> None:
        """Raise :class:`~bastion.errors.ForgedRow` naming the row unless it checks."""
        bad = self.bad(table, row)
        if bad is not None:
            raise bad.error()


def _rows(conn: sa.Connection, table: sa.Table) -> Iterator[Row]:
    key = [table.c[name] for name in SEALED[table.name][0]]
    for row in conn.execute(sa.select(table).order_by(*key)):
        yield row._mapping


def scan(conn: sa.Connection, rows: RowMac) -> list[BadRow]:
    """Every row of every sealed table whose MAC does not check (for ``bastion verify``)."""
    found: list[BadRow] = []
    for name, table in SEALED_TABLES.items():
        for row in _rows(conn, table):
            bad = rows.bad(name, row)
            if bad is not None:
                found.append(bad)
    return found


def seal_missing(conn: sa.Connection, rows: RowMac) -> dict[str, int]:
    """Give every row without a MAC its MAC (see the module docstring for when); counts."""
    counts: dict[str, int] = {}
    for name, table in SEALED_TABLES.items():
        key = SEALED[name][0]
        todo = [
            dict(r._mapping) for r in conn.execute(sa.select(table).where(table.c.mac.is_(None)))
        ]
        for values in todo:
            try:
                mac = rows.mac(name, values)
            except (KeyError, TypeError):  # not a row Bastion wrote: left to be reported
                continue
            where = [table.c[column] == values[column] for column in key]
            conn.execute(sa.update(table).where(*where).values(mac=mac))
        if todo:
            counts[name] = len(todo)
    return counts
