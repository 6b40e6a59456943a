"""The server's defenses against the real server (``bastion serve`` in a subprocess).

Rate limits and budgets (429 with an integer Retry-After; one limit shared by two replicas
through Redis), input screening against the training profile (reject → 422), output
hardening per deployment, and a model-extraction attack — uniform random queries inside
the schema — detected and then blocked (403) while a principal replaying ``adult.test``
raises no alarm. The Adult pipeline runs once for the module.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import PASSPHRASE, Home, copy_home
from tests.integration.test_serving import (
    PREDICT,
    RICH,
    ROW,
    Server,
    _token,
    ran,  # noqa: F401 - the module fixture: a copy of the session's Adult home
    start,
)

ROOT = Path(__file__).resolve().parents[2]
ADULT_TEST = ROOT / "examples" / "adult-income" / "data" / "adult.test"
COLUMNS = list(ROW)
REDIS_URL = "redis://127.0.0.1:6379/0"
EXTRACTION_BUDGET = 1_000
FAST = ("--rate", "100000", "--burst", "200")


def consumer_token(home: Home, principal: str) -> str:
    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return str(_token(ws, principal, "consumer", "deployment", "adult-income").token)


def audit_rows(home: Home, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    import sqlalchemy as sa

    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws, ws.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, outcome, details FROM audit_log WHERE action = :a"),
            {"a": action},
        ).all()
    return [(r.actor, r.outcome, json.loads(r.details)) for r in rows]


def benign_rows(n: int) -> list[dict[str, Any]]:
    """adult.test, label dropped, only the served columns, nulls as JSON null."""
    frame = pd.read_csv(ADULT_TEST, skipinitialspace=True, na_values="?").drop(columns="Y")
    rows = frame[COLUMNS].head(n).to_dict("records")
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]


def uniform_rows(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Queries drawn uniformly from the schema's ranges and categories (the served columns)."""
    import yaml

    schema = yaml.safe_load((ROOT / "examples" / "adult-income" / "pipeline.yaml").read_text())
    spec = schema["data"]["schema"]
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for name in COLUMNS:
            s = spec[name]
            if s["type"] in ("int", "float"):
                row[name] = int(rng.integers(int(s["min"]), int(s["max"]) + 1))
            else:
                row[name] = str(rng.choice(s["categories"]))
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def tokens(ran: Home) -> dict[str, str]:  # noqa: F811 - the imported fixture
    return {
        who: consumer_token(ran, f"svc-{who}")
        for who in ("limited", "screened", "thief", "analyst", "shared")
    }


def test_rate_limit_gives_429_with_integer_retry_after_then_budget(
    ran: Home,  # noqa: F811
    tokens: dict[str, str],
) -> None:
    srv = start(ran, "--rate", "2", "--burst", "5", "--daily-budget", "8")
    try:
        tok = tokens["limited"]
        too_big = srv.post({"instances": [ROW] * 6}, tok)
        assert too_big.status_code == 422 and "at most 5" in too_big.json()["error"]
        assert srv.post({"instances": [ROW] * 5}, tok).status_code == 200
        res = srv.post({"instances": [ROW]}, tok)
        assert res.status_code == 429, res.text
        assert res.headers["retry-after"].isdigit() and int(res.headers["retry-after"]) >= 1
        said = res.json()  # which limit, and the setting that raises it
        assert said["code"] == "RATE_LIMITED" and "at most 5 rows" in said["error"]
        assert "--rate" in said["error"] and "--burst" in said["error"]
        time.sleep(1.7)  # three rows refill at two a second
        assert srv.post({"instances": [ROW] * 3}, tok).status_code == 200
        res = srv.post({"instances": [ROW]}, tok)  # 8 rows used today: the budget is spent
        assert res.status_code == 429, res.text
        assert res.json()["error"].startswith("daily query budget exhausted")
        assert "--daily-budget" in res.json()["error"]
        assert 1 <= int(res.headers["retry-after"]) <= 86_400
    finally:
        srv.stop()
    decisions = [
        d["decision"] for actor, _, d in audit_rows(ran, "model.predict") if actor == "svc-limited"
    ]
    assert decisions == ["batch_too_large", "ok", "rate_limited", "ok", "budget_exhausted"]


