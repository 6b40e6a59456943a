"""Schemathesis against the real server's own ``/openapi.json``: no input gives a 5xx.

The server is ``bastion serve`` in a subprocess on 127.0.0.1, started with
``--unsafe-no-tls`` to keep the client simple (TLS has tests of its own in test_serving.py)
and ``--max-batch 20`` so that generated batches stay small and the run fast. Rate-limit
flags (``--rate``, ``--burst``, ``--daily-budget``), when ``bastion serve --help`` lists them,
are set very high so that 429s do not swallow the run, and ``--on-extraction notify``: random
queries are what the extraction monitor is there to catch, and ``block`` would answer every
later case with 403 before its body is looked at.

The schema is fetched from the running server (no token: it is loopback), loaded with
``schemathesis.openapi.from_dict``, and every operation's cases are drawn with Hypothesis in
both generation modes (positive: valid by the schema; negative: violating it) and sent with a
valid consumer token. Over 500 cases in total; the predict route alone gets 560. Every answer
must be below 500, and every answer of the predict route must be a JSON document.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import Home, run_cli
from tests.integration.test_serving import Server, ran, start

__all__ = ["ran"]  # the module fixture: a copy of the session's Adult home

PREDICT = "/v1/models/adult-income/predict"
CASES = {  # (path, mode) -> most examples Hypothesis draws
    (PREDICT, GenerationMode.POSITIVE): 300,
    (PREDICT, GenerationMode.NEGATIVE): 260,
}
OTHER_CASES = 10  # routes without inputs: Hypothesis stops once it has nothing new to draw
MIN_TOTAL = 500
GENEROUS = {  # so that the controls do not swallow the run; they still run on every request
    "--rate": "1000000",
    "--burst": "1000000",
    "--daily-budget": "100000000",
    "--on-extraction": "notify",  # random queries ARE extraction; block would 403 the rest
}


def _limit_flags(home: Home) -> list[str]:
    """The GENEROUS flags this build of ``bastion serve`` has."""
    env = home.env(COLUMNS="300", TERM="dumb", NO_COLOR="1")
    helptext = subprocess.run(
        [sys.executable, "-m", "bastion", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    words = set(helptext.replace(",", " ").split())
    return [arg for flag, value in GENEROUS.items() if flag in words for arg in (flag, value)]


def _fuzz(op: Any, mode: GenerationMode, limit: int, send: Any) -> None:
    """Draw up to ``limit`` cases of ``op`` in ``mode`` and send each one."""

    @settings(
        max_examples=limit,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        send(op.path, case)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # a route without inputs has nothing to break in negative mode


@pytest.fixture(scope="module")
def fuzz_server(ran: Home) -> Iterator[tuple[Server, str]]:
    created = run_cli(
        ["token", "create", "--role", "consumer", "--deployment", "adult-income", "--json"],
        ran.env(),
    )
    assert created.code == 0, created.err
    srv = start(ran, "--max-batch", "20", *_limit_flags(ran))
    try:
        yield srv, created.json()["token"]
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_schemathesis_finds_no_5xx(fuzz_server: tuple[Server, str]) -> None:
    srv, token = fuzz_server
    raw = httpx.get(srv.url + "/openapi.json", timeout=10)
    assert raw.status_code == 200, raw.text
    schema = schemathesis.openapi.from_dict(raw.json())
    headers = {"Authorization": f"Bearer {token}"}
    counts: Counter[tuple[str, str, int]] = Counter()
    failures: list[str] = []

    def send(path: str, case: Any) -> None:
        res = case.call(base_url=srv.url, headers=headers, timeout=30)
        counts[(path, case.method, res.status_code)] += 1
        why = ""
        if res.status_code >= 500:
            why = "5xx"
        elif path == PREDICT:
            try:
                json.loads(res.content)
            except ValueError:
                why = "not JSON"
        if why and len(failures) < 20:
            failures.append(
                f"{why}: {case.method} {path} -> {res.status_code} {res.content[:200]!r}; "
                f"sent {case.as_curl_command(headers=headers)}"
            )

    operations = [result.ok() for result in schema.get_all_operations()]
    assert PREDICT in {op.path for op in operations}
    for op in operations:
        for mode in GenerationMode:
            limit = CASES.get((op.path, mode), OTHER_CASES)

            _fuzz(op, mode, limit, send)

    total = sum(counts.values())
    summary = ", ".join(f"{m} {p} {s}: {n}" for (p, m, s), n in sorted(counts.items()))
    print(f"{total} cases: {summary}")
    assert not failures, "\n".join(failures)
    assert total >= MIN_TOTAL, summary
    ok = sum(n for (p, _, s), n in counts.items() if p == PREDICT and s == 200)
    assert ok > 0, f"no generated valid instance was predicted: {summary}"
