"""The audit log's front: record entries through one group-commit writer thread.

Group commit: :meth:`AuditLog.submit` queues an entry for one background writer thread and
returns a future (:meth:`AuditLog.record` is submit-and-wait, with a lighter waiter); the
writer drains the queue (up to 5,000 entries; when several callers are active it waits up
to 1 ms for more), writes them with one ``executemany`` and one commit, then resolves the
futures. How durable that commit is (on disk, or handed to the OS and on disk within 50 ms)
is :mod:`.durability`'s choice. If the write fails every future of the batch gets
:class:`~bastion.errors.AuditError` and nothing of the batch is visible (fail closed).
:meth:`AuditLog.record_in` runs the same chaining code (:mod:`.chain`) inside a caller's
transaction, for actions that must commit atomically with their entry. The sealed anchor
(:mod:`bastion.security.anchor`) is updated after every commit that signs a checkpoint
(once it is on disk) and on :meth:`AuditLog.close`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from bastion._fs import atomic_write
from bastion.errors import AuditError, ConfigError, Error
from bastion.security.audit.chain import ChainWriter, Seal
from bastion.security.audit.checkpoint import Checkpoint
from bastion.security.audit.durability import FLUSH_INTERVAL, Durability
from bastion.security.audit.entry import Item, validated
from bastion.security.audit.inline import write_now
from bastion.security.audit.verifier import VerifyReport, verify_log
from bastion.security.audit.waiters import (
    AsyncWaiter,
    Control,
    Message,
    Result,
    Waiter,
    drain,
    settle,
)
from bastion.security.keys import KeyProvider

if TYPE_CHECKING:
    from bastion.security.sink import AuditSink

__all__ = ["AuditLog"]


class AuditLog(ChainWriter):
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
        super().__init__(engine, keys, checkpoint_every, anchor)
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_batch = 1
        self._conn: Any = None  # the writer's pooled connection (record_now borrows it)
        self._writing = threading.Lock()  # held while a transaction or sync uses _conn
        self.durability = Durability(engine)  # fsync unless set_durability says otherwise

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
        self._send((validated(actor, action, resource, outcome, details), future))
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
        waiter = Waiter()
        self._send((validated(actor, action, resource, outcome, details), waiter))
        return waiter.wait()

    async def arecord(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """``record`` for asyncio code: tasks awaiting at once share one commit and one
        wake-up of their loop. A cancelled task's entry may still be written (never withdrawn)."""
        waiter = AsyncWaiter(asyncio.get_running_loop())
        self._send((validated(actor, action, resource, outcome, details), waiter))
        return await waiter.future

    def record_now(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int | None:
        """``record`` on the caller's thread, when that costs no wait: its seq, or None (then
        use :meth:`record` or :meth:`arecord`). See :mod:`.inline` for when and why."""
        item = validated(actor, action, resource, outcome, details)
        if not self._writing.acquire(blocking=False):
            return None  # the writer thread is committing
        try:
            return write_now(self, item)
        finally:
            self._writing.release()

    def record_in(
        self,
        conn: Connection,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry inside the caller's open transaction on ``conn``: it commits or
        rolls back with that work (record the transaction's other entries with this too)."""
        item = validated(actor, action, resource, outcome, details)
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

    def set_durability(self, mode: str, interval: float = FLUSH_INTERVAL) -> None:
        """``fsync`` (default) or ``flush``: see :mod:`.durability` for what each promises."""
        self.durability.choose(mode, interval)

    def flush(self) -> None:
        """Wait until every entry submitted before this call has been written or failed."""
        if self._thread is not None and not self._closed:
            self._call(Control("flush"))

    def checkpoint(self) -> Checkpoint:
        """Write queued entries, then sign a checkpoint at the head (or return the one there).

        Raises ConfigError when the log is empty.
        """
        checkpoint = self._call(Control("checkpoint"))
        if checkpoint is None:  # pragma: no cover - the writer always answers with one
            raise AuditError("the audit writer returned no checkpoint")
        return checkpoint

    def export_checkpoint(self, path: Path) -> Checkpoint:
        """Checkpoint the head and write it to ``path`` atomically, to keep elsewhere."""
        checkpoint = self.checkpoint()
        atomic_write(path, checkpoint.to_json(), mode=0o644)
        return checkpoint

    def close(self) -> None:
        """Write everything still queued, then stop the writer. Later records fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(Control("stop"))
        if thread is not None:
            thread.join()
            atexit.unregister(self.close)
        if self._anchor is not None:
            self._seal_head()
            self._anchor.close()

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

    def _send(self, message: Message) -> None:
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

    def _call(self, control: Control) -> Checkpoint | None:
        self._send(control)
        return control.future.result()

    def _run(self) -> None:
        stop = False
        try:
            while not stop:
                items: list[Item] = []
                futures: list[Future[int] | Waiter | AsyncWaiter] = []
                messages = drain(self._queue, self.durability.due_in(), self._last_batch > 1)
                self._last_batch = len(messages)
                for message in messages:
                    if isinstance(message, tuple):
                        if message[1].set_running_or_notify_cancel():
                            items.append(message[0])
                            futures.append(message[1])
                        continue
                    if message.kind == "stop":
                        stop = True
                        continue
                    with self._writing:
                        self._commit(items, futures, message)
                    items, futures = [], []
                with self._writing:
                    self._commit(items, futures, None)
                    if self.durability.needs_connection and self.durability.due_in() == 0.0:
                        self.durability.sync(self._conn)
                if not self.durability.needs_connection and self.durability.due_in() == 0.0:
                    self.durability.sync(None)  # SQLite's WAL file; inline commits go on
        finally:
            with self._writing:
                if self._conn is not None:
                    self.durability.sync(self._conn)
                self._release_connection(ok=True)

    def _commit(
        self,
        items: list[Item],
        futures: list[Future[int] | Waiter | AsyncWaiter],
        control: Control | None,
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
            waiting: list[Future[Any] | Waiter | AsyncWaiter] = [
                *futures,
                *([control.future] if control else []),
            ]
            for future in waiting:
                future.set_exception(self._failure(exc, len(items)))
            if not isinstance(exc, Exception):
                raise
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
        for future, seq in zip(futures, seqs, strict=True):
            if isinstance(future, AsyncWaiter):
                by_loop.setdefault(future.loop, []).append((future.future, seq, None))
            else:
                future.set_result(seq)
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(settle, results)
        if seal is not None and self._anchor is not None:
            self.durability.sync(self._conn)  # never anchor what is not on disk
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
        self, items: Sequence[Item], *, want_checkpoint: bool
    ) -> tuple[range, Checkpoint | None, Seal | None]:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
        self.durability.prepare(self._conn)
        cursor = self._conn.cursor()
        seal: Seal | None = None
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
            self.durability.committed()
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

    # -- verification -------------------------------------------------------------------

    def verify(
        self,
        *,
        checkpoint: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Recompute the chain, every checkpoint and the head; raise AuditChainError if any fail.

        ``checkpoint`` names an exported checkpoint file: its signature must verify under the
        keyring, and the log must still hold its ``tree_size`` entries with its Merkle root
        (else it was truncated or forked). The anchor file (every workspace has one) is
        checked the same way, and must count as many checkpoint rows up to it as the log
        holds. ``progress(done, total)`` is called after each range of entries. The error's
        ``problems`` attribute lists every :class:`AuditProblem` found.
        """
        return verify_log(self._engine, self._sql, self._keys, self._anchor, checkpoint, progress)


if TYPE_CHECKING:  # mypy proves that the log is what services are given

    def _is_a_sink(log: AuditLog) -> AuditSink:
        return log
