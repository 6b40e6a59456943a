"""The first request is not guesswork: ``bastion serve`` says what it verified and serves
(models, URL, certificate, inputs, routes) once it listens, a full data row is refused with
the reason (declared but not an input: data minimisation) and the model's inputs, a
deployment may opt to drop declared fields, and the batch limit agrees with the burst.

One copy of the session's Adult home serves with ``--json`` (read like a script would);
a second server, with ``--drop-declared-fields`` and no ``--json``, is read like a person
would.
"""

from __future__ import annotations

import sqlite3
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Home, copy_home, run_cli
from tests.helpers.serve import Running, adult_rows, serve

INPUTS = [
    "age",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "workclass",
    "marital-status",
    "occupation",
    "relationship",
    "native-country",
]
DECLARED_NOT_INPUTS = ["fnlwgt", "education", "race", "sex"]


@pytest.fixture(scope="module")
def home(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_home(adult_home, tmp_path_factory.mktemp("first-request") / ".bastion")


@pytest.fixture(scope="module")
def scripted(home: Home) -> Iterator[Running]:
    # the admin sends one 200-row batch (the default limit): beyond its auto budget on the
    # Adult model (100 rows a day), so it gets a budget of its own
    running = serve(home, "--tls-self-signed", "--principal-budget", "admin=1000")
    try:
        yield running
    finally:
        running.stop()


def predict(running: Running, instances: list[dict[str, Any]], token: str) -> httpx.Response:
    model = running.announced["models"][0]
    return httpx.post(
        model["predict"],
        json={"instances": instances},
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=running.announced["certificate"]),
        timeout=30,
    )


def serve_start_details(home: Home) -> list[dict[str, Any]]:
    import json

    with sqlite3.connect(home.path / "bastion.db") as db:
        rows = db.execute("SELECT details FROM audit_log WHERE action = 'serve.start'").fetchall()
    return [json.loads(r[0]) for r in rows]


def test_serve_json_is_one_line_saying_what_was_verified_and_how_to_call_it(
    scripted: Running, home: Home
) -> None:
    said = scripted.announced
    port = int(said["url"].rsplit(":", 1)[1])
    assert said["url"] == f"https://127.0.0.1:{port}" and port > 0
    assert said["certificate"] == str((home.path / "tls" / "localhost.crt").resolve())
    assert said["endpoints"] == {
        name: f"{said['url']}{route}"
        for name, route in [
            ("openapi", "/openapi.json"),
            ("metrics", "/metrics"),
            ("healthz", "/healthz"),
            ("readyz", "/readyz"),
        ]
    }
    (model,) = said["models"]
    with home.open() as ws:
        record = ws.models.get("adult-income:1")
    assert model["model"] == "adult-income:1" and model["verified"] is True
    assert model["sha256"] == record.digest
    assert model["predict"] == f"{said['url']}/v1/models/adult-income/predict"
    assert [i["name"] for i in model["inputs"]] == INPUTS
    assert model["inputs"][0] == {
        "name": "age",
        "type": "int",
        "nullable": False,
        "min": 17,
        "max": 90,
    }
    assert "Private" in model["inputs"][5]["categories"]
    assert model["max_batch"] == 200 and model["drop_declared_fields"] is False
    # logs stay on stderr; stdout held the JSON line only
    assert "Uvicorn running" in scripted.log
    row = adult_rows(1, columns=INPUTS)
    res = predict(scripted, row, home.token)
    assert res.status_code == 200, res.text
    assert res.json()["predictions"][0] in ("<=50K", ">50K")


def test_a_full_data_row_is_refused_naming_declared_fields_and_the_inputs(
    scripted: Running, home: Home
) -> None:
    res = predict(scripted, adult_rows(1), home.token)
    assert res.status_code == 422, res.text
    body = res.json()
    assert [p["field"] for p in body["problems"]] == DECLARED_NOT_INPUTS
    assert body["error"].startswith(
        "instances[0].fnlwgt: declared in the data schema but not an input of this model"
        " (data minimisation)"
    )
    assert f"this model takes: {', '.join(INPUTS)} (4 problem(s) in all)" in body["error"]
    assert "unknown fields are refused" not in res.text
    res = predict(scripted, [{**adult_rows(1, columns=INPUTS)[0], "zodiac": "leo"}], home.token)
    assert res.status_code == 422
    assert res.json()["error"].startswith("instances[0].zodiac: not a field of this model;")


def test_the_batch_limit_is_the_burst_and_its_refusal_says_so(
    scripted: Running, home: Home
) -> None:
    rows = adult_rows(201, columns=INPUTS)
    res = predict(scripted, rows, home.token)
    assert res.status_code == 422
    assert res.json()["error"] == (
        "instances: expected at most 200 rows per request, got 201 (the server's --burst,"
        " the rows a principal may send at once; --burst raises it)"
    )
    res = predict(scripted, rows[:200], home.token)  # the default limit is reachable
    assert res.status_code == 200, res.text
    assert len(res.json()["predictions"]) == 200


def test_a_max_batch_above_the_burst_refuses_to_start(home: Home) -> None:
    res = run_cli(["serve", "adult-income", "--tls-self-signed", "--max-batch", "1000"], home.env())
    assert res.code == 2, res.err
    assert "--max-batch 1000: more rows than --burst 200" in res.err
    assert "Traceback" not in res.err


def test_drop_declared_fields_accepts_full_rows_is_audited_and_says_so_at_start(home: Home) -> None:
    running = serve(
        home, "--tls-self-signed", "--drop-declared-fields", "--max-body", "65536", json_out=False
    )
    try:
        text = running.announced["text"]
        # 200 rows of this model can outgrow 64 KiB: said at start, naming both settings
        assert "200 rows of up to" in text and "over --max-body 65536" in text
        url = text.split("listening on ", 1)[1].split()[0]
        assert "adult-income:1" in text and "signature and provenance verified" in text
        assert str((home.path / "tls" / "localhost.crt").resolve()) in text
        assert f"POST {url}/v1/models/adult-income/predict" in text
        assert "age:int, education-num:int" in text and "native-country:category" in text
        assert f"{url}/openapi.json" in text and "/readyz" in text
        assert "accepted and dropped unread" in text
        cert = ssl.create_default_context(cafile=str(home.path / "tls" / "localhost.crt"))
        auth = {"Authorization": f"Bearer {home.token}"}
        endpoint = f"{url}/v1/models/adult-income/predict"
        res = httpx.post(
            endpoint, json={"instances": adult_rows(3)}, headers=auth, verify=cert, timeout=30
        )
        assert res.status_code == 200, res.text
        assert len(res.json()["predictions"]) == 3
        undeclared = [{**adult_rows(1)[0], "zodiac": "leo"}]
        res = httpx.post(
            endpoint, json={"instances": undeclared}, headers=auth, verify=cert, timeout=30
        )
        assert res.status_code == 422
        assert [p["field"] for p in res.json()["problems"]] == ["zodiac"]
        doc = httpx.get(f"{url}/openapi.json", verify=cert, timeout=10).json()
        instance = doc["components"]["schemas"]["adult_income_instance"]
        assert set(DECLARED_NOT_INPUTS) <= set(instance["properties"])
        assert instance["required"] == INPUTS
    finally:
        running.stop()
    assert serve_start_details(home)[-1]["drop_declared_fields"] is True