def test_two_replicas_enforce_one_shared_limit_through_redis(
    ran: Home,  # noqa: F811
    tokens: dict[str, str],
    tmp_path: Path,
) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    prefix = f"bastion-test-{secrets.token_hex(6)}:"
    servers: list[Server] = []
    try:
        env = {"BASTION_REDIS_URL": REDIS_URL, "BASTION_REDIS_PREFIX": prefix}
        homes = [
            _with_env(copy_home(ran, tmp_path / f"replica{k}" / "home"), env) for k in range(2)
        ]
        with ThreadPoolExecutor(2) as pool:
            servers += pool.map(lambda h: start(h, "--rate", "0.01", "--burst", "6"), homes)
        codes = [
            servers[i % 2].post({"instances": [ROW]}, tokens["shared"]).status_code
            for i in range(8)
        ]
        assert codes == [200] * 6 + [429] * 2  # one bucket of 6 across both replicas
    finally:
        for srv in servers:
            srv.stop()
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


@dataclass
class _EnvHome(Home):
    """A home whose server gets extra environment variables."""

    extra: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.extra, **extra})


def _with_env(home: Home, extra: dict[str, str]) -> Home:
    return _EnvHome(home.path, home.token, extra)


def test_screening_reject_refuses_rows_unlike_training_but_passes_real_ones(
    ran: Home,  # noqa: F811
    tokens: dict[str, str],
) -> None:
    # 172 real rows from one principal: beyond the auto budget (100), which is not the point
    srv = start(ran, "--screen", "reject", *FAST, "--principal-budget", "svc-screened=1000")
    try:
        tok = tokens["screened"]
        # capital-loss 5000: inside the schema (0..99999), beyond anything in training
        res = srv.post({"instances": [ROW, {**ROW, "capital-loss": 5000}]}, tok)
        assert res.status_code == 422, res.text
        assert "instances[1]" in res.json()["error"]
        assert "outside the training range: capital-loss" in res.json()["error"]
        real = benign_rows(150)
        assert srv.post({"instances": real}, tok).status_code == 200
        for row in real[:20]:
            assert srv.post({"instances": [row]}, tok).status_code == 200
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
        assert "bastion_screen_rejected_total 1.0" in metrics
    finally:
        srv.stop()


def test_output_modes_reveal_only_what_the_deployment_allows(
    ran: Home,  # noqa: F811
    tmp_path: Path,
) -> None:
    modes = {
        "top_k": ["--output", "top_k", "--top-k", "1", "--decimals", "3"],
        "rounded": ["--output", "rounded", "--decimals", "1"],
        "noised": ["--output", "noised", "--noise-scale", "0.05", "--decimals", "2"],
    }
    homes = {mode: copy_home(ran, tmp_path / mode / "home") for mode in modes}
    with ThreadPoolExecutor(len(modes)) as pool:
        servers = dict(
            zip(modes, pool.map(lambda m: start(homes[m], *modes[m], *FAST), modes), strict=True)
        )
    try:
        bodies = {m: srv.post({"instances": [ROW, RICH]}, ran.token) for m, srv in servers.items()}
    finally:
        for srv in servers.values():
            srv.stop()
    preds = {}
    for mode, res in bodies.items():
        assert res.status_code == 200, res.text
        body = res.json()
        assert set(body) == {"predictions", "model"} and body["model"] == "adult-income:1"
        preds[mode] = body["predictions"]
        assert len(preds[mode]) == 2
    assert [p[0]["label"] for p in preds["top_k"]] == ["<=50K", ">50K"]
    assert all(len(p) == 1 and p[0]["score"] == round(p[0]["score"], 3) for p in preds["top_k"])
    for mode, decimals in (("rounded", 1), ("noised", 2)):
        for p in preds[mode]:
            assert set(p) == {"<=50K", ">50K"}
            assert all(0.0 <= v <= 1.0 and v == round(v, decimals) for v in p.values())
            assert abs(sum(p.values()) - 1.0) <= 0.1


