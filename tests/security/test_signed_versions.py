"""Attacks on model versions and contracts by someone who can write every file of the home
but lacks the passphrase: the database row is storage, the signed release statement and the
audited registration are the truth. Plus `bastion verify` listing every problem it finds.

The Adult example runs once for the session (``adult_home``); a second version is trained
once for this module; every test tampers with a copy.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import PASSPHRASE, Home, copy_home, run_cli
from tests.helpers.adult import EXAMPLE

ROW = {
    "age": 39,
    "workclass": "State-gov",
    "education-num": 13,
    "capital-gain": 2174,
    "capital-loss": 0,
    "hours-per-week": 40,
    "marital-status": "Never-married",
    "occupation": "Adm-clerical",
    "relationship": "Not-in-family",
    "native-country": "United-States",
}


def adult_file(folder: Path, edit: Any) -> Path:
    """The Adult pipeline with absolute data paths, edited by ``edit(doc)``."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for source in doc["data"]["sources"].values():
        source["path"] = str(EXAMPLE.parent / source["path"])
    edit(doc)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sql(home: Home, statement: str, *args: Any) -> int:
    """Write to the home's database directly, as the attacker does; rows changed."""
    with sqlite3.connect(home.path / "bastion.db") as db:
        changed = db.execute(statement, args).rowcount
    return int(changed)


def problems(home: Home) -> tuple[int, dict[str, Any]]:
    res = run_cli(["verify", "--json"], home.env())
    return res.code, res.json()


def subjects_of(report: dict[str, Any], kind: str) -> dict[str, str]:
    """subject → its problems of ``kind``, joined with " | "."""
    found: dict[str, list[str]] = {}
    for p in report["problems"]:
        if p["kind"] == kind:
            found.setdefault(p["subject"], []).append(p["message"])
    return {subject: " | ".join(messages) for subject, messages in found.items()}


