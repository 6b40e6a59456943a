"""Extraction blocks a client can understand and an admin can lift (issue 12, item 5).

Real servers on loopback (``bastion serve`` subprocesses) over a copy of the session's
trained Adult home. A batch test of identical rows is never blocked; a uniform sweep is,
and the client's 403 names a reason code and a block id but no detector internals; the
block survives a restart; ``bastion blocks lift`` lets the client in again while the server
runs; a lift forged in the database is refused; with Redis two replicas share the block.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Home, copy_home, run_cli
from tests.integration.test_serving import ROW, Server, start
from tests.integration.test_serving_controls import (
    FAST,
    _with_env,
    audit_rows,
    consumer_token,
    uniform_rows,
)

REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BLOCK_BODY = {"error", "code", "block_id", "message"}
# for tests that send the one consumer more rows than the auto budget (100 a day on Adult)
BULK = ("--principal-budget", "svc-client=400")


@pytest.fixture
def served(adult_home: Home, tmp_path: Path) -> tuple[Home, str]:
    """A copy of the trained home (blocks persist: each test gets its own) and a consumer."""
    home = copy_home(adult_home, tmp_path / "home")
    return home, consumer_token(home, "svc-client")


def _sweep_until_blocked(srv: Server, token: str, seed: int = 11) -> dict[str, Any]:
    """Uniformly random probes, one row each, until the 403; its body."""
    for row in uniform_rows(400, np.random.default_rng(seed)):
        res = srv.post({"instances": [row]}, token)
        if res.status_code == 403:
            return dict(res.json())
        assert res.status_code == 200, res.text
    raise AssertionError("a uniform sweep of 400 probes was never blocked")


def _wait_for(srv: Server, token: str, status: int, seconds: float = 10.0) -> float:
    """Seconds until a single-row request gets ``status``; fails after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if srv.post({"instances": [ROW]}, token).status_code == status:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"no {status} within {seconds} s")


def test_two_hundred_identical_rows_never_block(served: tuple[Home, str]) -> None:
    home, token = served
    srv = start(home, *FAST, *BULK)
    try:
        res = srv.post({"instances": [ROW] * 200}, token)  # one batch
        assert res.status_code == 200, res.text
        codes = {srv.post({"instances": [ROW]}, token).status_code for _ in range(200)}
        assert codes == {200}  # and one by one
    finally:
        srv.stop()
    assert audit_rows(home, "serve.block") == []
    assert audit_rows(home, "serve.extraction_alarm") == []


def test_blocked_client_gets_a_code_restart_keeps_it_admin_lift_unblocks(
    served: tuple[Home, str],
) -> None:
    home, token = served
    srv = start(home, *FAST)
    try:
        body = _sweep_until_blocked(srv, token)
        assert set(body) == BLOCK_BODY, body  # no statistic, no threshold, no detector
        assert body["error"] == "blocked" and body["code"] == "EXTRACTION_SUSPECTED"
        block_id = body["block_id"]
        assert body["message"] == f"ask the model owner to review block {block_id}"
        again = srv.post({"instances": [ROW]}, token)
        assert again.status_code == 403 and again.json() == body
        error = httpx.get(srv.url + "/openapi.json", timeout=10).json()["components"]["schemas"]
        assert {"code", "block_id", "message"} <= set(error["Error"]["properties"])
    finally:
        srv.stop()
    listed = run_cli(["blocks", "list", "--json"], home.env())
    assert listed.code == 0, listed.err
    (blk,) = listed.json()["blocks"]
    assert (blk["id"], blk["principal"], blk["active"]) == (block_id, "svc-client", True)
    assert blk["detail"]["detector"] == "coverage" and blk["created_by"] == "extraction-monitor"

    srv = start(home, *FAST)  # a restart keeps the block
    try:
        res = srv.post({"instances": [ROW]}, token)
        assert res.status_code == 403 and res.json()["block_id"] == block_id
        lifted = run_cli(
            ["blocks", "lift", block_id, "--reason", "owner reviewed: a load test"], home.env()
        )
        assert lifted.code == 0, lifted.err
        assert f"lifted block {block_id}" in lifted.out
        assert _wait_for(srv, token, 200) < 8  # the running server notices within seconds
    finally:
        srv.stop()
    assert run_cli(["blocks", "list", "--json"], home.env()).json() == {"blocks": []}
    history = run_cli(["blocks", "list", "--all", "--json"], home.env()).json()["blocks"]
    assert [(b["id"], b["active"], b["lifted_by"]) for b in history] == [(block_id, False, "admin")]
    assert [a for a, _, _ in audit_rows(home, "serve.block")] == ["extraction-monitor"]
    unblocks = audit_rows(home, "serve.unblock")
    assert [(a, d["reason"]) for a, _, d in unblocks] == [("admin", "owner reviewed: a load test")]