def test_extraction_attack_is_detected_and_blocked_while_benign_replay_is_not(
    ran: Home,  # noqa: F811
    tokens: dict[str, str],
) -> None:
    # --on-extraction block is the default; the analyst's replay of 1,000 real rows gets a
    # budget of its own (the auto budget is 100 rows); the thief keeps the auto budget
    srv = start(ran, *FAST, "--principal-budget", f"svc-analyst={EXTRACTION_BUDGET}")
    thief, analyst = tokens["thief"], tokens["analyst"]
    benign = benign_rows(EXTRACTION_BUDGET)
    attack = uniform_rows(EXTRACTION_BUDGET, np.random.default_rng(7))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:

            def ask(row: dict[str, Any], token: str) -> int:
                return http.post(
                    PREDICT,
                    content=json.dumps({"instances": [row]}),
                    headers={"Authorization": f"Bearer {token}"},
                ).status_code

            detected_at = 0
            for i, row in enumerate(attack):
                code = ask(row, thief)
                if code == 403:
                    detected_at = i + 1
                    break
                assert code == 200
            assert 0 < detected_at <= EXTRACTION_BUDGET  # measured: 50 (coverage)
            assert ask(attack[0], thief) == 403  # blocked from then on
            assert ask(benign[0], thief) == 403

            # benign replay, single-row queries, four streams at once (group commit)
            def replay(chunk: list[dict[str, Any]]) -> list[int]:
                return [ask(row, analyst) for row in chunk]

            quarter = EXTRACTION_BUDGET // 4
            chunks = [benign[k * quarter : (k + 1) * quarter] for k in range(4)]
            with ThreadPoolExecutor(4) as pool:
                codes = [c for part in pool.map(replay, chunks) for c in part]
            assert codes == [200] * EXTRACTION_BUDGET
            # the default screening policy, flag: a row beyond the training range passes
            # (capital-loss 5000: the schema allows 99999, training never went past 4356)
            assert ask({**ROW, "capital-loss": 5000}, ran.token) == 200
            metrics = http.get("/metrics").text
    finally:
        srv.stop()
    assert 'bastion_extraction_alarms_total{action="block",reason="coverage"} 1.0' in metrics
    assert "bastion_extraction_blocked_total 2.0" in metrics
    alarms = audit_rows(ran, "serve.extraction_alarm")
    assert [(a, o, d["action"], d["queries"]) for a, o, d in alarms] == [
        ("svc-thief", "denied", "block", detected_at)
    ]
    predicts = audit_rows(ran, "model.predict")
    blocked = [d["decision"] for a, _, d in predicts if a == "svc-thief"]
    assert blocked[-3:] == ["extraction_blocked"] * 3
    flagged_total = [ln for ln in metrics.splitlines() if ln.startswith("bastion_screen_flagged")]
    assert flagged_total and float(flagged_total[0].split()[1]) >= 1  # adult.test has a few too
    flagged = [d for a, _, d in predicts if a == "admin" and "screen" in d]
    assert flagged[-1]["screen"]["flagged_rows"] == 1 and flagged[-1]["decision"] == "ok"


@pytest.mark.parametrize("action", ["throttle", "notify"])
def test_throttle_and_notify_actions_alert_without_blocking(action: str) -> None:
    """In process: the same guard the server builds, with the other two actions."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from bastion.monitoring.extraction import ExtractionMonitor
    from bastion.monitoring.screening import TrainingProfile
    from bastion.serving.auth import Caller
    from bastion.serving.controls import Blocklist, ExtractionGuard, RateLimit
    from bastion.serving.metrics import ControlMetrics
    from bastion.serving.ratelimit import MemoryRateLimiter
    from tests.unit.monitoring.test_screening import frame, schema

    # the profile the server builds: the training table, the served columns only
    served_profile = TrainingProfile.from_frame(
        frame("adult.data"), {c: schema()[c] for c in COLUMNS}, "Y"
    )
    counters = ControlMetrics(CollectorRegistry())
    limit = RateLimit(MemoryRateLimiter(1000, 200), 200, MemoryRateLimiter(100, 200), counters)
    blocklist = Blocklist(counters)
    audited: list[tuple[Any, ...]] = []

    async def audit(*entry: Any) -> None:
        audited.append(entry)

    guard = ExtractionGuard(
        {"adult-income": ExtractionMonitor(served_profile)},
        action,  # type: ignore[arg-type]
        audit=audit,
        blocklist=blocklist,
        rate_limit=limit,
        counters=counters,
    )
    thief = Caller("thief", ("consumer",), "token")

    async def attack() -> list[Any]:
        notes = []
        for row in uniform_rows(100, np.random.default_rng(3)):
            notes.append(await guard.check(thief, "adult-income", {k: [v] for k, v in row.items()}))
        return notes

    notes = asyncio.run(attack())
    assert {"extraction_alarm": "coverage"} in notes
    assert [(e[0], e[1], e[4]["action"]) for e in audited] == [
        ("thief", "serve.extraction_alarm", action)
    ]
    assert blocklist.principals == set()
    assert limit.throttled == ({"thief"} if action == "throttle" else set())
