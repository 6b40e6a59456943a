"""Rate limits and budgets: bursts are refused with an exact Retry-After, refill over time,
budgets reset at UTC midnight, principals are isolated, and Redis replicas share a limit."""

from __future__ import annotations

import asyncio
import math
import os
import secrets

import pytest

from bastion.errors import ConfigError
from bastion.serving.ratelimit import (
    DAY_SECONDS,
    Decision,
    MemoryRateLimiter,
    RedisRateLimiter,
    rate_limiter_from_env,
)

REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_burst_then_refusal_with_exact_retry_after() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(rate=2.0, burst=5, clock=clock)
    for _ in range(5):
        assert rl.acquire_sync("alice") == Decision(True, 0.0, None)
    refused = rl.acquire_sync("alice")
    assert refused == Decision(False, 0.5, "rate")
    assert rl.acquire_sync("alice", cost=3) == Decision(False, 1.5, "rate")


def test_refill_over_injected_time() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(rate=2.0, burst=5, clock=clock)
    assert run(rl.acquire("alice", cost=5)).allowed
    clock.t += 0.49
    assert not rl.acquire_sync("alice").allowed
    clock.t += 0.01
    assert rl.acquire_sync("alice").allowed
    clock.t += 100
    assert rl.acquire_sync("alice", cost=5).allowed  # refill caps at burst
    assert not rl.acquire_sync("alice").allowed


def test_cost_above_burst_is_never_admitted() -> None:
    rl = MemoryRateLimiter(rate=1.0, burst=10, clock=Clock())
    assert rl.acquire_sync("a", cost=11) == Decision(False, math.inf, "rate")


def test_daily_budget_resets_at_utc_midnight() -> None:
    clock = Clock()
    day = 20_000 * DAY_SECONDS
    wall = Clock(day + DAY_SECONDS - 10.0)  # 10 s before midnight UTC
    rl = MemoryRateLimiter(rate=1000.0, burst=100, daily_budget=7, clock=clock, wall=wall)
    assert rl.acquire_sync("alice", cost=5).allowed
    assert rl.acquire_sync("alice", cost=2).allowed
    refused = rl.acquire_sync("alice")
    assert refused.reason == "budget"
    assert refused.retry_after == pytest.approx(10.0)
    assert rl.acquire_sync("bob", cost=7).allowed  # budgets are per principal
    wall.t += 10.0
    clock.t += 10.0
    assert rl.acquire_sync("alice", cost=7).allowed


def test_principals_are_isolated() -> None:
    rl = MemoryRateLimiter(rate=1.0, burst=2, clock=Clock())
    assert rl.acquire_sync("alice", cost=2).allowed
    assert not rl.acquire_sync("alice").allowed
    assert rl.acquire_sync("bob", cost=2).allowed


def test_idle_buckets_are_evicted() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(rate=10.0, burst=10, clock=clock)
    for i in range(1000):
        rl.acquire_sync(f"p{i}")
    assert len(rl) == 1000
    clock.t += 1.0  # every bucket is full again
    rl.acquire_sync("new")
    assert len(rl) == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": 0, "burst": 1}, "rate"),
        ({"rate": float("nan"), "burst": 1}, "rate"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "burst": 1, "daily_budget": 0}, "daily_budget"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        MemoryRateLimiter(**kwargs)


def test_bad_cost_is_refused() -> None:
    with pytest.raises(ConfigError, match="cost"):
        MemoryRateLimiter(1, 1).acquire_sync("a", cost=0)


def test_from_env_picks_memory_or_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_REDIS_URL", raising=False)
    assert isinstance(rate_limiter_from_env(1.0, 1, None), MemoryRateLimiter)
    monkeypatch.setenv("BASTION_REDIS_URL", REDIS_URL)
    assert isinstance(rate_limiter_from_env(1.0, 1, None), RedisRateLimiter)


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=0.5).ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="Redis does not answer on 127.0.0.1:6379")