@pytest.fixture(scope="module")
def two_versions(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """adult-income:1 (the example) and adult-income:2 (fewer boosting rounds)."""
    root = tmp_path_factory.mktemp("two-versions")
    home = copy_home(adult_home, root / "home")

    def fewer_rounds(doc: dict[str, Any]) -> None:
        doc["model"]["params"]["max_iter"] = 60

    res = run_cli(["run", str(adult_file(root, fewer_rounds)), "--json"], home.env(), timeout=600)
    assert res.code == 0, res.err
    assert res.json()["model"] == "adult-income:2"
    return home


def test_deleted_newest_model_row_is_reported_and_not_silently_older(
    two_versions: Home, tmp_path: Path
) -> None:
    home = copy_home(two_versions, tmp_path / "home")
    code, report = problems(home)
    assert code == 0, report  # untouched: no problem
    assert sql(home, "DELETE FROM models WHERE name = 'adult-income' AND version = 2") == 1

    code, report = problems(home)
    assert code == 1 and report["ok"] is False
    assert "record is missing" in subjects_of(report, "model")["adult-income:2"]

    shown = run_cli(["models", "show", "adult-income", "--json"], home.env())
    assert shown.code == 1 and shown.out == ""  # never adult-income:1 in its place
    assert "adult-income:2" in shown.err and "record is missing" in shown.err

    served = run_cli(["serve", "adult-income", "--unsafe-no-tls", "--port", "1"], home.env())
    assert served.code == 1
    assert "refusing to serve adult-income" in served.err and "adult-income:2" in served.err

    # the older version is still there for whoever names it
    older = run_cli(["models", "show", "adult-income:1", "--json"], home.env())
    assert older.code == 0, older.err
    assert older.json()["model"] == "adult-income:1"


def test_renumbered_model_row_is_reported(two_versions: Home, tmp_path: Path) -> None:
    home = copy_home(two_versions, tmp_path / "home")
    assert sql(home, "UPDATE models SET version = 3 WHERE name = 'adult-income' AND version = 2")

    code, report = problems(home)
    assert code == 1
    found = subjects_of(report, "model")
    assert "record is missing" in found["adult-income:2"]
    assert "adult-income:3" in found  # no registration, and its release names version 2

    shown = run_cli(["models", "show", "adult-income", "--json"], home.env())
    assert shown.code == 1 and "adult-income:2" in shown.err and "renumbered" in shown.err
    assert run_cli(["models", "show", "adult-income:3"], home.env()).code == 1


def test_replaced_model_version_is_reported(two_versions: Home, tmp_path: Path) -> None:
    """Version 2's row made to carry version 1's model and statement: a silent rollback."""
    home = copy_home(two_versions, tmp_path / "home")
    changed = sql(
        home,
        "UPDATE models SET (digest, statement_id) = (SELECT digest, statement_id FROM models"
        " WHERE version = 1) WHERE version = 2",
    )
    assert changed == 1
    code, report = problems(home)
    assert code == 1 and "adult-income:2" in subjects_of(report, "model")
    shown = run_cli(["models", "show", "adult-income", "--json"], home.env())
    assert shown.code == 1 and shown.out == ""  # never adult-income:1's model as the newest
    assert "refusing to pick the newest version" in shown.err


def serve_or_exit(home: Home, *args: str) -> tuple[subprocess.Popen[str], str | None, Path]:
    """Start `bastion serve`; (process, its URL once it answers, or None if it exited)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = home.path.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "bastion", "serve", "adult-income", "--unsafe-no-tls"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), *args],
            env=home.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, None, log
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server neither came up nor exited: {log.read_text()}")


def test_record_pointed_at_looser_config_is_not_used(adult_home: Home, tmp_path: Path) -> None:
    from bastion import Workspace
    from bastion.errors import IntegrityError

    home = copy_home(adult_home, tmp_path / "home")

    def looser(doc: dict[str, Any]) -> None:
        doc["data"]["schema"]["age"] = {"type": "int"}
        doc["data"]["schema"]["workclass"] = {"type": "str", "nullable": True}

    # a looser pipeline file that is legitimately in the store (say, another team's run) ...
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        stored, _ = ws.put_artifact(
            adult_file(tmp_path, looser), media_type="application/yaml", name="pipeline.yaml"
        )
        loose = stored.digest
        # the contract is read from the signed release, whatever the record says
        rec = ws.models.get("adult-income")
        lying = dataclasses.replace(rec, record={**rec.record, "config": loose})
        assert ws.models.signed_contract(lying).config == rec.record["config"] != loose
        with pytest.raises(IntegrityError, match="record was edited"):
            ws.models.verify_record(lying)
    # ... and the attacker points the model's record at it
    with sqlite3.connect(home.path / "bastion.db") as db:
        (text,) = db.execute("SELECT record FROM models").fetchone()
    assert sql(
        home, "UPDATE models SET record = ?", json.dumps({**json.loads(text), "config": loose})
    )

    code, report = problems(home)
    assert code == 1 and "adult-income:1" in subjects_of(report, "model")
    served = run_cli(["serve", "adult-income", "--unsafe-no-tls", "--port", "1"], home.env())
    assert served.code == 1 and "refusing to serve adult-income" in served.err

    # even told to skip verification, the server never takes the looser contract: it
    # refuses the edited row, or it serves with the signed contract
    proc, url, log = serve_or_exit(home, "--unsafe-skip-verify")
    try:
        if url is None:
            assert proc.returncode == 1 and "refusing to serve" in log.read_text()
            return
        headers = {"Authorization": f"Bearer {home.token}"}
        predict = url + "/v1/models/adult-income/predict"
        ok = httpx.post(predict, json={"instances": [ROW]}, headers=headers, timeout=30)
        assert ok.status_code == 200, ok.text
        for bad in ({"age": 10**9}, {"workclass": "Pirate"}):
            refused = httpx.post(
                predict, json={"instances": [{**ROW, **bad}]}, headers=headers, timeout=30
            )
            assert refused.status_code == 422, refused.text
            assert next(iter(bad)) in refused.text
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


def test_corrupted_statement_row_does_not_stop_verify(adult_home: Home, tmp_path: Path) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    with sqlite3.connect(home.path / "bastion.db") as db:
        first = db.execute("SELECT id FROM statements ORDER BY id LIMIT 1").fetchone()[0]
        db.execute("UPDATE statements SET envelope = 'not json' WHERE id = ?", (first,))
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5")

    code, report = problems(home)
    assert code == 1 and report["ok"] is False
    assert "does not match its id" in subjects_of(report, "statement")[first]
    assert any("5" in p["message"] for p in report["problems"] if p["kind"] == "audit")
    # the statements after the damaged one were still checked
    with sqlite3.connect(home.path / "bastion.db") as db:
        assert report["statements"] == db.execute("SELECT count(*) FROM statements").fetchone()[0]


def test_verify_json_prints_whole_report_on_failure(adult_home: Home, tmp_path: Path) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    blob = next(p for p in (home.path / "objects").rglob("*") if p.is_file())
    blob.unlink()

    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1
    report = res.json()  # the whole report on stdout, not just an error
    assert report["ok"] is False
    assert set(report) >= {
        "artifacts",
        "statements",
        "models",
        "audit_entries",
        "audit_checkpoints",
        "problems",
    }
    assert report["statements"] > 0 and report["models"] == 1 and report["audit_entries"] > 0
    assert any(
        p["kind"] == "artifact" and "missing from the store" in p["message"]
        for p in report["problems"]
    )
