"""The audit log: append-only, hash-chained, with signed Merkle checkpoints.

What is stored (tables ``audit_log``, ``audit_head``, ``audit_checkpoints``)::

    entry i   = (seq, ts, actor, action, resource, outcome, details)   seq = 1, 2, 3, ... no gaps
    leaf_i    = UTF-8(f"{seq}\\0{ts}\\0{actor}\\0{action}\\0{resource}\\0{outcome}\\0{details}")
    lh_i      = SHA-256(0x00 || leaf_i)                                 RFC 6962 leaf hash
    chain_i   = SHA-256(chain_{i-1} || lh_i),  chain_0 = 32 zero bytes   stored in every row
    head      = (last seq, last chain)                                  one row, id = 1
    checkpoint= (tree_size, MTH(lh_1..lh_n), ts, key_id, Ed25519 signature, frontier)

No field may contain a control character (``details`` is canonical JSON, which escapes
them), so the NUL-separated leaf encoding is unambiguous. ``docs/formats/checkpoint.md``
specifies the bytes, with test vectors.

How an append works: every writer takes the head row's lock inside its transaction
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), reads the head,
chains the new entries onto it, folds their leaf hashes into the Merkle frontier, signs a
checkpoint at every multiple of ``checkpoint_every`` crossed, and writes rows, head and
checkpoints in that one transaction. So several threads and processes append safely, and
a batch is either wholly visible or not at all. The frontier is cached in memory and used
only while the head still matches the cache; otherwise (another process appended, or a
caller rolled back a :meth:`AuditLog.record_in`) it is rebuilt from the last checkpoint's
stored frontier plus the rows after it, checking their chain on the way.

Group commit: :meth:`AuditLog.submit` queues an entry for one background writer thread and
returns a future (:meth:`AuditLog.record` is submit-and-wait, with a lighter waiter); the
writer drains the queue (up to 5,000 entries; when several callers are active it waits up
to 1 ms for more), writes them with one ``executemany`` and one commit (durable: SQLite
runs with ``synchronous=FULL``), then resolves the futures. If the write fails every future
of the batch gets :class:`~bastion.errors.AuditError` and nothing of the batch is visible
(fail closed). :meth:`AuditLog.record_in` runs the same chaining code inside a caller's
transaction, for actions that must commit atomically with their entry.

:meth:`AuditLog.verify` recomputes everything: the chain of every entry, the Merkle root at
every stored checkpoint and that checkpoint's signature, and optionally an exported
checkpoint kept elsewhere (truncation and fork detection). It reads entries in ranges of
16,384 aggregated into one row per column by the database (``group_concat`` /
``string_agg``, run one range ahead on a second thread while this one hashes), so Python
only splits, joins and hashes; any range that does not check out this way is re-read row
by row to name each problem precisely. Checkpoints are
trusted only through public keys from the :class:`~bastion.security.keys.KeyProvider`:
an exported file never carries its own trust.

The leaf hashes covered by a checkpoint are protected by its signature, but an attacker
with write access to the database can delete checkpoint rows and recompute the chain and
head. So a log opened with an ``anchor`` (every workspace's is) also keeps its newest tree
head sealed in a file outside the database (:mod:`bastion.security.anchor`): updated after
every commit that signs a checkpoint and on :meth:`AuditLog.close`, required by
:meth:`AuditLog.verify` (deleted checkpoints, truncation and a rewritten history up to it
fail with no exported checkpoint), and checked by the writer before it appends to or signs
a log it did not just write. What remains: entries after the newest anchor (fewer than
``checkpoint_every`` of a running process, or those of one that died unclosed), and
everything after an older genuine anchor file put back in its place. Only checkpoints
exported to where that attacker cannot write bound the second; see
``docs/formats/checkpoint.md``, "What remains".
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import contextlib
import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine.interfaces import DBAPICursor

from bastion._fs import atomic_write
from bastion.errors import (
    AuditChainError,
    AuditError,
    ConfigError,
    Error,
    IntegrityError,
    SignatureError,
    UnknownKeyError,
)
from bastion.security.anchor import ANCHOR_FILE, Anchor, AnchorKeeper
from bastion.security.keys import KeyProvider, verify_ed25519
from bastion.security.merkle import Frontier
from bastion.security.rows import RowMac
from bastion.store.db import audit_checkpoints, audit_log

if TYPE_CHECKING:
    from bastion.security.sink import AuditSink

__all__ = [
    "CHECKPOINT_FORMAT",
    "OUTCOMES",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "Checkpoint",
    "VerifyReport",
    "read_checkpoint",
]

OUTCOMES: Final = ("denied", "error", "failed", "ok", "started")
CHECKPOINT_FORMAT: Final = "bastion-audit-checkpoint"
_CHECKPOINT_VERSION = 1
_SIGNING_CONTEXT = b"bastion audit checkpoint v1\n"
_MAX_LENGTHS = {"actor": 128, "action": 128, "resource": 512}
_MAX_DETAILS_BYTES = 65_536
_MAX_CHECKPOINT_FILE = 65_536
_BATCH_CAP = 5_000
_GROUP_WAIT = 0.001  # seconds the writer may wait to grow a batch (see AuditLog._drain)
_GROUP_GAP = 0.0002  # ... as long as messages keep coming this close together
_VERIFY_RANGE = 16_384
_ZERO = bytes(32)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control characters, lone surrogates
_RS = b"\x1e"  # separates entries inside one aggregated column in verify's fast path
_NUL = b"\0"
_sha256 = hashlib.sha256


def _leaf_hash(
    seq: int, ts: str, actor: str, action: str, resource: str, outcome: str, details: str
) -> bytes:
    """The leaf hash of one entry (``AuditLog._append`` inlines this for speed)."""
    return _sha256(
        f"\0{seq}\0{ts}\0{actor}\0{action}\0{resource}\0{outcome}\0{details}".encode()
    ).digest()


# -- value types ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored entry. ``details_json`` is the canonical JSON text that was hashed."""

    seq: int
    ts: str
    actor: str
    action: str
    resource: str
    outcome: str
    details_json: str
    chain: bytes

    @property
    def details(self) -> dict[str, Any]:
        """The details as a fresh dict."""
        value: dict[str, Any] = json.loads(self.details_json)
        return value

    def leaf_bytes(self) -> bytes:
        """The bytes whose ``SHA-256(0x00 || ...)`` is this entry's Merkle leaf hash."""
        fields = (self.ts, self.actor, self.action, self.resource, self.outcome, self.details_json)
        return "\0".join((str(self.seq), *fields)).encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the Merkle root of the first ``tree_size`` entries."""

    tree_size: int
    root: bytes
    ts: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The exact bytes the signature covers."""
        text = f"{self.tree_size}\n{self.root.hex()}\n{self.ts}\n{self.key_id}\n"
        return _SIGNING_CONTEXT + text.encode()

    def verify(self, keys: KeyProvider) -> None:
        """Raise UnknownKeyError or SignatureError unless a keyring key signed this."""
        verify_ed25519(keys.public_key(self.key_id), self.signature, self.message())

    def to_json(self) -> bytes:
        """The exported file's bytes (see ``docs/formats/checkpoint.md``)."""
        doc = {
            "format": CHECKPOINT_FORMAT,
            "version": _CHECKPOINT_VERSION,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One finding of :meth:`AuditLog.verify`. ``seq`` names the entry or tree size."""

    kind: str
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`AuditLog.verify` checked when everything held."""

    entries: int
    checkpoints: int
    last_seq: int
    root: str
    exported_tree_size: int | None = None
    anchored_tree_size: int | None = None  # the sealed anchor's tree size, if the log has one


def read_checkpoint(path: Path, keys: KeyProvider) -> Checkpoint:
    """Load an exported checkpoint and check its signature against ``keys``.

    Raises ConfigError for a file that is not a checkpoint, UnknownKeyError when its key id
    is not in the keyring, SignatureError when the signature does not verify.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    if len(raw) > _MAX_CHECKPOINT_FILE:
        raise ConfigError(f"{path}: not a checkpoint (larger than {_MAX_CHECKPOINT_FILE} bytes)")
    checkpoint = _parse_checkpoint(path, raw)
    checkpoint.verify(keys)
    return checkpoint


def _parse_checkpoint(path: Path, raw: bytes) -> Checkpoint:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{path}: not a {CHECKPOINT_FORMAT} v{_CHECKPOINT_VERSION} file: {why}")

    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("invalid JSON") from None
    expected = {"format", "version", "tree_size", "root", "ts", "key_id", "signature"}
    if not isinstance(doc, dict) or set(doc) != expected:
        raise bad(f"expected exactly the keys {sorted(expected)}")
    if doc["format"] != CHECKPOINT_FORMAT or doc["version"] != _CHECKPOINT_VERSION:
        raise bad(f"format {doc['format']!r} version {doc['version']!r}")
    size, root, ts, key_id, sig = (
        doc[k] for k in ("tree_size", "root", "ts", "key_id", "signature")
    )
    if type(size) is not int or size < 1:
        raise bad("tree_size must be a positive integer")
    if not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
        raise bad("root must be 64 lowercase hex digits")
    for name, value in (("ts", ts), ("key_id", key_id)):
        if not isinstance(value, str) or not 0 < len(value) <= 64 or _CONTROL.search(value):
            raise bad(f"{name} must be 1..64 printable characters")
    try:
        signature = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except binascii.Error:
        signature = b""
    if len(signature) != 64:
        raise bad("signature must be 64 bytes in base64")
    return Checkpoint(size, bytes.fromhex(root), ts, key_id, signature)


# -- validation -----------------------------------------------------------------------------

_Item = tuple[str, str, str, str, str, str]  # ts, actor, action, resource, outcome, details
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, reused within it


def _now() -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-01-31T12:00:00.000001+00:00``."""
    global _second
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}")
    return f"{cached[1]}.{micro:06d}+00:00"


