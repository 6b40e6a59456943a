"""``bastion serve --audit-durability``: what the server promises about its audit entries,
against the real server on a copy of the session's Adult home.

Default ``flush``: every answered request's entry is handed to the OS before the answer (a
SIGKILL of the server loses none of them) and on disk within 50 ms. ``fsync``: on disk
before the answer. Both are recorded in ``serve.start`` and shown at start.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from tests.conftest import PASSPHRASE, Home, copy_home, run_cli
from tests.integration.test_serving import ROW, start


@pytest.fixture(scope="module")
def home(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_home(adult_home, tmp_path_factory.mktemp("durability") / "home")


def _summary(log_text: str) -> dict[str, Any]:
    for line in log_text.splitlines():
        if line.startswith("{"):
            return dict(json.loads(line))
    raise AssertionError(f"no start summary: {log_text}")


def _starts(home: Home) -> list[dict[str, Any]]:
    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return [dict(e.details or {}) for e in ws.audit.entries(action="serve.start")]


def _predicts(home: Home) -> int:
    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return len(ws.audit.entries(action="model.predict", limit=10_000))


def test_flush_is_the_default_and_a_killed_server_loses_no_answered_entry(home: Home) -> None:
    before = _predicts(home)
    srv = start(home, "--json", "--principal-budget", "admin=1000")
    try:
        assert _summary(srv.log.read_text())["audit_durability"] == "flush"
        answered = 0
        for _ in range(60):
            res = srv.post({"instances": [ROW]}, home.token)
            assert res.status_code == 200, res.text
            answered += 1
        srv.proc.send_signal(signal.SIGKILL)  # no shutdown, no final sync
        srv.proc.wait(timeout=20)
    finally:
        srv.stop()
    assert _starts(home)[-1]["audit_durability"] == "flush"
    assert _predicts(home) - before == answered
    res = run_cli(["audit", "verify"], home.env())
    assert res.code == 0, res.out + res.err


def test_fsync_is_chosen_shown_and_audited(home: Home) -> None:
    srv = start(home, "--audit-durability", "fsync")
    try:
        time.sleep(0.2)
        assert "every request's entry on disk before its answer" in srv.log.read_text()
        res = srv.post({"instances": [ROW]}, home.token)
        assert res.status_code == 200, res.text
    finally:
        srv.stop()
    assert _starts(home)[-1]["audit_durability"] == "fsync"


def test_an_unknown_durability_is_bad_usage(home: Home) -> None:
    res = run_cli(
        ["serve", "adult-income", "--unsafe-no-tls", "--audit-durability", "sometimes"],
        home.env(),
    )
    assert res.code == 2
    assert "--audit-durability: expected fsync or flush, got 'sometimes'" in res.err
