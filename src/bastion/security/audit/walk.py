"""One pass over every entry of the log, in seq order: chain, gaps, leaves, roots at cuts.

It reads entries in ranges of 16,384 aggregated into one row per column by the database
(``group_concat`` / ``string_agg``, run one range ahead on a second thread while this one
hashes), so Python only splits, joins and hashes; any range that does not check out this
way is re-read row by row to name each problem precisely. The walk records the Merkle
frontier at every cut (each stored, exported or anchored tree size) for the checks of
:mod:`.verifier`.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine.interfaces import DBAPICursor

from bastion.security.audit.entry import ZERO, chain_hash, chain_hashes, leaf_hashes
from bastion.security.audit.storage import Sql
from bastion.security.merkle import Frontier

__all__ = ["AuditProblem", "Prefetch", "Scan", "Walk"]

_VERIFY_RANGE = 16_384
_MAX_PROBLEMS = 10_000
_RS = b"\x1e"  # separates entries inside one aggregated column in verify's fast path


def _unusable(row: Any) -> bytes:
    """A stand-in leaf for a row that cannot be encoded: never an entry's leaf hash."""
    return hashlib.sha256(b"\xff" + repr(row).encode()).digest()


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One finding of :meth:`AuditLog.verify`. ``seq`` names the entry or tree size."""

    kind: str
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class Scan:
    """What a walk over all entries found: the inputs of the checks that follow it."""

    rows: int
    last_seq: int
    last_chain: bytes
    frontier: Frontier
    roots: dict[int, tuple[bytes, list[str]]]  # tree size -> (root, frontier as stored)
    problems: list[AuditProblem]


class Walk:
    """One pass over every entry in seq order: chain, gaps, leaves, frontier at the cuts."""

    def __init__(
        self,
        cursor: DBAPICursor,
        sql: Sql,
        cuts: Iterable[int],
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.cursor, self.sql, self.total, self.progress = cursor, sql, total, progress
        self.cuts = sorted({c for c in cuts if isinstance(c, int) and 0 <= c <= total})
        self.cut_at = 0
        self.nodes_at: dict[int, tuple[bytes, ...]] = {}
        self.frontier = Frontier()
        self.prev = ZERO
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
        ahead = Prefetch(reader, self.sql.verify_range, ranges)
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
        n = hi - lo
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
            leaves = leaf_hashes(seqs, *parts)
        except (TypeError, ValueError, AttributeError):
            return False
        computed = chain_hashes(self.prev, leaves)
        if b"".join(computed) != bytes(chains):
            return False
        prev = computed[-1] if computed else self.prev
        self.prev, self.expected, self.rows, self.last_seq = prev, hi + 1, self.rows + n, hi
        self.feed(leaves)
        return True

    def slow_rows(self, after: Any, limit: int) -> Any:
        """Check up to ``limit`` entries after seq ``after`` one by one; the last seq read."""
        self.cursor.execute(self.sql.verify_rows, (after, limit))
        rows = self.cursor.fetchall()
        if not rows:
            return None
        leaves: list[bytes] = []
        for row in rows:
            seq, fields, stored = row[0], row[1:7], row[7]
            stored = bytes(stored) if isinstance(stored, (bytes, memoryview)) else None
            gap = False
            if type(seq) is not int:
                self.problem("malformed", None, f"an entry has a non-integer seq {seq!r}")
                leaves.append(_unusable(row))
                continue
            if seq > self.expected:
                first, last = self.expected, seq - 1
                span = f"entry {first} is" if first == last else f"entries {first}..{last} are"
                self.problem("missing", first, f"{span} missing (deleted)")
                gap = True
            elif seq < self.expected:
                self.problem("inserted", seq, f"entry {seq} is out of sequence")
            try:
                leaf = leaf_hashes((b"%d" % seq,), *([bytes(f)] for f in fields))[0]
            except TypeError:
                self.problem("malformed", seq, f"entry {seq} has a missing or non-text field")
                leaf = _unusable(row)
            chain = chain_hash(self.prev, leaf)
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

    def result(self) -> Scan:
        """What the walk found, for the checks that follow it."""
        roots = {}
        for size, nodes in self.nodes_at.items():
            at = Frontier(size, nodes)
            roots[size] = (at.root(), at.to_hex())
        return Scan(self.rows, self.last_seq, self.prev, self.frontier, roots, self.problems)


class Prefetch:
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