def _text(field: str, value: object, *, empty_ok: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{field}: expected a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise ConfigError(f"{field}: must not be empty")
    limit = _MAX_LENGTHS[field]
    if len(value) > limit:
        raise ConfigError(f"{field}: at most {limit} characters, got {len(value)}")
    if _UNSAFE.search(value):
        raise ConfigError(f"{field}: control characters and lone surrogates are not allowed")
    return value


def _validated(
    actor: str, action: str, resource: str, outcome: str, details: Mapping[str, Any] | None
) -> _Item:
    if outcome not in OUTCOMES:
        raise ConfigError(f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if not details:
        text = "{}"
    elif not isinstance(details, Mapping):
        raise ConfigError(f"details: expected a mapping, got {type(details).__name__}")
    else:
        try:
            text = _JSON.encode(details if type(details) is dict else dict(details))
            size = len(text.encode())
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"details: expected JSON-serialisable values with string keys ({exc})"
            ) from None
        if size > _MAX_DETAILS_BYTES:
            raise ConfigError(f"details: at most {_MAX_DETAILS_BYTES} bytes of JSON, got {size}")
    return (
        _now(),
        _text("actor", actor, empty_ok=False),
        _text("action", action, empty_ok=False),
        _text("resource", resource, empty_ok=True),
        outcome,
        text,
    )


# -- SQL per dialect ------------------------------------------------------------------------
#
# Every statement is a literal; the only dialect differences are how the writer takes the
# head lock, how verify opens its snapshot, and the aggregate functions of the fast path.
# In that path NULLs (possible only in a table rebuilt without NOT NULL) become 0xff, a byte
# no valid UTF-8 entry contains, so they cannot hide in an aggregate; 0x1e separates entries.

_COMMON_SQL = {
    "ensure_head": "INSERT INTO audit_head (id, seq, chain) VALUES (1, 0, ?)"
    " ON CONFLICT (id) DO NOTHING",
    "update_head": "UPDATE audit_head SET seq = ?, chain = ? WHERE id = 1",
    "insert_entry": "INSERT INTO audit_log"
    " (seq, ts, actor, action, resource, outcome, details, chain)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "insert_checkpoint": "INSERT INTO audit_checkpoints"
    " (tree_size, root, ts, key_id, signature, frontier, mac) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "checkpoint_at": "SELECT tree_size, root, ts, key_id, signature, frontier"
    " FROM audit_checkpoints WHERE tree_size = ?",
    "latest_checkpoint_upto": "SELECT tree_size, root, ts, key_id, signature, frontier"
    " FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size DESC LIMIT 1",
    "chain_at": "SELECT chain FROM audit_log WHERE seq = ?",
    "count_checkpoints_upto": "SELECT count(*) FROM audit_checkpoints WHERE tree_size <= ?",
    "rows_after": "SELECT seq, ts, actor, action, resource, outcome, details, chain"
    " FROM audit_log WHERE seq > ? ORDER BY seq",
    "read_head": "SELECT seq, chain FROM audit_head WHERE id = 1",
}

_SQLITE_SQL = {
    "begin_write": "BEGIN IMMEDIATE",
    "lock_head": "SELECT seq, chain FROM audit_head WHERE id = 1",
    "begin_snapshot": "BEGIN",
    "verify_rows": "SELECT seq, CAST(ts AS BLOB), CAST(actor AS BLOB), CAST(action AS BLOB),"
    " CAST(resource AS BLOB), CAST(outcome AS BLOB), CAST(details AS BLOB), chain"
    " FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    "verify_range": "SELECT group_concat(seq, ','),"
    " CAST(group_concat(coalesce(ts, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(actor, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(action, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(resource, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(outcome, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(details, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(chain, '') AS BLOB), min(length(chain)), max(length(chain))"
    " FROM audit_log WHERE seq > ? AND seq <= ?",
}

_POSTGRES_SQL = {
    "begin_write": "",
    "lock_head": "SELECT seq, chain FROM audit_head WHERE id = 1 FOR UPDATE",
    "begin_snapshot": "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    "verify_rows": "SELECT seq, convert_to(ts, 'UTF8'), convert_to(actor, 'UTF8'),"
    " convert_to(action, 'UTF8'), convert_to(resource, 'UTF8'), convert_to(outcome, 'UTF8'),"
    " convert_to(details, 'UTF8'), chain FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    "verify_range": "SELECT string_agg(seq::text, ',' ORDER BY seq),"
    " string_agg(coalesce(convert_to(ts, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(actor, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(action, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(resource, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(outcome, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(details, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(chain, '' ORDER BY seq), min(length(chain)), max(length(chain))"
    " FROM audit_log WHERE seq > ? AND seq <= ?",
}


@dataclass(frozen=True, slots=True)
class _Sql:
    begin_write: str
    lock_head: str
    begin_snapshot: str
    verify_rows: str
    verify_range: str
    ensure_head: str
    update_head: str
    insert_entry: str
    insert_checkpoint: str
    checkpoint_at: str
    latest_checkpoint_upto: str
    chain_at: str
    count_checkpoints_upto: str
    rows_after: str
    read_head: str


def _sql_for(dialect: str) -> _Sql:
    if dialect == "sqlite":
        return _Sql(**_SQLITE_SQL, **_COMMON_SQL)
    if dialect == "postgresql":  # psycopg's placeholder is %s
        return _Sql(
            **{k: v.replace("?", "%s") for k, v in {**_POSTGRES_SQL, **_COMMON_SQL}.items()}
        )
    raise ConfigError(f"audit log: expected a sqlite or postgresql engine, got {dialect}")


# -- the log --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    """The head as this process last wrote or rebuilt it; trusted only while it matches."""

    seq: int
    chain: bytes
    frontier: Frontier


class _Control:
    """A writer instruction queued behind the entries before it: flush, checkpoint, stop."""

    __slots__ = ("future", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.future: Future[Checkpoint | None] = Future()


class _Waiter:
    """What ``record`` blocks on: a lighter Future (one lock, no condition variable)."""

    __slots__ = ("_done", "error", "seq")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.seq = 0
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, seq: int) -> None:
        self.seq = seq
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> int:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.seq


class _AsyncWaiter:
    """What ``arecord`` awaits: settled on its event loop, one loop wake-up per batch."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[int] = loop.create_future()

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, seq: int) -> None:  # only used on failure paths, one by one
        result: _Result = (self.future, seq, None)
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            self.loop.call_soon_threadsafe(_settle, [result])

    def set_exception(self, error: BaseException) -> None:
        result: _Result = (self.future, 0, error)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, [result])


_Result = tuple["asyncio.Future[int]", int, BaseException | None]


def _settle(results: list[_Result]) -> None:
    for future, seq, error in results:
        if future.done():  # the awaiting task was cancelled; the entry is written anyway
            continue
        if error is None:
            future.set_result(seq)
        else:
            future.set_exception(error)


_Message = tuple[_Item, "Future[int] | _Waiter | _AsyncWaiter"] | _Control
_Signed = tuple[Checkpoint, str]  # a checkpoint and its frontier as stored (JSON)


def _refuse(head_seq: int) -> AuditError:
    return AuditError(
        f"the audit log does not match its head (seq {head_seq}); refusing to append:"
        " run `bastion audit verify`"
    )


def _refuse_anchor(path: Path) -> AuditError:
    return AuditError(
        f"the audit log does not extend its anchor ({path.name}): entries or checkpoints were"
        " removed or rewritten, or the anchor was; refusing to append or sign:"
        " run `bastion audit verify`"
    )


_Seal = tuple[int, bytes, int]  # an anchor to write: tree size, root, checkpoints up to it


def _checkpoint_of(row: Sequence[Any]) -> Checkpoint:
    return Checkpoint(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]), bytes(row[4]))


class AuditLog:
    """The audit log in one database. Implements :class:`~bastion.security.sink.AuditSink`.

    ``record`` and ``submit`` may be called from many threads. Use the log as a context
    manager, or call :meth:`close`, so that queued entries are written before exit.
    """

    def __init__(
        self,
        engine: Engine,
        keys: KeyProvider,
        *,
        checkpoint_every: int = 1000,
        anchor: Path | None = None,
    ) -> None:
        """``anchor`` names the sealed anchor file (see :mod:`bastion.security.anchor`); a
        workspace always passes ``<home>/audit-anchor.json``. Without one, nothing outside
        the database remembers the log, as before."""
        if type(checkpoint_every) is not int or checkpoint_every < 1:
            raise ConfigError(
                f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}"
            )
        self._engine = engine
        self._keys = keys
        self._rows = RowMac.of(keys)  # checkpoint rows carry a MAC too (security.rows)
        self._every = checkpoint_every
        self._sql = _sql_for(engine.dialect.name)
        self._db_errors: tuple[type[Exception], ...] = (engine.dialect.loaded_dbapi.Error,)
        self._state: _State | None = None
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_batch = 1
        self._conn: Any = None  # the writer thread's own pooled connection
        self._anchor = AnchorKeeper(anchor, keys) if anchor is not None else None

    # -- recording ----------------------------------------------------------------------

    def submit(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> Future[int]:
        """Queue one entry; the future gives its seq once committed, or AuditError."""
        future: Future[int] = Future()
        self._send((_validated(actor, action, resource, outcome, details), future))
        return future

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry and return its seq once it is durable; AuditError if it is not."""
        waiter = _Waiter()
        self._send((_validated(actor, action, resource, outcome, details), waiter))
        return waiter.wait()

    async def arecord(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """``record`` for asyncio code (the inference server): await the durable seq.

        Many tasks awaiting at once share one commit, and the writer wakes their event loop
        once per batch rather than once per entry, so an async caller gets group commit
        without a thread per request. If the awaiting task is cancelled, the entry may
        still be written: audit entries are never withdrawn.
        """
        waiter = _AsyncWaiter(asyncio.get_running_loop())
        self._send((_validated(actor, action, resource, outcome, details), waiter))
        return await waiter.future

    def record_in(
        self,
        conn: Connection,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry inside the caller's open transaction on ``conn``.

        The entry commits or rolls back with the caller's work. The head row stays locked
        until then, so record further entries of that transaction with ``record_in`` too.
        """
        item = _validated(actor, action, resource, outcome, details)
        if self._closed:
            raise AuditError("the audit log is closed")
        if not conn.in_transaction():
            raise ConfigError("conn: record_in needs an open transaction (engine.begin())")
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:
            raise AuditError("could not write the audit entry: the connection is closed")
        cursor = dbapi.cursor()
        try:
            seqs, state, _, _ = self._append(
                cursor, [item], want_checkpoint=False, write_locked=self._sql.begin_write == ""
            )
        except AuditError:
            raise
        except Exception as exc:
            raise AuditError(f"could not write the audit entry ({type(exc).__name__})") from exc
        finally:
            cursor.close()
        self._state = state  # compared with the head before it is used again
        return seqs[0]

    def flush(self) -> None:
        """Wait until every entry submitted before this call has been written or failed."""
        if self._thread is not None and not self._closed:
            self._call(_Control("flush"))

    def checkpoint(self) -> Checkpoint:
        """Write queued entries, then sign a checkpoint at the head (or return the one there).

        Raises ConfigError when the log is empty.
        """
        checkpoint = self._call(_Control("checkpoint"))
        if checkpoint is None:  # pragma: no cover - the writer always answers with one
            raise AuditError("the audit writer returned no checkpoint")
        return checkpoint

    def export_checkpoint(self, path: Path) -> Checkpoint:
        """Checkpoint the head and write it to ``path`` atomically, to keep elsewhere."""
        checkpoint = self.checkpoint()
        atomic_write(path, checkpoint.to_json(), mode=0o644)
        return checkpoint

    def init_anchor(self) -> None:
        """Seal the anchor of the empty log: a new home does this before its first entry.

        From then on the anchor must exist: the writer never makes a missing one again (that
        would bless whatever the database holds), and verification reports it missing.
        Raises ConfigError without an anchor path, when the log is not empty, or when the
        file exists.
        """
        if self._anchor is None:
            raise ConfigError("init_anchor: this audit log was opened without an anchor file")
        if self.head()[0] != 0:
            raise ConfigError("init_anchor: the audit log is not empty")
        self._anchor.create()

    def close(self) -> None:
        """Write everything still queued, then stop the writer. Later records fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_Control("stop"))
        if thread is not None:
            thread.join()
            atexit.unregister(self.close)
        if self._anchor is not None:
            self._seal_head()
            self._anchor.close()

    def _seal_head(self) -> None:
        """Anchor what this process appended since the newest anchor (best effort: a close
        that cannot write the file leaves the older anchor, and a wider window)."""
        state, keeper = self._state, self._anchor
        if keeper is None or state is None or state.seq <= keeper.size:
            return
        with contextlib.suppress(Exception):
            with self._engine.connect() as conn:
                at = conn.exec_driver_sql(self._sql.chain_at, (state.seq,)).first()
                if at is None or bytes(at[0]) != state.chain:
                    return  # a record_in that rolled back, or rows changed meanwhile
                count = conn.exec_driver_sql(self._sql.count_checkpoints_upto, (state.seq,))
                held = int(count.scalar_one())
            keeper.seal(state.seq, state.frontier.root(), held)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the writer thread --------------------------------------------------------------

    def _send(self, message: _Message) -> None:
        with self._lock:
            if self._closed:
                raise AuditError("the audit log is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bastion-audit-writer", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
            elif not self._thread.is_alive():
                raise AuditError("the audit writer has stopped")
            self._queue.put(message)

    def _call(self, control: _Control) -> Checkpoint | None:
        self._send(control)
        return control.future.result()

    def _run(self) -> None:
        stop = False
        try:
            while not stop:
                items: list[_Item] = []
                futures: list[Future[int] | _Waiter | _AsyncWaiter] = []
                for message in self._drain():
                    if isinstance(message, tuple):
                        if message[1].set_running_or_notify_cancel():
                            items.append(message[0])
                            futures.append(message[1])
                        continue
                    if message.kind == "stop":
                        stop = True
                        continue
                    self._commit(items, futures, message)
                    items, futures = [], []
                self._commit(items, futures, None)
        finally:
            self._release_connection(ok=True)

    def _drain(self) -> list[_Message]:
        """Block for one message, then take what is queued: a batch of up to 5,000.

        Group commit: when the last batch held several entries their callers are likely
        about to send more, so sleep in steps of 0.2 ms (for at most 1 ms) while the batch
        keeps growing. Sleeping, rather than waiting on the queue, lets callers enqueue
        without waking the writer for each message. A lone caller never waits.
        """
        get_nowait = self._queue.get_nowait
        messages = [self._queue.get()]
        deadline = time.perf_counter() + _GROUP_WAIT
        while True:
            taken = len(messages)
            while len(messages) < _BATCH_CAP:
                try:
                    messages.append(get_nowait())
                except queue.Empty:
                    break
            grew = len(messages) > taken or taken == 1
            if (
                self._last_batch < 2
                or not grew
                or len(messages) >= _BATCH_CAP
                or not isinstance(messages[-1], tuple)
                or time.perf_counter() > deadline
            ):
                break
            time.sleep(_GROUP_GAP)
        self._last_batch = len(messages)
        return messages

    def _commit(
        self,
        items: list[_Item],
        futures: list[Future[int] | _Waiter | _AsyncWaiter],
        control: _Control | None,
    ) -> None:
        """Write one batch in one transaction and settle its futures."""
        want = control is not None and control.kind == "checkpoint"
        if not items and not want:
            if control is not None:
                control.future.set_result(None)
            return
        try:
            seqs, checkpoint, seal = self._write(items, want_checkpoint=want)
        except BaseException as exc:
            waiting: list[Future[Any] | _Waiter | _AsyncWaiter] = [
                *futures,
                *([control.future] if control else []),
            ]
            for future in waiting:
                future.set_exception(self._failure(exc, len(items)))
            if not isinstance(exc, Exception):
                raise
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for future, seq in zip(futures, seqs, strict=True):
            if isinstance(future, _AsyncWaiter):
                by_loop.setdefault(future.loop, []).append((future.future, seq, None))
            else:
                future.set_result(seq)
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(_settle, results)
        if seal is not None and self._anchor is not None:
            if not want:
                self._anchor.submit(*seal)  # off this thread: commits never wait for it
            elif control is not None:
                try:
                    self._anchor.seal(*seal)
                except (Error, OSError) as exc:
                    error = AuditError(f"the checkpoint was signed but not anchored ({exc})")
                    control.future.set_exception(error)
                    return
        if control is not None:
            control.future.set_result(checkpoint)

    @staticmethod
    def _failure(exc: BaseException, count: int) -> Exception:
        if isinstance(exc, (AuditError, ConfigError)):
            return exc
        error = AuditError(f"could not write {count} audit entries ({type(exc).__name__})")
        error.__cause__ = exc
        return error

    def _write(
        self, items: Sequence[_Item], *, want_checkpoint: bool
    ) -> tuple[range, Checkpoint | None, _Seal | None]:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
        cursor = self._conn.cursor()
        seal: _Seal | None = None
        try:
            if self._sql.begin_write:
                cursor.execute(self._sql.begin_write)
            seqs, state, checkpoint, newest = self._append(
                cursor, items, want_checkpoint=want_checkpoint, write_locked=True
            )
            if newest is not None and self._anchor is not None:
                cursor.execute(self._sql.count_checkpoints_upto, (newest.tree_size,))
                (held,) = cursor.fetchone()
                seal = (newest.tree_size, newest.root, int(held))
            self._conn.commit()
        except BaseException:
            cursor.close()
            self._release_connection(ok=False)
            raise
        cursor.close()
        self._state = state
        return seqs, checkpoint, seal

    def _release_connection(self, *, ok: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if ok:
                conn.close()
            else:
                conn.invalidate()  # never reuse a connection whose transaction failed
        except Exception:  # noqa: S110 - the connection is being thrown away either way
            pass

    # -- the one chaining code path -----------------------------------------------------

    def _append(
        self,
        cursor: DBAPICursor,
        items: Sequence[_Item],
        *,
        want_checkpoint: bool,
        write_locked: bool,
    ) -> tuple[range, _State, Checkpoint | None, Checkpoint | None]:
        """Chain ``items`` onto the locked head and write them, all in the open transaction.

        Returns the seqs, the new state, the checkpoint at the head (if one was asked for or
        signed there) and the newest checkpoint this batch signed or asked for.
        """
        sql = self._sql
        first, chain = self._lock_head(cursor, write_locked=write_locked)
        state = self._state
        fresh = want_checkpoint and self._anchor is not None  # re-check against the anchor
        if state is not None and state.seq == first and state.chain == chain and not fresh:
            frontier = state.frontier.copy()
        else:
            frontier = self._rebuild(cursor, first, chain)
        seq, sha = first, _sha256
        rows: list[tuple[Any, ...]] = []
        leaves: list[bytes] = []
        for ts, actor, action, resource, outcome, details in items:
            seq += 1
            leaf = sha(
                f"\0{seq}\0{ts}\0{actor}\0{action}\0{resource}\0{outcome}\0{details}".encode()
            ).digest()
            chain = sha(chain + leaf).digest()
            rows.append((seq, ts, actor, action, resource, outcome, details, chain))
            leaves.append(leaf)
        signed = self._fold(frontier, leaves)
        checkpoint = signed[-1][0] if signed and signed[-1][0].tree_size == seq else None
        if want_checkpoint and checkpoint is None:
            if seq == 0:
                raise ConfigError("the audit log is empty: there is nothing to checkpoint")
            cursor.execute(sql.checkpoint_at, (seq,))
            existing = cursor.fetchone()
            if existing is not None:
                checkpoint = _checkpoint_of(existing)
            else:
                signed.append(self._sign(frontier))
                checkpoint = signed[-1][0]
        if rows:
            cursor.executemany(sql.insert_entry, rows)
            cursor.execute(sql.update_head, (seq, chain))
        if signed:
            cursor.executemany(
                sql.insert_checkpoint,
                [
                    (
                        c.tree_size,
                        c.root,
                        c.ts,
                        c.key_id,
                        c.signature,
                        nodes,
                        self._sealed(c, nodes),
                    )
                    for c, nodes in signed
                ],
            )
        newest = checkpoint or (signed[-1][0] if signed else None)
        return range(first + 1, seq + 1), _State(seq, chain, frontier), checkpoint, newest

    def _lock_head(self, cursor: DBAPICursor, *, write_locked: bool) -> tuple[int, bytes]:
        """Lock and read the head row, creating it in an empty log.

        The no-op insert also takes SQLite's write lock at once, for a caller's transaction
        that began deferred; the writer's ``BEGIN IMMEDIATE`` already holds it.
        """
        sql = self._sql
        if self._state is None or not write_locked:
            cursor.execute(sql.ensure_head, (_ZERO,))
        cursor.execute(sql.lock_head)
        head = cursor.fetchone()
        if head is None:
            cursor.execute(sql.ensure_head, (_ZERO,))
            cursor.execute(sql.lock_head)
            head = cursor.fetchone()
        if head is None:
            raise AuditError("the audit head row cannot be created")
        return int(head[0]), bytes(head[1])

    def _fold(self, frontier: Frontier, leaves: list[bytes]) -> list[_Signed]:
        """Add leaves to the frontier, signing a checkpoint at each multiple of the interval."""
        signed: list[_Signed] = []
        start, every = 0, self._every
        while (take := every - frontier.size % every) <= len(leaves) - start:
            frontier.extend(leaves[start : start + take])
            start += take
            signed.append(self._sign(frontier))
        frontier.extend(leaves[start:] if start else leaves)
        return signed

    def _sealed(self, checkpoint: Checkpoint, frontier: str) -> bytes:
        """The row MAC of a checkpoint row as stored."""
        c = checkpoint
        row = {"tree_size": c.tree_size, "root": c.root, "ts": c.ts, "key_id": c.key_id}
        return self._rows.mac(
            "audit_checkpoints", dict(row, signature=c.signature, frontier=frontier)
        )

    def _sign(self, frontier: Frontier) -> _Signed:
        key_id = self._keys.active_signing_key()
        draft = Checkpoint(frontier.size, frontier.root(), _now(), key_id, b"")
        signature = self._keys.sign(key_id, draft.message())
        checkpoint = Checkpoint(draft.tree_size, draft.root, draft.ts, key_id, signature)
        return checkpoint, json.dumps(frontier.to_hex(), separators=(",", ":"))

    def _rebuild(self, cursor: DBAPICursor, head_seq: int, head_chain: bytes) -> Frontier:
        """The frontier at the head: the newest checkpoint's, plus the rows after it.

        With an anchor the log must also extend it: hold at least its entries, and if the
        newest checkpoint lies before it (checkpoints deleted), the rows replayed from there
        must reach its root. A checkpoint at or after the anchor is signed, so it is the
        writer's own and needs no more. Otherwise the writer refuses to append or sign.
        """
        sql = self._sql
        anchor: Anchor | None = None
        where = Path(ANCHOR_FILE)
        if self._anchor is not None:
            where = self._anchor.path
            try:
                anchor = self._anchor.load()
            except Error:
                raise _refuse_anchor(where) from None
            if anchor.tree_size > head_seq:
                raise _refuse_anchor(where)
        cursor.execute(sql.latest_checkpoint_upto, (head_seq,))
        row = cursor.fetchone()
        frontier, prev = Frontier(), _ZERO
        if row is not None:
            checkpoint = _checkpoint_of(row)
            try:
                checkpoint.verify(self._keys)
                frontier = Frontier.from_hex(checkpoint.tree_size, json.loads(row[5]))
            except (IntegrityError, ConfigError, ValueError, TypeError):
                raise _refuse(head_seq) from None
            cursor.execute(sql.chain_at, (checkpoint.tree_size,))
            at = cursor.fetchone()
            if frontier.root() != checkpoint.root or at is None:
                raise _refuse(head_seq)
            prev = bytes(at[0])
        check_at, anchored = -1, b""
        if anchor is not None and anchor.tree_size >= frontier.size:
            check_at, anchored = anchor.tree_size, anchor.root
            if check_at == frontier.size and frontier.root() != anchored:
                raise _refuse_anchor(where)
        cursor.execute(sql.rows_after, (frontier.size,))
        expected, sha = frontier.size + 1, _sha256
        while rows := cursor.fetchmany(4096):
            for seq, ts, actor, action, resource, outcome, details, chain in rows:
                leaf = _leaf_hash(seq, ts, actor, action, resource, outcome, details)
                prev = sha(prev + leaf).digest()
                if seq != expected or prev != bytes(chain):
                    raise _refuse(head_seq)
                frontier.append(leaf)
                expected += 1
                if expected - 1 == check_at and frontier.root() != anchored:
                    raise _refuse_anchor(where)
        if expected - 1 != head_seq or prev != head_chain:
            raise _refuse(head_seq)
        return frontier

    # -- reading ------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """``(last seq, last chain value)`` as the head row says; ``(0, zeros)`` when empty."""
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql(self._sql.read_head).first()
        return (0, _ZERO) if row is None else (int(row[0]), bytes(row[1]))

    def entries(
        self,
        *,
        start: int = 1,
        limit: int = 50,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries with ``seq >= start`` in seq order, optionally filtered."""
        if type(start) is not int or start < 0:
            raise ConfigError(f"start: expected a non-negative integer, got {start!r}")
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise ConfigError(f"limit: expected 1..10000, got {limit!r}")
        t = audit_log.c
        query = select(audit_log).where(t.seq >= start)
        if actor is not None:
            query = query.where(t.actor == actor)
        if action is not None:
            query = query.where(t.action == action)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(t.seq).limit(limit)).all()
        return [
            AuditEntry(
                int(r.seq),
                r.ts,
                r.actor,
                r.action,
                r.resource,
                r.outcome,
                r.details,
                bytes(r.chain),
            )
            for r in rows
        ]

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint, oldest first (as stored: :meth:`verify` checks them)."""
        return self._read_checkpoints(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size)
        )

    def latest_checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint with the largest tree size, if any."""
        found = self._read_checkpoints(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size.desc()).limit(1)
        )
        return found[0] if found else None

    def _read_checkpoints(self, query: Any) -> list[Checkpoint]:
        with self._engine.connect() as conn:
            return [_checkpoint_of(row) for row in conn.execute(query)]

    # -- verification -------------------------------------------------------------------

    def verify(
        self,
        *,
        checkpoint: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Recompute the chain, every checkpoint and the head; raise AuditChainError if any fail.

        ``checkpoint`` names an exported checkpoint file: its signature must verify under the
        keyring, the log must still hold its ``tree_size`` entries (else it was truncated)
        and their Merkle root must equal its root (else the history was forked).
        With an anchor file (every workspace has one) no exported checkpoint is needed to
        find deleted checkpoints, truncation or a rewritten history up to the anchor: its
        signature must verify, the log must hold its ``tree_size`` entries with its root,
        and as many checkpoint rows up to it as it counts.
        ``progress(done, total)`` is called after each range of entries.
        The error's ``problems`` attribute lists every :class:`AuditProblem` found.
        """
        exported, problems = _load_exported(checkpoint, self._keys)
        anchor = None  # read before the snapshot: the file never runs ahead of the rows
        if self._anchor is not None:
            anchor, found = _load_anchor(self._anchor)
            problems += found
        cuts = [c.tree_size for c in (exported, anchor) if c is not None]
        try:
            scan, stored, heads = self._scan(cuts, progress)
        except self._db_errors as exc:
            problems.append(AuditProblem("unreadable", None, f"cannot read the audit log: {exc}"))
            raise _chain_error(problems) from exc
        problems += scan.problems
        problems += _check_checkpoints(scan, stored, self._keys)
        problems += _check_exported(scan, exported)
        problems += _check_anchor(scan, stored, anchor)
        problems += _check_head(scan, heads)
        if problems:
            raise _chain_error(problems)
        return VerifyReport(
            scan.rows,
            len(stored),
            scan.last_seq,
            scan.frontier.root().hex(),
            exported.tree_size if exported else None,
            anchor.tree_size if anchor else None,
        )

    def _scan(
        self,
        extra_cuts: Sequence[int],
        progress: Callable[[int, int], None] | None,
    ) -> tuple[_Scan, list[Any], list[Any]]:
        """Read everything in one snapshot and walk the entries."""
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._sql.begin_snapshot)
            cursor.execute("SELECT id, seq, chain FROM audit_head")
            heads = list(cursor.fetchall())
            cursor.execute(
                "SELECT tree_size, root, ts, key_id, signature, frontier"
                " FROM audit_checkpoints ORDER BY tree_size"
            )
            stored = list(cursor.fetchall())
            cursor.execute("SELECT count(*), min(seq), max(seq) FROM audit_log")
            count, low, high = cursor.fetchone() or (0, None, None)
            cuts = [row[0] for row in stored] + list(extra_cuts)
            walk = _Walk(cursor, self._sql, cuts, int(count), progress)
            reader = raw.cursor()
            walk.run(low, high, reader)
            reader.close()
            cursor.close()
        finally:
            raw.rollback()
            raw.close()
        return walk.result(), stored, heads


if TYPE_CHECKING:  # mypy proves that the log is what services are given

    def _is_a_sink(log: AuditLog) -> AuditSink:
        return log


# -- verification internals -----------------------------------------------------------------

_MAX_PROBLEMS = 10_000


def _chain_error(problems: list[AuditProblem]) -> AuditChainError:
    return AuditChainError(
        f"the audit log failed verification: {len(problems)} problem(s), first:"
        f" {problems[0].message}",
        problems,
    )


def _load_exported(
    path: Path | None, keys: KeyProvider
) -> tuple[Checkpoint | None, list[AuditProblem]]:
    """The exported checkpoint if its signature holds, else the problem with it."""
    if path is None:
        return None, []
    try:
        return read_checkpoint(path, keys), []
    except UnknownKeyError:
        why = "export-key", f"{path}: signed by a key that is not in the keyring"
    except IntegrityError:
        why = "export-signature", f"{path}: the signature does not verify"
    return None, [AuditProblem(why[0], None, why[1])]


@dataclass(frozen=True, slots=True)
class _Scan:
    """What a walk over all entries found: the inputs of the checks that follow it."""

    rows: int
    last_seq: int
    last_chain: bytes
    frontier: Frontier
    roots: dict[int, tuple[bytes, list[str]]]  # tree size -> (root, frontier as stored)
    problems: list[AuditProblem]


class _Walk:
    """One pass over every entry in seq order: chain, gaps, leaves, frontier at the cuts."""

    def __init__(
        self,
        cursor: DBAPICursor,
        sql: _Sql,
        cuts: Iterable[int],
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.cursor, self.sql, self.total, self.progress = cursor, sql, total, progress
        self.cuts = sorted({c for c in cuts if isinstance(c, int) and 0 <= c <= total})
        self.cut_at = 0
        self.nodes_at: dict[int, tuple[bytes, ...]] = {}
        self.frontier = Frontier()
        self.prev = _ZERO
        self.expected = 1
        self.rows = 0
        self.last_seq = 0
        self.problems: list[AuditProblem] = []
        self.dropped = 0

    def problem(self, kind: str, seq: int | None, message: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(AuditProblem(kind, seq, message))
        else:
            self.dropped += 1

    def run(self, low: Any, high: Any, reader: DBAPICursor) -> None:
        """Walk the whole log: fast ranges when seqs are 1..count, else row by row."""
        total = self.total
        if total and low == 1 and high == total:
            self.run_dense(total, reader)
        elif total:
            after = min(0, low - 1) if isinstance(low, int) else 0
            while (last := self.slow_rows(after, _VERIFY_RANGE)) is not None:
                after = last
                if self.progress is not None:
                    self.progress(min(self.rows, total), total)
        if self.rows != total:
            self.problem("malformed", None, f"{total - self.rows} entries have no usable seq")
        if self.dropped:
            self.problems.append(
                AuditProblem("more", None, f"{self.dropped} more problems not listed")
            )

    def run_dense(self, end: int, reader: DBAPICursor) -> None:
        """Check entries ``1..end`` range by range, re-reading row by row any that misses."""
        ranges = [(lo, min(lo + _VERIFY_RANGE, end)) for lo in range(0, end, _VERIFY_RANGE)]
        ahead = _Prefetch(reader, self.sql.verify_range, ranges)
        try:
            for lo, hi in ranges:
                if ahead.running:
                    row = ahead.next()
                else:
                    self.cursor.execute(self.sql.verify_range, (lo, hi))
                    row = self.cursor.fetchone()
                if not self.fast_range(lo, hi, row):
                    ahead.stop()  # the slow path needs the connection to itself
                    self.slow_rows(lo, hi - lo)
                if self.progress is not None:
                    self.progress(hi, self.total)
        finally:
            ahead.stop()

    def fast_range(self, lo: int, hi: int, row: Any) -> bool:
        """Check entries ``lo+1..hi`` from one aggregated row; False if anything is off."""
        n, sha = hi - lo, _sha256
        if not isinstance(row, (tuple, list)):
            return False
        try:
            seq_text, *columns, chains, shortest, longest = row
            if shortest != 32 or longest != 32 or len(chains) != 32 * n:
                return False
            if seq_text != ",".join(map(str, range(lo + 1, hi + 1))):
                return False
            parts = [bytes(column).split(_RS) for column in columns]
            if any(len(p) != n for p in parts):
                return False
            seqs = seq_text.encode().split(b",")
            leaves = [sha(data).digest() for data in map(_NUL.join, zip(repeat(b""), seqs, *parts))]
        except (TypeError, ValueError, AttributeError):
            return False
        prev, computed = self.prev, list[bytes]()
        add = computed.append
        for leaf in leaves:
            prev = sha(prev + leaf).digest()
            add(prev)
        if b"".join(computed) != bytes(chains):
            return False
        self.prev, self.expected, self.rows, self.last_seq = prev, hi + 1, self.rows + n, hi
        self.feed(leaves)
        return True

    def slow_rows(self, after: Any, limit: int) -> Any:
        """Check up to ``limit`` entries after seq ``after`` one by one; the last seq read."""
        self.cursor.execute(self.sql.verify_rows, (after, limit))
        rows = self.cursor.fetchall()
        if not rows:
            return None
        sha, leaves = _sha256, []
        for row in rows:
            seq, fields, stored = row[0], row[1:7], row[7]
            stored = bytes(stored) if isinstance(stored, (bytes, memoryview)) else None
            gap = False
            if type(seq) is not int:
                self.problem("malformed", None, f"an entry has a non-integer seq {seq!r}")
                leaves.append(sha(b"\xff" + repr(row).encode()).digest())
                continue
            if seq > self.expected:
                first, last = self.expected, seq - 1
                span = f"entry {first} is" if first == last else f"entries {first}..{last} are"
                self.problem("missing", first, f"{span} missing (deleted)")
                gap = True
            elif seq < self.expected:
                self.problem("inserted", seq, f"entry {seq} is out of sequence")
            try:
                leaf = sha(_NUL.join((b"", b"%d" % seq, *map(bytes, fields)))).digest()
            except TypeError:
                self.problem("malformed", seq, f"entry {seq} has a missing or non-text field")
                leaf = sha(b"\xff" + repr(row).encode()).digest()
            chain = sha(self.prev + leaf).digest()
            if chain != stored:
                if not gap:  # after a gap the break is the gap's, already reported
                    self.problem(
                        "edited",
                        seq,
                        f"entry {seq} does not match its chain value"
                        " (edited, inserted or reordered)",
                    )
                if stored is not None and len(stored) == 32:
                    chain = stored  # resynchronise, so that one edit is one problem
            self.prev, self.expected = chain, max(self.expected, seq + 1)
            self.last_seq = seq
            leaves.append(leaf)
        self.rows += len(rows)
        self.feed(leaves)
        return rows[-1][0]

    def feed(self, leaves: list[bytes]) -> None:
        """Fold leaves into the frontier, noting its nodes at every cut on the way."""
        start, cuts, frontier = 0, self.cuts, self.frontier
        while self.cut_at < len(cuts):
            take = cuts[self.cut_at] - frontier.size
            if take > len(leaves) - start:
                break
            frontier.extend(leaves[start : start + take])
            start += take
            self.nodes_at[cuts[self.cut_at]] = frontier.nodes
            self.cut_at += 1
        frontier.extend(leaves[start:] if start else leaves)

    def result(self) -> _Scan:
        """What the walk found, for the checks that follow it."""
        roots = {}
        for size, nodes in self.nodes_at.items():
            at = Frontier(size, nodes)
            roots[size] = (at.root(), at.to_hex())
        return _Scan(self.rows, self.last_seq, self.prev, self.frontier, roots, self.problems)


class _Prefetch:
    """Runs the next ranges' aggregate queries on a second cursor while the caller hashes.

    The database does that work with the GIL released, so it overlaps the hashing.
    """

    def __init__(self, cursor: DBAPICursor, statement: str, ranges: list[tuple[int, int]]):
        self._rows: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(cursor, statement, ranges),
            name="bastion-audit-verify",
            daemon=True,
        )
        self._thread.start()
        self.running = True

    def _run(self, cursor: DBAPICursor, statement: str, ranges: list[tuple[int, int]]) -> None:
        try:
            for lo, hi in ranges:
                if self._stop.is_set():
                    return
                cursor.execute(statement, (lo, hi))
                self._rows.put(cursor.fetchone())
        except Exception as exc:  # the caller re-reads that range itself, and sees it fail
            self._rows.put(exc)

    def next(self) -> Any:
        """The next range's row, or the exception that reading it raised."""
        return self._rows.get()

    def stop(self) -> None:
        """Stop reading ahead and wait for the thread, so the connection is free again."""
        self.running = False
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._rows.get(timeout=0.05)
        self._thread.join()


def _check_checkpoints(
    scan: _Scan, stored: Sequence[Sequence[Any]], keys: KeyProvider
) -> list[AuditProblem]:
    """Each stored checkpoint: signed by a keyring key, and its root is the log's root."""
    problems: list[AuditProblem] = []
    good = 0  # the largest tree size whose signed root matched: edits lie after it
    for row in stored:
        try:
            checkpoint, nodes = _checkpoint_of(row), json.loads(row[5])
        except (TypeError, ValueError):
            problems.append(AuditProblem("checkpoint-malformed", None, f"checkpoint {row[0]!r}"))
            continue
        size, signed = checkpoint.tree_size, False
        try:
            checkpoint.verify(keys)
            signed = True
        except UnknownKeyError:
            why = f"is signed by key {checkpoint.key_id!r}, which is not in the keyring"
            problems.append(AuditProblem("checkpoint-key", size, f"checkpoint {size} {why}"))
        except IntegrityError:
            why = "has a signature that does not verify"
            problems.append(AuditProblem("checkpoint-signature", size, f"checkpoint {size} {why}"))
        found = scan.roots.get(size)
        if size > scan.rows:
            why = f"covers more entries than the log holds ({scan.rows}): entries were removed"
            problems.append(AuditProblem("truncated", size, f"checkpoint {size} {why}"))
        elif found is None:
            problems.append(AuditProblem("checkpoint-malformed", size, f"checkpoint {size}"))
        elif found[0] != checkpoint.root:
            why = f"were changed after checkpoint {size} was signed (its Merkle root differs)"
            problems.append(
                AuditProblem("checkpoint-root", size, f"entries {good + 1}..{size} {why}")
            )
        elif nodes != found[1]:
            why = "has a stored frontier that does not match the entries"
            problems.append(AuditProblem("checkpoint-frontier", size, f"checkpoint {size} {why}"))
        elif signed:
            good = size
    return problems


def _check_exported(scan: _Scan, exported: Checkpoint | None) -> list[AuditProblem]:
    """An exported checkpoint: the log still holds its entries (truncation) and its root (fork)."""
    if exported is None:
        return []
    size = exported.tree_size
    if size > scan.rows:
        why = f"covers {size} entries but the log holds {scan.rows}: entries were removed"
        return [AuditProblem("truncated", size, f"the exported checkpoint {why}")]
    if scan.roots[size][0] != exported.root:
        why = "differ from the exported checkpoint: the history was rewritten (forked)"
        return [AuditProblem("fork", size, f"entries 1..{size} {why}")]
    return []


def _load_anchor(keeper: AnchorKeeper) -> tuple[Anchor | None, list[AuditProblem]]:
    """The sealed anchor if its signature holds, else the problem with it."""
    try:
        return keeper.load(), []
    except UnknownKeyError:
        why = "anchor-key", f"{keeper.path}: signed by a key that is not in the keyring"
    except SignatureError:
        why = "anchor-signature", f"{keeper.path}: the signature does not verify (edited)"
    except IntegrityError as exc:
        why = "anchor", str(exc)
    return None, [AuditProblem(why[0], None, why[1])]


def _check_anchor(
    scan: _Scan, stored: Sequence[Sequence[Any]], anchor: Anchor | None
) -> list[AuditProblem]:
    """The log extends the sealed anchor: its entries, its root, its checkpoint rows."""
    if anchor is None:
        return []
    size, problems = anchor.tree_size, []
    found = scan.roots.get(size)
    if size > scan.rows or (size and found is None):
        why = f"covers {size} entries but the log holds {scan.rows}: entries were removed"
        problems.append(AuditProblem("truncated", size, f"the anchor {why}"))
    elif size and found is not None and found[0] != anchor.root:
        why = "differ from the anchor's signed tree head: the history was rewritten"
        problems.append(AuditProblem("fork", size, f"entries 1..{size} {why}"))
    held = sum(1 for row in stored if isinstance(row[0], int) and row[0] <= size)
    if held < anchor.checkpoints:
        why = (
            f"{anchor.checkpoints - held} of the {anchor.checkpoints} checkpoints signed up to"
            f" entry {size} are missing: checkpoint rows were deleted"
        )
        problems.append(AuditProblem("checkpoint-deleted", size, why))
    return problems


def _check_head(scan: _Scan, heads: Sequence[Sequence[Any]]) -> list[AuditProblem]:
    """The head row names the last entry and its chain value."""
    problems = [
        AuditProblem("head", None, f"unexpected head row id {row[0]!r}")
        for row in heads
        if row[0] != 1
    ]
    head = next((row for row in heads if row[0] == 1), None)
    if head is None:
        if scan.rows:
            problems.append(AuditProblem("head", None, "the head row is missing"))
        return problems
    seq, chain = head[1], bytes(head[2])
    if seq != scan.last_seq:
        why = f"says the log ends at {seq} but it ends at {scan.last_seq}"
        problems.append(AuditProblem("head", seq, f"the head {why}: entries were removed or added"))
    elif chain != scan.last_chain:
        why = f"chain value does not match the last entry ({seq})"
        problems.append(AuditProblem("head", seq, f"the head's {why}"))
    return problems
