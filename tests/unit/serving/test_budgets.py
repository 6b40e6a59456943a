"""Extraction-aware budgets: each deployment's daily budget is sized from the query count at
which its signed extraction audit copied the model, never from a guess; budgets are counted
per (deployment, principal); a principal's own budget overrides it; every budget that lets
one principal copy the model within a day is named in a warning."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bastion.audits.base import AuditResult
from bastion.errors import ConfigError, IntegrityError
from bastion.pipeline.verdict import Evaluation
from bastion.serving.auth import Caller
from bastion.serving.budgets import (
    AUTO,
    EXTRACTION_RESULT,
    Budget,
    auto_budget,
    check_budget_options,
    deployment_budget,
    parse_daily_budget,
    parse_principal_budgets,
    read_extraction_result,
)
from bastion.serving.controls import RateLimit
from bastion.serving.deployment import ServeOptions, check_options
from bastion.serving.metrics import ControlMetrics
from bastion.serving.ratelimit import DAY_SECONDS, DEFAULT_DAILY_BUDGET, MemoryRateLimiter
from bastion.serving.requests import RequestRefused

ADULT_COUNTS = [100, 300, 1000, 3000]


def extraction_result(
    reached: dict[str, int | None], counts: list[int] = ADULT_COUNTS
) -> dict[str, Any]:
    """The JSON the extraction audit stores (ExtractionAudit.measure's AuditResult, through
    to_json and a JSON round trip): per strategy its curve and queries_90pct."""
    hits = [q for q in reached.values() if q is not None]
    result = AuditResult(
        audit="extraction",
        values={
            "extraction_queries_90pct": float(min(hits) if hits else max(counts)),
            "extraction_fidelity": 0.95,
        },
        intervals={"extraction_fidelity": [0.94, 0.96]},
        details={
            "strategies": {
                name: {
                    "queries": list(counts),
                    "fidelity": [0.8] * len(counts),
                    "fidelity_ci": [[0.7, 0.9]] * len(counts),
                    "queries_90pct": q,
                }
                for name, q in reached.items()
            },
            "output": "label",
            "round": None,
            "evaluation_rows": 2000,
            "pool_rows": 5000,
            "lower_bound": not hits,
            "constant_fidelity": 0.76,
        },
    )
    return dict(json.loads(json.dumps(result.to_json())))


def test_auto_is_the_largest_count_at_which_no_strategy_reached_90pct() -> None:
    """The Adult example: the pool strategy copies the model at 300 queries."""
    budget = auto_budget(extraction_result({"pool": 300, "synthetic": None}))
    assert budget.rows == 100 and budget.copied_at == 300
    assert budget.reason == (
        "auto: the extraction audit copied this model to 90% agreement at 300 queries;"
        " none reached it at 100"
    )


def test_auto_takes_the_strategy_that_copies_soonest() -> None:
    budget = auto_budget(extraction_result({"pool": 3000, "synthetic": 1000}))
    assert (budget.rows, budget.copied_at) == (300, 1000)


def test_auto_is_half_the_smallest_count_when_that_already_copied_the_model() -> None:
    assert auto_budget(extraction_result({"pool": 100})).rows == 50
    tiny = auto_budget(extraction_result({"pool": 1}, counts=[1, 10]))
    assert tiny.rows == 1 and "half of 1" in tiny.reason  # at least one row


def test_auto_is_capped_at_the_default() -> None:
    counts = [1000, 20_000, 50_000]
    budget = auto_budget(extraction_result({"pool": 50_000}, counts=counts))
    assert budget.rows == DEFAULT_DAILY_BUDGET and "capped" in budget.reason


def test_auto_is_the_default_without_an_audit_or_when_none_reached_90pct() -> None:
    none = auto_budget(None)
    assert none.rows == DEFAULT_DAILY_BUDGET and none.copied_at is None
    assert "no extraction audit" in none.reason
    resisted = auto_budget(extraction_result({"pool": None, "synthetic": None}))
    assert resisted.rows == DEFAULT_DAILY_BUDGET and resisted.copied_at is None
    assert "within 3000 queries" in resisted.reason


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda r: r.pop("values"), "values"),
        (lambda r: r["details"].pop("lower_bound"), "lower_bound"),
        (lambda r: r["details"]["strategies"]["pool"].update(queries=[]), "pool.queries"),
        (lambda r: r["details"]["strategies"]["pool"].update(queries=[0, 5]), "pool.queries"),
        (lambda r: r["values"].update(extraction_queries_90pct=None), "extraction_queries_90pct"),
        (lambda r: r["values"].update(extraction_queries_90pct=0.5), "extraction_queries_90pct"),
        (lambda r: r["details"].update(strategies={}), "strategies"),
    ],
)
def test_a_result_that_is_not_an_extraction_result_is_refused_naming_the_field(
    damage: Any, field: str
) -> None:
    result = extraction_result({"pool": 300})
    damage(result)
    with pytest.raises(ConfigError, match=field):
        auto_budget(result, "adult-income:1")


def test_parse_daily_budget() -> None:
    assert parse_daily_budget("auto") == AUTO
    assert parse_daily_budget("250") == 250
    for bad in ("0", "-5", "many", "1.5", ""):
        with pytest.raises(ConfigError, match="--daily-budget"):
            parse_daily_budget(bad)


def test_parse_principal_budgets_names_the_flag_and_value() -> None:
    assert parse_principal_budgets(["svc-bulk=50000", "load=7"]) == {"svc-bulk": 50_000, "load": 7}
    for bad in ("svc-bulk", "svc-bulk=", "=5", "svc-bulk=0", "svc-bulk=-1", "svc-bulk=lots"):
        with pytest.raises(ConfigError, match=rf"--principal-budget '{bad}'"):
            parse_principal_budgets([bad])
    with pytest.raises(ConfigError, match="twice"):
        parse_principal_budgets(["a=1", "a=2"])


def test_unknown_principals_and_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="no principal named ghost"):
        check_budget_options(AUTO, {"ghost": 5, "svc": 5}, ["svc", "admin"])
    check_budget_options(AUTO, {"svc": 5}, ["svc"])
    # a JWT caller is oidc:<sub>, never a principal of the home: named as such, when the
    # server takes OIDC tokens; refused (naming why) when it does not
    check_budget_options(AUTO, {"oidc:batch-job": 5, "svc": 5}, ["svc"], oidc=True)
    with pytest.raises(ConfigError, match="oidc:batch-job: this server accepts no OIDC"):
        check_budget_options(AUTO, {"oidc:batch-job": 5}, ["svc"])
    with pytest.raises(ConfigError, match="expected oidc:<sub>"):
        check_budget_options(AUTO, {"oidc:": 5}, [], oidc=True)
    with pytest.raises(ConfigError, match="no principal named ghost"):
        check_budget_options(AUTO, {"ghost": 5, "oidc:x": 5}, [], oidc=True)
    with pytest.raises(ConfigError, match="--daily-budget"):
        check_options(["m"], ServeOptions(operator_token="x", daily_budget=0))
    with pytest.raises(ConfigError, match="--daily-budget"):
        check_options(["m"], ServeOptions(operator_token="x", daily_budget="always"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--principal-budget"):
        check_options(["m"], ServeOptions(operator_token="x", principal_budgets={"a": 0}))
    assert ServeOptions(operator_token="x").daily_budget == AUTO  # the API's default too


# -- from a verified evaluation, in a real workspace ----------------------------------------


def _evaluation(results: dict[str, str]) -> Evaluation:
    return Evaluation("sid", "m:1", "digest", True, [], None, results)


def test_the_budget_is_read_from_the_result_the_evaluation_names(workspace: Any) -> None:
    blob = json.dumps(extraction_result({"pool": 300, "synthetic": None})).encode()
    digest = workspace.store.put(blob, actor="admin", media_type="application/json").digest
    ev = _evaluation({EXTRACTION_RESULT: str(digest)})
    budget = deployment_budget(workspace, ev, "m:1", AUTO, {"svc-bulk": 50_000, "svc-a": 10})
    assert (budget.rows, budget.copied_at) == (100, 300)
    assert budget.for_principal("svc-bulk") == 50_000 and budget.for_principal("x") == 100
    assert budget.warnings == (
        "--principal-budget svc-bulk=50000 is at or above 300: one principal can copy this"
        " model within a day's budget (its extraction audit reached 90% agreement at 300"
        " queries)",
    )
    explicit = deployment_budget(workspace, ev, "m:1", 300, {})
    assert explicit.rows == 300 and explicit.reason == "--daily-budget 300"
    assert explicit.warnings[0].startswith("--daily-budget 300 is at or above 300")
    off = deployment_budget(workspace, ev, "m:1", None, {})
    assert off.rows is None and off.warnings[0].startswith("the daily budget is off")
    assert deployment_budget(workspace, ev, "m:1", 299, {}).warnings == ()
    plain = deployment_budget(workspace, _evaluation({}), "m:1", AUTO, {})
    assert plain.rows == DEFAULT_DAILY_BUDGET  # its evaluation has no extraction audit
    assert deployment_budget(workspace, None, "m:1", AUTO, {}).rows == DEFAULT_DAILY_BUDGET


def test_an_unreadable_extraction_result_refuses_the_start(workspace: Any) -> None:
    missing = _evaluation({EXTRACTION_RESULT: "ab" * 32})
    with pytest.raises(IntegrityError, match=r"refusing to serve m:1.*cannot be read"):
        read_extraction_result(workspace, missing, "m:1")
    digest = workspace.store.put(b'["not", "a result"]', actor="admin").digest
    with pytest.raises(IntegrityError, match="expected a JSON object"):
        read_extraction_result(workspace, _evaluation({EXTRACTION_RESULT: str(digest)}), "m:1")
    digest = workspace.store.put(b'{"values": {}}', actor="admin").digest
    with pytest.raises(IntegrityError, match="no budget is guessed"):
        deployment_budget(workspace, _evaluation({EXTRACTION_RESULT: str(digest)}), "m:1", 5, {})


# -- the rate-limit control: one budget per (deployment, principal) ---------------------------


def _check(rl: RateLimit, principal: str, deployment: str, rows: int) -> Any:
    """The refusal (a CodedRefusal for a 429, a RequestRefused for a 422), or None."""
    columns = {"x": [0] * rows}
    try:
        asyncio.run(rl.check(Caller(principal, ("consumer",), "token"), deployment, columns))
    except RequestRefused as exc:
        return exc
    return None


def test_each_deployment_has_its_own_budget_and_counter() -> None:
    wall = [DAY_SECONDS * 20_000.25]  # 06:00 UTC
    ticks = itertools.count()  # a second between calls: the bucket is always full again
    limiter = MemoryRateLimiter(1e6, 1000, clock=lambda: float(next(ticks)), wall=lambda: wall[0])
    throttled = MemoryRateLimiter(1e5, 1000)
    budgets = {
        "adult": Budget(100, "auto", 300, (), (("svc-bulk", 5000),)),
        "churn": Budget(40, "--daily-budget 40", None, (), (("svc-bulk", 5000),)),
    }
    rl = RateLimit(limiter, 1000, throttled, ControlMetrics(CollectorRegistry()), budgets)
    assert _check(rl, "alice", "adult", 100) is None
    refused = _check(rl, "alice", "adult", 1)  # her 101st row on adult
    assert refused is not None and refused.status == 429
    assert refused.body == {"code": "DAILY_BUDGET_EXHAUSTED"}
    assert refused.message == (
        "daily query budget exhausted: 100 rows per principal per UTC day on adult (the"
        " server's --daily-budget); it resets at 00:00 UTC, retry after 64800 s"
    )
    assert refused.headers == {"Retry-After": "64800"}
    assert _check(rl, "alice", "churn", 40) is None  # another model: its own counter
    assert _check(rl, "alice", "churn", 1) is not None
    assert _check(rl, "bob", "adult", 100) is None  # another principal
    assert _check(rl, "svc-bulk", "adult", 1000) is None  # its own budget
    assert _check(rl, "svc-bulk", "churn", 1000) is None  # on every deployment
    for _ in range(4):
        assert _check(rl, "svc-bulk", "adult", 1000) is None
    bulk = _check(rl, "svc-bulk", "adult", 1)
    assert bulk is not None and "5000 rows" in bulk.message and "--principal-budget" in bulk.message
    wall[0] += DAY_SECONDS * 0.75  # the next UTC day
    assert _check(rl, "alice", "adult", 100) is None
    never = _check(rl, "carol", "adult", 150)  # more than her whole budget: never fits
    assert never is not None and never.status == 422 and never.decision == "batch_too_large"
    assert never.message == (
        "instances: expected at most 100 rows (the daily budget per principal on adult, the"
        " server's --daily-budget), got 150"
    )  # bad input, not a 429 to retry: a whole day's budget is smaller than the request
    assert _check(rl, "carol", "adult", 100) is None  # nothing of hers was spent