def test_a_forged_lift_in_the_database_is_refused(served: tuple[Home, str]) -> None:
    home, token = served
    srv = start(home, *FAST)
    try:
        block_id = _sweep_until_blocked(srv, token)["block_id"]
        with sqlite3.connect(home.path / "bastion.db") as conn:  # no passphrase, no MAC
            conn.execute(
                "UPDATE blocks SET lifted = '2026-12-05T00:00:00+00:00', lifted_by = 'admin',"
                " lift_reason = 'forged' WHERE id = ?",
                (block_id,),
            )
        time.sleep(3)  # past the server's re-read of the blocks
        res = srv.post({"instances": [ROW]}, token)
        assert res.status_code == 403 and res.json()["block_id"] == block_id
    finally:
        srv.stop()
    srv = start(home, *FAST)  # and after a restart
    try:
        assert srv.post({"instances": [ROW]}, token).status_code == 403
    finally:
        srv.stop()
    res = run_cli(["blocks", "lift", block_id, "--reason", "launder it"], home.env())
    assert res.code == 1 and "does not match its MAC" in res.err
    refused = audit_rows(home, "row.refused")
    assert refused and all(d["table"] == "blocks" for _, _, d in refused)


def test_a_deleted_block_row_is_still_enforced_and_verify_reports_it(
    served: tuple[Home, str],
) -> None:
    home, token = served
    srv = start(home, *FAST)
    try:
        block_id = _sweep_until_blocked(srv, token, seed=12)["block_id"]
        with sqlite3.connect(home.path / "bastion.db") as conn:
            conn.execute("DELETE FROM blocks")
        time.sleep(3)  # past the server's re-read of the blocks
        res = srv.post({"instances": [ROW]}, token)
        assert res.status_code == 403 and res.json()["block_id"] == block_id
    finally:
        srv.stop()
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1
    problems = res.json()["problems"]
    assert any(p["subject"] == f"blocks:id={block_id}" for p in problems), problems


def test_a_consumer_cannot_list_or_lift_blocks(served: tuple[Home, str]) -> None:
    home, token = served
    res = run_cli(["blocks", "list"], home.env(BASTION_TOKEN=token))
    assert res.code == 1 and "may not serve:admin" in res.err
    res = run_cli(["blocks", "lift", "0" * 16, "--reason", "x"], home.env(BASTION_TOKEN=token))
    assert res.code == 1
    res = run_cli(["blocks", "lift", "not-an-id", "--reason", "x"], home.env())
    assert res.code == 2 and "block id: expected 16 lowercase hex digits" in res.err
    assert "Traceback" not in res.err


def test_throttle_mode_gives_its_code_in_the_429(served: tuple[Home, str]) -> None:
    home, token = served
    srv = start(home, "--rate", "1000", "--burst", "200", "--on-extraction", "throttle", *BULK)
    try:
        rows = uniform_rows(400, np.random.default_rng(5))
        for row in rows[:60]:  # the alarm comes at 50 distinct queries; throttle, no 403
            assert srv.post({"instances": [row]}, token).status_code == 200
        first = srv.post({"instances": rows[200:350]}, token)  # most of the throttled burst
        assert first.status_code == 200, first.text
        res = srv.post({"instances": rows[60:200]}, token)  # 140 rows: 100 a second refill
        assert res.status_code == 429, res.text
        assert res.json() == {"error": "rate limit exceeded", "code": "EXTRACTION_THROTTLED"}
    finally:
        srv.stop()
    assert audit_rows(home, "serve.block") == []


def test_two_replicas_share_a_block_through_redis(tmp_path: Path, served: tuple[Home, str]) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    home, token = served
    prefix = f"bastion-test-{secrets.token_hex(6)}:"
    env = {"BASTION_REDIS_URL": REDIS_URL, "BASTION_REDIS_PREFIX": prefix}
    # replica b: a copy of the home made before the block (its own database file; with
    # PostgreSQL both would share one), so only Redis can tell it about the block
    homes = [_with_env(home, env), _with_env(copy_home(home, tmp_path / "b"), env)]
    servers: list[Server] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            servers += pool.map(lambda h: start(h, *FAST), homes)
        block_id = _sweep_until_blocked(servers[0], token)["block_id"]
        res = servers[1].post({"instances": [ROW]}, token)  # at once, from Redis
        assert res.status_code == 403 and res.json()["block_id"] == block_id
        assert client.hlen(prefix + "blocks") == 1
        lifted = run_cli(["blocks", "lift", block_id, "--reason", "reviewed"], home.env())
        assert lifted.code == 0, lifted.err
        assert _wait_for(servers[0], token, 200) < 8
        assert _wait_for(servers[1], token, 200) < 8  # the entry left Redis
        assert client.hlen(prefix + "blocks") == 0
    finally:
        for srv in servers:
            srv.stop()
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    assert json.loads(json.dumps(audit_rows(home, "serve.unblock")))[0][0] == "admin"
