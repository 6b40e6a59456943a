"""Blocked principals at the server: enforced from the database, shared through Redis.

The record is the ``blocks`` table (``ws.block_store``: every row MAC'd, every block and
lift audited). The server keeps the active blocks in memory and refuses their principals
with 403 and a body a client can quote to the model owner, without detector internals::

    {"error": "blocked", "code": "EXTRACTION_SUSPECTED", "block_id": "<id>",
     "message": "ask the model owner to review block <id>"}

On start the active blocks are loaded (:meth:`Blocklist.load`); then, at most every
``refresh`` seconds, the next request re-reads them, so a block an admin lifted
(``bastion blocks lift``) lets its principal in again within seconds, and a block another
replica wrote is enforced here too. A row whose MAC does not check stays enforced.

With ``BASTION_REDIS_URL`` set (as for the rate limits), active blocks are also mirrored in
one Redis hash (``<prefix>blocks``: SHA-256 of the principal → ``{"id", "code"}``) that
every replica reads on each request, so a block is shared at once. Redis is a cache: the
database stays the record; an entry is removed when the database shows its block lifted,
never because Redis says so. If Redis does not answer, the request is refused with 503
(fail closed, as the shared rate limit does).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.serving.metrics import ControlMetrics
from bastion.serving.requests import RequestRefused

__all__ = [
    "CODES",
    "MONITOR",
    "BlockMirror",
    "Blocked",
    "Blocklist",
    "CodedRefusal",
    "Held",
    "block_mirror_from_env",
]

log = logging.getLogger("bastion.serving")

MONITOR = "extraction-monitor"
"""Who a block of the extraction monitor is recorded as made by."""
CODES: dict[str, tuple[int, str]] = {
    "EXTRACTION_SUSPECTED": (403, "blocked: queries that look like model extraction"),
    "EXTRACTION_THROTTLED": (429, "throttled to a tenth of the rate after an extraction alarm"),
    "RATE_LIMITED": (429, "the rate limit; retry after Retry-After seconds"),
    "DAILY_BUDGET_EXHAUSTED": (429, "the daily query budget; retry after the next UTC midnight"),
}
"""The stable reason codes a refused client is given: code → (status, meaning). The
block codes are those of :data:`bastion.security.blocks.CODES`, which the store checks."""


class _Store(Protocol):
    """What the server needs of ``ws.block_store`` (:mod:`bastion.security.blocks`)."""

    def block(self, principal: str, code: str, detail: Mapping[str, Any], *, actor: str) -> Any:
        """Write (or return the active) block of ``principal``, audited."""

    def enforced(self) -> Mapping[str, Any]:
        """Principal → active block (rows that do not check count as active)."""

    def lifted(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are genuinely lifted."""


@dataclass(frozen=True, slots=True)
class Held:
    """One enforced block: its id (the client's reference) and reason code."""

    id: str
    code: str


class CodedRefusal(RequestRefused):
    """A refusal whose body carries a stable reason ``code`` (:data:`CODES`) and ``extra``
    fields; the server adds ``body`` to the answer after ``error``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        decision: str,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, decision=decision, headers=headers)
        self.body: dict[str, str] = {"code": code, **(extra or {})}


class Blocked(CodedRefusal):
    """403 for a blocked principal: the code and the block id, no detector internals."""

    def __init__(self, held: Held) -> None:
        super().__init__(
            403,
            "blocked",
            held.code,
            decision="extraction_blocked",
            extra={
                "block_id": held.id,
                "message": f"ask the model owner to review block {held.id}",
            },
        )


def _field(principal: str) -> str:
    return hashlib.sha256(principal.encode()).hexdigest()


class BlockMirror:
    """Active blocks in one Redis hash, shared by the replicas (see the module docstring)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis  # imported here: only Redis deployments need it

        self.key = f"{prefix}blocks"
        self._redis: Any = aioredis.from_url(url)

    async def get(self, principal: str) -> Held | None:
        raw = await self._redis.hget(self.key, _field(principal))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return Held(str(doc["id"]), str(doc["code"]))
        except (ValueError, KeyError, TypeError):  # not ours: still a block (fail closed)
            return Held("unknown", "BLOCKED")

    async def put(self, principal: str, held: Held) -> None:
        value = json.dumps({"id": held.id, "code": held.code})
        await self._redis.hset(self.key, _field(principal), value)

    async def ids(self) -> dict[str, str]:
        """Field → block id of every entry."""
        out: dict[str, str] = {}
        for name, raw in (await self._redis.hgetall(self.key)).items():
            try:
                out[name.decode() if isinstance(name, bytes) else str(name)] = str(
                    json.loads(raw)["id"]
                )
            except (ValueError, KeyError, TypeError):
                continue
        return out

    async def drop(self, fields: Iterable[str]) -> None:
        names = list(fields)
        if names:
            await self._redis.hdel(self.key, *names)

    async def aclose(self) -> None:
        await self._redis.aclose()