async def _cleanup(prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(match=prefix + "*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


@needs_redis
def test_two_redis_replicas_share_one_limit() -> None:
    prefix = f"bastion:test:{secrets.token_hex(8)}:"
    now = Clock(1_700_000_000.0)

    async def scenario() -> None:
        a = RedisRateLimiter(REDIS_URL, 2.0, 4, prefix=prefix, clock=now)
        b = RedisRateLimiter(REDIS_URL, 2.0, 4, prefix=prefix, clock=now)
        try:
            results = [await (a if i % 2 else b).acquire("alice") for i in range(4)]
            assert all(d.allowed for d in results)
            assert await a.acquire("alice") == Decision(False, 0.5, "rate")
            assert await b.acquire("alice", cost=2) == Decision(False, 1.0, "rate")
            assert (await b.acquire("bob", cost=4)).allowed
            now.t += 0.5
            assert (await b.acquire("alice")).allowed
            assert not (await a.acquire("alice")).allowed
        finally:
            await a.aclose()
            await b.aclose()
            await _cleanup(prefix)

    run(scenario())


@needs_redis
def test_redis_budget_and_concurrency() -> None:
    prefix = f"bastion:test:{secrets.token_hex(8)}:"
    day = 20_000 * DAY_SECONDS
    now = Clock(day + DAY_SECONDS - 30.0)

    async def scenario() -> None:
        a = RedisRateLimiter(REDIS_URL, 1000.0, 50, daily_budget=20, prefix=prefix, clock=now)
        b = RedisRateLimiter(REDIS_URL, 1000.0, 50, daily_budget=20, prefix=prefix, clock=now)
        try:
            got = await asyncio.gather(*[(a, b)[i % 2].acquire("alice") for i in range(40)])
            assert sum(d.allowed for d in got) == 20  # atomic: never over the budget
            refused = [d for d in got if not d.allowed]
            assert {d.reason for d in refused} == {"budget"}
            assert refused[0].retry_after == pytest.approx(30.0)
            now.t += 30.0
            assert (await a.acquire("alice", cost=20)).allowed
            # Keys carry TTLs.
            import redis.asyncio as aioredis

            r = aioredis.from_url(REDIS_URL)
            keys = [k async for k in r.scan_iter(match=prefix + "*")]
            assert keys and all([await r.ttl(k) > 0 for k in keys])
            await r.aclose()
        finally:
            await a.aclose()
            await b.aclose()
            await _cleanup(prefix)

    run(scenario())


@needs_redis
def test_redis_uses_server_time_by_default() -> None:
    prefix = f"bastion:test:{secrets.token_hex(8)}:"

    async def scenario() -> None:
        a = RedisRateLimiter(REDIS_URL, 0.001, 1, prefix=prefix)
        try:
            assert (await a.acquire("alice")).allowed
            refused = await a.acquire("alice")
            assert refused.reason == "rate" and 990 < refused.retry_after <= 1000
        finally:
            await a.aclose()
            await _cleanup(prefix)

    run(scenario())


def test_budget_is_counted_per_scope_and_principal() -> None:
    """Extraction is per model: a principal's rows on one deployment leave its budget on
    another untouched, while the token bucket stays one per principal across them."""
    clock = Clock()
    rl = MemoryRateLimiter(rate=1000.0, burst=10, clock=clock, wall=Clock(DAY_SECONDS * 9.5))
    assert rl.acquire_sync("alice", cost=5, scope="a", budget=5).allowed
    refused = rl.acquire_sync("alice", scope="a", budget=5)
    assert refused.reason == "budget" and refused.retry_after == pytest.approx(DAY_SECONDS / 2)
    assert rl.acquire_sync("alice", cost=5, scope="b", budget=5).allowed  # its own counter
    assert rl.acquire_sync("bob", cost=5, scope="a", budget=5).allowed  # per principal
    # the bucket is shared: alice spent 10 of 10 tokens on a and b together
    assert rl.acquire_sync("alice", scope="c", budget=5) == Decision(False, 0.001, "rate")


def test_budget_given_per_call_overrides_the_default() -> None:
    clock = Clock()
    rl = MemoryRateLimiter(rate=1000.0, burst=100, daily_budget=3, clock=clock)
    assert rl.acquire_sync("bulk", cost=50, budget=60).allowed  # its own, larger budget
    assert rl.acquire_sync("bulk", cost=10, budget=60).allowed
    assert rl.acquire_sync("bulk", budget=60).reason == "budget"
    assert rl.acquire_sync("alice", cost=3).allowed  # no budget given: the default, 3
    assert rl.acquire_sync("alice").reason == "budget"
    unlimited = MemoryRateLimiter(rate=1000.0, burst=100, clock=clock)
    for _ in range(5):
        assert unlimited.acquire_sync("alice", cost=100).allowed
        clock.t += 1.0
    assert unlimited.acquire_sync("alice", cost=2, budget=1).reason == "budget"


@pytest.mark.parametrize("budget", [0, -1, True, 2.5])
def test_bad_budget_per_call_is_refused(budget: object) -> None:
    with pytest.raises(ConfigError, match="budget"):
        MemoryRateLimiter(1, 1).acquire_sync("a", budget=budget)  # type: ignore[arg-type]


@needs_redis
def test_redis_budget_per_scope_and_per_call() -> None:
    prefix = f"bastion:test:{secrets.token_hex(8)}:"
    now = Clock(20_000 * DAY_SECONDS + 100.0)

    async def scenario() -> None:
        a = RedisRateLimiter(REDIS_URL, 1000.0, 50, daily_budget=4, prefix=prefix, clock=now)
        b = RedisRateLimiter(REDIS_URL, 1000.0, 50, daily_budget=4, prefix=prefix, clock=now)
        try:
            assert (await a.acquire("alice", cost=3, scope="m1", budget=3)).allowed
            assert (await b.acquire("alice", scope="m1", budget=3)).reason == "budget"
            assert (await b.acquire("alice", cost=3, scope="m2", budget=3)).allowed
            assert (await a.acquire("alice", cost=4)).allowed  # unscoped: the default 4
            assert (await b.acquire("alice")).reason == "budget"
            got = await asyncio.gather(
                *[(a, b)[i % 2].acquire("bob", scope="m1", budget=30) for i in range(40)]
            )
            assert sum(d.allowed for d in got) == 30  # atomic with a per-call budget
        finally:
            await a.aclose()
            await b.aclose()
            await _cleanup(prefix)

    run(scenario())
