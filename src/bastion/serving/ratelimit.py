"""Rate limits per principal and daily query budgets per (scope, principal).

A token bucket per principal holds up to ``burst`` tokens and refills at ``rate`` tokens a
second. ``cost`` is the number of **rows** a request predicts (one query each), so a
100-row batch costs 100: both the bucket and the budget count queries, which is what model
extraction needs. The budget is counted per ``scope`` (the server passes the deployment:
extraction is per model) and principal, and each call may give its own ``budget`` (the
deployment's, or the principal's own); without one the limiter's ``daily_budget`` applies.
A request is admitted when the bucket holds ``cost`` tokens and, with a budget, the
principal's rows in that scope today (UTC day) plus ``cost`` stay within it. The bucket is
one per principal across every scope. Refusals take nothing. ``retry_after`` is exact:
``(cost - tokens) / rate`` seconds for the bucket, the seconds to the next UTC midnight for
the budget. A ``cost`` above ``burst`` can never be admitted: it is refused with
``retry_after = inf`` (the server should cap batches at ``burst``).

:class:`MemoryRateLimiter` keeps state in process memory, O(1) per call; a bucket idle long
enough to be full again is indistinguishable from a new one, so it is evicted (memory stays
bounded by the principals active within ``burst / rate`` seconds, plus one budget counter
per (scope, principal) seen today, cleared at midnight). :class:`RedisRateLimiter` runs the
same algorithm atomically in one Lua script (``EVALSHA``) on Redis time, so any number of
replicas enforce one limit; its keys expire (the bucket when it would be full, the budget
after its day). :func:`rate_limiter_from_env` picks Redis when ``BASTION_REDIS_URL`` is set.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.errors import ConfigError

#: Rows a principal may query per UTC day unless ``--daily-budget`` says otherwise: 10,000
#: is about three hours of one analyst's interactive use at a request a second, and caps
#: what a thief whose queries look benign (real rows replayed from a public pool) learns
#: per token and day (docs/extraction-detection.md). The CLI and ``ServeOptions`` both
#: default to it; ``None`` turns the budget off.
DEFAULT_DAILY_BUDGET = 10_000

__all__ = [
    "DAY_SECONDS",
    "DEFAULT_DAILY_BUDGET",
    "Decision",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "rate_limiter_from_env",
]

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed; if not, why (``"rate"`` or ``"budget"``) and when."""

    allowed: bool
    retry_after: float
    reason: str | None


class RateLimiter(Protocol):
    """What the server calls once per request.

    ``scope`` keys the daily budget (the deployment); ``budget`` is this call's budget in
    rows, ``None`` for the limiter's own ``daily_budget``.
    """

    async def acquire(
        self, principal: str, cost: int = 1, *, scope: str = "", budget: int | None = None
    ) -> Decision: ...