def block_mirror_from_env() -> BlockMirror | None:
    """A :class:`BlockMirror` when ``BASTION_REDIS_URL`` is set (keys under
    ``BASTION_REDIS_PREFIX``, default ``bastion:rl:``), else None."""
    url = os.environ.get("BASTION_REDIS_URL")
    if not url:
        return None
    return BlockMirror(url, os.environ.get("BASTION_REDIS_PREFIX") or "bastion:rl:")


class Blocklist:
    """The blocked principals, enforced first among the controls (403, see above).

    Without a ``store`` (tests of the controls alone) blocks live in memory only.
    ``on_lift`` is called with each principal whose block was lifted (the server forgets
    its monitor history, so the principal starts afresh).
    """

    def __init__(
        self,
        counters: ControlMetrics,
        store: _Store | None = None,
        *,
        mirror: BlockMirror | None = None,
        refresh: float = 2.0,
        on_lift: Callable[[str], None] | None = None,
    ) -> None:
        self._counters = counters
        self._store = store
        self._mirror = mirror
        self._refresh = refresh
        self.on_lift = on_lift
        self._held: dict[str, Held] = {}
        self._next = 0.0
        self._lock = asyncio.Lock()

    @property
    def principals(self) -> set[str]:
        """The principals blocked now (as this server last read them)."""
        return set(self._held)

    def load(self) -> None:
        """Read the active blocks from the database (at start, before serving)."""
        if self._store is not None:
            self._replace(self._store.enforced())
            self._next = time.monotonic() + self._refresh

    def _replace(self, active: Mapping[str, Any]) -> None:
        fresh = {p: Held(b.id, b.code) for p, b in active.items()}
        for principal in set(self._held) - set(fresh):
            log.warning("block of principal %s lifted; it may query again", principal)
            if self.on_lift is not None:
                self.on_lift(principal)
        self._held = fresh

    async def _maybe_refresh(self) -> None:
        if self._store is None or time.monotonic() < self._next:
            return
        async with self._lock:
            if time.monotonic() < self._next:
                return  # another request refreshed while this one waited
            self._next = time.monotonic() + self._refresh
            store = self._store
            try:
                mirrored = await self._mirror.ids() if self._mirror is not None else {}
                self._replace(await asyncio.to_thread(store.enforced))
                if mirrored:
                    gone = await asyncio.to_thread(store.lifted, set(mirrored.values()))
                    await self._mirror_drop([f for f, i in mirrored.items() if i in gone])
            except Exception as exc:  # a database hiccup: keep enforcing what we hold
                log.warning("could not re-read the blocks (keeping the last ones): %s", exc)

    async def _mirror_drop(self, fields: list[str]) -> None:
        if self._mirror is not None and fields:
            await self._mirror.drop(fields)

    async def check(self, caller: Any, deployment: str, columns: Any) -> None:
        await self._maybe_refresh()
        principal = caller.principal
        held = self._held.get(principal)
        if held is None and self._mirror is not None:
            try:
                held = await self._mirror.get(principal)
            except Exception as exc:  # Redis down: fail closed, as the shared limiter does
                raise RequestRefused(
                    503, "block list unavailable", decision="blocklist_unavailable"
                ) from exc
        if held is not None:
            self._counters.blocked.inc()
            raise Blocked(held)

    async def block(self, principal: str, code: str, detail: Mapping[str, Any]) -> Held:
        """Record a block (database, then Redis) and enforce it from now on."""
        if self._store is not None:
            store = self._store
            record = await asyncio.to_thread(store.block, principal, code, detail, actor=MONITOR)
            held = Held(record.id, record.code)
        else:
            held = Held(secrets.token_hex(8), code)
        self._held[principal] = held
        if self._mirror is not None:
            try:
                await self._mirror.put(principal, held)
            except Exception as exc:  # the database has it: the replicas read it in seconds
                log.warning("could not mirror block %s in Redis: %s", held.id, exc)
        return held

    async def aclose(self) -> None:
        if self._mirror is not None:
            await self._mirror.aclose()
