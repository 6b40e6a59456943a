"""The server's blocklist against the real block store and a real Redis.

Redis is a cache of the database's blocks: an entry leaves it only when the database
shows its block lifted (never because an entry is unknown: fail closed), and a Redis that
does not answer refuses the request (503) rather than letting a blocked principal in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bastion import Workspace
from bastion.serving.auth import Caller
from bastion.serving.blocks import Blocked, Blocklist, BlockMirror, Held
from bastion.serving.metrics import ControlMetrics
from bastion.serving.requests import RequestRefused

REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DETAIL = {"deployment": "d", "detector": "coverage", "statistic": 0.9, "queries": 50}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _caller(name: str) -> Caller:
    return Caller(name, ("consumer",), "token")


@pytest.fixture
def prefix() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    name = f"bastion-test-{secrets.token_hex(6)}:"
    yield name
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)


def test_a_blocked_principal_gets_the_code_and_the_id_only() -> None:
    blocklist = Blocklist(ControlMetrics(CollectorRegistry()))
    held = run(blocklist.block("thief", "EXTRACTION_SUSPECTED", DETAIL))
    with pytest.raises(Blocked) as caught:
        run(blocklist.check(_caller("thief"), "d", {}))
    assert caught.value.status == 403 and caught.value.message == "blocked"
    assert caught.value.body == {
        "code": "EXTRACTION_SUSPECTED",
        "block_id": held.id,
        "message": f"ask the model owner to review block {held.id}",
    }
    assert run(blocklist.check(_caller("analyst"), "d", {})) is None


def test_redis_that_does_not_answer_refuses_with_503() -> None:
    pytest.importorskip("redis")
    blocklist = Blocklist(
        ControlMetrics(CollectorRegistry()), mirror=BlockMirror("redis://127.0.0.1:1/0", "x:")
    )
    with pytest.raises(RequestRefused) as caught:
        run(blocklist.check(_caller("anyone"), "d", {}))
    assert caught.value.status == 503 and caught.value.decision == "blocklist_unavailable"


def test_a_redis_entry_leaves_only_when_the_database_shows_it_lifted(
    workspace: Workspace, prefix: str
) -> None:
    async def scenario() -> tuple[set[str], set[str], set[str]]:
        mirror = BlockMirror(REDIS_URL, prefix)
        blocklist = Blocklist(
            ControlMetrics(CollectorRegistry()), workspace.block_store, mirror=mirror, refresh=0
        )
        lifted: list[str] = []
        blocklist.on_lift = lifted.append
        try:
            held = await blocklist.block("thief", "EXTRACTION_SUSPECTED", DETAIL)
            await mirror.put("stranger", Held("0123456789abcdef", "EXTRACTION_SUSPECTED"))
            await blocklist.check(_caller("nobody"), "d", {})  # a refresh: both entries stay
            before = set((await mirror.ids()).values())
            workspace.blocks.lift(held.id, reason="reviewed")
            await blocklist.check(_caller("nobody"), "d", {})  # the refresh sees the lift
            after = set((await mirror.ids()).values())
            with pytest.raises(Blocked):  # an entry unknown to the database still blocks
                await blocklist.check(_caller("stranger"), "d", {})
            await blocklist.check(_caller("thief"), "d", {})  # lifted: in again
            return before, after, set(lifted)
        finally:
            await blocklist.aclose()

    before, after, lifted = run(scenario())
    assert len(before) == 2 and "0123456789abcdef" in before
    assert after == {"0123456789abcdef"}
    assert lifted == {"thief"}
