"""Extraction-aware budgets against the real server (``bastion serve`` on loopback) and a
copy of the session's Adult home.

The Adult model's signed extraction audit copies it to 90% agreement at 300 queries (the
public-pool strategy) and at none of 100, so the default server (``--daily-budget auto``)
gives every principal 100 rows a UTC day on it: a thief replaying real rows, which no
detector can tell from benign traffic, is refused at its 101st. A principal given its own
budget (``--principal-budget``) goes beyond, and the start summary warns that it could copy
the model within a day.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSPHRASE, Home, copy_home, run_cli
from tests.integration.test_serving import ROW, Server, _token, start

FAST = ("--rate", "100000", "--burst", "200")
AUTO_REASON = (
    "auto: the extraction audit copied this model to 90% agreement at 300 queries;"
    " none reached it at 100"
)


@pytest.fixture(scope="module")
def home(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A copy of the session's Adult home with two consumers: svc-casual, svc-bulk."""
    copy = copy_home(adult_home, tmp_path_factory.mktemp("budgets") / "home")
    from bastion import Workspace

    with Workspace.open(copy.path, PASSPHRASE, token=copy.token) as ws:
        for who in ("svc-casual", "svc-bulk", "svc-fresh"):
            token = _token(ws, who, "consumer", "deployment", "adult-income").token
            (copy.path.parent / who).write_text(str(token))
    return copy


def _tok(home: Home, who: str) -> str:
    return (home.path.parent / who).read_text()


def _summary(srv: Server) -> dict[str, Any]:
    """The one JSON line ``--json`` prints once the server listens."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in srv.log.read_text().splitlines():
            if line.startswith("{"):
                return dict(json.loads(line))
        time.sleep(0.1)
    raise AssertionError(f"no start summary: {srv.log.read_text()}")


def _start_entries(home: Home) -> list[dict[str, Any]]:
    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return [dict(e.details or {}) for e in ws.audit.entries(action="serve.start")]


def test_the_default_budget_refuses_the_101st_row_and_a_principal_budget_goes_beyond(
    home: Home,
) -> None:
    srv = start(home, *FAST, "--principal-budget", "svc-bulk=1000", "--json")
    try:
        model = _summary(srv)["models"][0]
        assert model["daily_budget"] == 100 and model["budget_reason"] == AUTO_REASON
        assert model["extraction_queries_90pct"] == 300
        assert model["principal_budgets"] == {"svc-bulk": 1000}
        assert model["budget_warnings"] == [
            "--principal-budget svc-bulk=1000 is at or above 300: one principal can copy this"
            " model within a day's budget (its extraction audit reached 90% agreement at 300"
            " queries)"
        ]
        casual = _tok(home, "svc-casual")
        assert srv.post({"instances": [ROW] * 60}, casual).status_code == 200
        assert srv.post({"instances": [ROW] * 40}, casual).status_code == 200
        res = srv.post({"instances": [ROW]}, casual)  # its 101st row today
        assert res.status_code == 429, res.text
        assert res.json() == {
            "error": "daily query budget exhausted: 100 rows per principal per UTC day on"
            " adult-income (the server's --daily-budget); it resets at 00:00 UTC, retry after"
            f" {res.headers['retry-after']} s",
            "code": "DAILY_BUDGET_EXHAUSTED",
        }
        assert 1 <= int(res.headers["retry-after"]) <= 86_400
        fresh = _tok(home, "svc-fresh")
        too_big = srv.post({"instances": [ROW] * 150}, fresh)  # more than a whole day allows
        assert too_big.status_code == 422, too_big.text  # bad input: no retry will pass
        assert too_big.json()["error"] == (
            "instances: expected at most 100 rows (the daily budget per principal on"
            " adult-income, the server's --daily-budget), got 150"
        )
        assert srv.post({"instances": [ROW] * 100}, fresh).status_code == 200  # none spent
        bulk = _tok(home, "svc-bulk")
        codes = [srv.post({"instances": [ROW] * 200}, bulk).status_code for _ in range(5)]
        assert codes == [200] * 5  # 1000 rows: beyond the 100 of everyone else
        over = srv.post({"instances": [ROW]}, bulk)
        assert over.status_code == 429 and "1000 rows" in over.json()["error"]
        assert "--principal-budget" in over.json()["error"]
    finally:
        srv.stop()
    details = _start_entries(home)[-1]
    assert details["daily_budget"] == "auto"
    assert details["principal_budgets"] == {"svc-bulk": 1000}
    assert details["budgets"]["adult-income:1"]["rows"] == 100
    assert details["budgets"]["adult-income:1"]["extraction_queries_90pct"] == 300
    assert details["budget_warnings"] == [f"adult-income:1: {model['budget_warnings'][0]}"]


def test_the_start_text_says_the_budget_and_warns_of_an_explicit_one_that_copies(
    home: Home,
) -> None:
    srv = start(home, *FAST, "--daily-budget", "300")
    try:
        deadline = time.monotonic() + 10
        while "health " not in srv.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = " ".join(srv.log.read_text().split())
    finally:
        srv.stop()
    assert "budget 300 rows per principal per UTC day (--daily-budget 300)" in text
    assert (
        "WARNING: adult-income:1: --daily-budget 300 is at or above 300: one principal can"
        " copy this model within a day's budget"
    ) in text


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("svc-bulk", "--principal-budget 'svc-bulk': expected NAME=ROWS"),
        ("svc-bulk=0", "--principal-budget 'svc-bulk=0': expected NAME=ROWS"),
        ("svc-ghost=500", "no principal named svc-ghost"),
    ],
)
def test_a_bad_principal_budget_exits_2_naming_it(home: Home, value: str, needle: str) -> None:
    res = run_cli(
        ["serve", "adult-income", "--unsafe-no-tls", "--port", "0", "--principal-budget", value],
        home.env(),
        timeout=120,
    )
    assert res.code == 2, res.err
    assert needle in " ".join(res.err.split())


def test_a_bad_daily_budget_exits_2(home: Home) -> None:
    res = run_cli(
        ["serve", "adult-income", "--unsafe-no-tls", "--port", "0", "--daily-budget", "lots"],
        home.env(),
        timeout=120,
    )
    assert res.code == 2 and "--daily-budget: expected a positive integer or auto" in res.err


def test_a_tampered_extraction_result_refuses_the_start(adult_home: Home, tmp_path: Path) -> None:
    """The budget comes from the blob the signed evaluation names by digest: a changed blob
    fails its verification and the server does not start on a guessed budget."""
    from bastion import Workspace

    copy = copy_home(adult_home, tmp_path / "home")
    with Workspace.open(copy.path, PASSPHRASE, token=copy.token) as ws:
        ev = ws.evaluations.current(ws.models.get("adult-income"))
        assert ev is not None
        digest = ev.results["audit.extraction"]
    blob = copy.path / "objects" / digest[:2] / digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    res = run_cli(
        ["serve", "adult-income", "--unsafe-no-tls", "--port", "0"], copy.env(), timeout=120
    )
    assert res.code == 1, res.err
    said = " ".join(res.err.split())
    assert (
        f"refusing to serve adult-income:1: its signed extraction audit result {digest[:12]}"
        in said
    )
    assert "no budget is guessed" in said