def _check(rate: float, burst: int, daily_budget: int | None) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ConfigError(f"rate: expected a finite number > 0 (tokens per second), got {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"burst: expected an integer >= 1, got {burst!r}")
    if daily_budget is not None and (
        isinstance(daily_budget, bool) or not isinstance(daily_budget, int) or daily_budget < 1
    ):
        raise ConfigError(f"daily_budget: expected an integer >= 1 or None, got {daily_budget!r}")


def _cost(cost: int) -> int:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ConfigError(f"cost: expected an integer >= 1, got {cost!r}")
    return cost


def _budget(budget: int | None, default: int | None) -> int | None:
    """This call's budget: ``budget`` when given (an integer >= 1), else ``default``."""
    if budget is None:
        return default
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget: expected an integer >= 1 or None, got {budget!r}")
    return budget


class MemoryRateLimiter:
    """Token buckets and daily budgets in process memory; see the module docstring."""

    def __init__(
        self,
        rate: float,
        burst: int,
        daily_budget: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        _check(rate, burst, daily_budget)
        self.rate = float(rate)
        self.burst = burst
        self.daily_budget = daily_budget
        self._clock = clock
        self._wall = wall
        self._full_after = burst / self.rate
        # principal -> (tokens, last refill time); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._day = -1
        self._used: dict[tuple[str, str], int] = {}  # (scope, principal) -> rows today

    async def acquire(
        self, principal: str, cost: int = 1, *, scope: str = "", budget: int | None = None
    ) -> Decision:
        """Admit or refuse one request of ``cost`` rows (see :class:`RateLimiter`)."""
        return self.acquire_sync(principal, cost, scope=scope, budget=budget)

    def acquire_sync(
        self, principal: str, cost: int = 1, *, scope: str = "", budget: int | None = None
    ) -> Decision:
        """The same as :meth:`acquire`, for synchronous callers."""
        cost = _cost(cost)
        limit = _budget(budget, self.daily_budget)
        now = self._clock()
        self._evict(now)
        if cost > self.burst:
            return Decision(False, math.inf, "rate")
        key = (scope, principal)
        if limit is not None:
            wall = self._wall()
            day = int(wall // DAY_SECONDS)
            if day != self._day:
                self._day, self._used = day, {}
            if self._used.get(key, 0) + cost > limit:
                return Decision(False, (day + 1) * DAY_SECONDS - wall, "budget")
        tokens, last = self._buckets.pop(principal, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[principal] = (tokens, now)
            return Decision(False, (cost - tokens) / self.rate, "rate")
        self._buckets[principal] = (tokens - cost, now)
        if limit is not None:
            self._used[key] = self._used.get(key, 0) + cost
        return Decision(True, 0.0, None)

    def _evict(self, now: float) -> None:
        # Amortised O(1): the oldest buckets sit first; a bucket untouched for
        # burst / rate seconds is full again, the same as one never created.
        while self._buckets:
            _, (_, last) = next(iter(self._buckets.items()))
            if now - last < self._full_after:
                break
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        """Buckets held in memory (for tests and metrics)."""
        return len(self._buckets)


# KEYS[1] bucket hash (per principal), KEYS[2] budget prefix (per scope and principal).
# ARGV: rate, burst, budget (0 = none), cost, now (seconds; empty = Redis TIME).
# Returns {allowed, retry_after as a string, reason}.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now
if ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
if cost > burst then
  return {0, 'inf', 'rate'}
end
local day = math.floor(now / 86400)
local bkey = KEYS[2] .. ':' .. day
local used = 0
if budget > 0 then
  used = tonumber(redis.call('GET', bkey) or '0')
  if used + cost > budget then
    return {0, tostring((day + 1) * 86400 - now), 'budget'}
  end
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
else
  now = ts
end
local ttl = math.ceil(burst / rate) + 1
if tokens < cost then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], ttl)
  return {0, tostring((cost - tokens) / rate), 'rate'}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
if budget > 0 then
  redis.call('INCRBY', bkey, cost)
  redis.call('EXPIRE', bkey, math.ceil((day + 1) * 86400 - now) + 3600)
end
return {1, '0', ''}
"""


class RedisRateLimiter:
    """The same limits shared by every replica through Redis; see the module docstring.

    ``clock`` (seconds since the epoch) replaces Redis' own time; for tests only.
    """

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        daily_budget: int | None = None,
        *,
        prefix: str = "bastion:rl:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        _check(rate, burst, daily_budget)
        import redis.asyncio as aioredis  # imported here: only Redis deployments need it

        self.rate = float(rate)
        self.burst = burst
        self.daily_budget = daily_budget
        self.prefix = prefix
        self._clock = clock
        self._redis: Any = aioredis.from_url(url)
        self._script: Any = self._redis.register_script(_LUA)

    def _keys(self, principal: str, scope: str) -> list[str]:
        # Hashed (fixed length, any bytes) and hash-tagged (one cluster slot per principal,
        # so the bucket and every scope's budget of one principal meet in one script).
        tag = hashlib.sha256(principal.encode()).hexdigest()[:32]
        day = f"{self.prefix}{{{tag}}}:day"
        if scope:
            day += ":" + hashlib.sha256(scope.encode()).hexdigest()[:32]
        return [f"{self.prefix}{{{tag}}}:tb", day]

    async def acquire(
        self, principal: str, cost: int = 1, *, scope: str = "", budget: int | None = None
    ) -> Decision:
        """Admit or refuse one request of ``cost`` rows, atomically across replicas."""
        cost = _cost(cost)
        limit = _budget(budget, self.daily_budget)
        now = "" if self._clock is None else repr(float(self._clock()))
        args = [repr(self.rate), self.burst, limit or 0, cost, now]
        keys = self._keys(principal, scope)
        allowed, retry, reason = await self._script(keys=keys, args=args)
        text = retry.decode() if isinstance(retry, bytes) else str(retry)
        why = reason.decode() if isinstance(reason, bytes) else str(reason)
        return Decision(bool(allowed), float(text), why or None)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def rate_limiter_from_env(
    rate: float, burst: int, daily_budget: int | None, *, namespace: str = ""
) -> RateLimiter:
    """A :class:`RedisRateLimiter` when ``BASTION_REDIS_URL`` is set, else in memory.

    Redis keys start with ``BASTION_REDIS_PREFIX`` (default ``bastion:rl:``) followed by
    ``namespace``, so separate limits (or separate test runs) never share a bucket.
    """
    url = os.environ.get("BASTION_REDIS_URL")
    if url:
        prefix = os.environ.get("BASTION_REDIS_PREFIX") or "bastion:rl:"
        return RedisRateLimiter(url, rate, burst, daily_budget, prefix=prefix + namespace)
    return MemoryRateLimiter(rate, burst, daily_budget)
