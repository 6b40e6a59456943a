"""A pipeline author cannot make Bastion write a secret or a raw data value anywhere.

The attacks: ``${BASTION_MASTER_KEY}`` or ``${BASTION_TOKEN}`` in a SQL source URL (once
written in plain text into a signed statement, the audit log, the runs table and stderr);
a password in an allow-listed variable (shown as ``***``); an SSN or e-mail in a category
column that fails validation (once raw in stderr, the audit log and the runs table, before
the PII stage ran); and a query that never ends. Each runs the real CLI on a temporary
home with a tiny SQLite source, then searches every file of the home — every row of its
database too, WAL included, with base64 payloads decoded — and the output.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.stages.ingest import canonical_rows_sha256
from tests.conftest import PASSPHRASE, Home, Result, run_cli
from tests.helpers.leaks import leaks, leaks_in_text

QUERY = "SELECT age, plan, hours, y FROM people ORDER BY id"
SSN, EMAIL = "078-05-1120", "jane.roe@example.org"


def people(n: int = 120) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        hours = 20 + (i * 7) % 45
        rows.append((i, 18 + (i * 13) % 60, ["basic", "plus", "pro"][i % 3], hours))
    return [(i, age, plan, hours, "yes" if hours > 40 else "no") for i, age, plan, hours in rows]


def source_db(folder: Path, rows: list[tuple[Any, ...]]) -> tuple[Path, str]:
    """A SQLite file with ``rows``; returns its path and the pin of QUERY over it."""
    path = folder / "source.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (id int, age int, plan text, hours int, y text)")
    con.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", rows)
    con.commit()
    result = con.execute(QUERY).fetchall()
    con.close()
    return path, canonical_rows_sha256(["age", "plan", "hours", "y"], result)


def pipeline(folder: Path, url: str, pin: str, **data: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "tiny",
        "seed": 1,
        "threads": 1,
        "data": {
            "sources": {"train": {"format": "sql", "url": url, "query": QUERY, "sha256": pin}},
            "schema": {
                "age": {"type": "int", "min": 0, "max": 120},
                "plan": {"type": "category", "categories": ["basic", "plus", "pro"]},
                "hours": {"type": "int"},
                "y": {"type": "category", "categories": ["no", "yes"]},
            },
            "label": {"column": "y", "positive": "yes"},
            **data,
        },
        "features": {
            "numeric": {"columns": ["age", "hours"]},
            "categorical": {"columns": ["plan"]},
        },
        "model": {"estimator": "LogisticRegression"},
        "evaluate": {"metrics": ["accuracy"]},
        "release": {"name": "tiny"},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(home: Home, path: Path, **env: str) -> Result:
    return run_cli(["run", str(path)], home.env(**env), timeout=300)


# -- Bastion's own secrets in a source URL -----------------------------------------------


@pytest.mark.parametrize("variable", ["BASTION_MASTER_KEY", "BASTION_TOKEN"])
def test_bastion_variable_listed_in_allow_env_is_still_refused(
    home: Home, tmp_path: Path, variable: str
) -> None:
    db, pin = source_db(tmp_path, people())
    secret = PASSPHRASE if variable == "BASTION_MASTER_KEY" else home.token
    # the author asks for it twice, listed in the allow-list too: still refused
    url = f"sqlite:///{db}?application_name=${{{variable}}}"
    path = pipeline(tmp_path, url, pin)
    res = run(home, path, BASTION_ALLOW_ENV=f"{variable},OTHER")
    assert res.code == 2, res.err
    assert f"{path}:8:" in res.err and "data.sources.train.url" in res.err
    assert f"environment variable {variable} may not be used" in res.err
    assert not leaks_in_text(res.out + res.err, [secret])
    assert not leaks(home.path, [secret])
    # and with nothing listed
    res = run(home, path)
    assert res.code == 2 and f"environment variable {variable}" in res.err
    assert not leaks_in_text(res.out + res.err, [secret]) and not leaks(home.path, [secret])


def test_master_key_in_source_url_is_refused_and_never_written(home: Home, tmp_path: Path) -> None:
    _db, pin = source_db(tmp_path, people())
    path = pipeline(tmp_path, "sqlite:///${BASTION_MASTER_KEY}", pin)
    res = run(home, path, BASTION_ALLOW_ENV="BASTION_MASTER_KEY")
    assert res.code == 2
    assert "BASTION_* variables hold Bastion's own secrets" in res.err
    assert not leaks_in_text(res.out + res.err, [PASSPHRASE])
    assert not leaks(home.path, [PASSPHRASE])


def test_token_in_source_url_is_refused_and_never_written(home: Home, tmp_path: Path) -> None:
    db, pin = source_db(tmp_path, people())
    path = pipeline(tmp_path, f"sqlite:///{db}?token=${{BASTION_TOKEN}}", pin)
    res = run(home, path, BASTION_ALLOW_ENV="BASTION_TOKEN")
    assert res.code == 2 and "BASTION_TOKEN may not be used" in res.err
    assert not leaks_in_text(res.out + res.err, [home.token])
    assert not leaks(home.path, [home.token])


def test_variable_not_allowed_is_refused_naming_how_to_allow_it(home: Home, tmp_path: Path) -> None:
    db, pin = source_db(tmp_path, people())
    path = pipeline(tmp_path, "sqlite:///${SOURCE_DB}", pin)
    res = run(home, path, SOURCE_DB=str(db))
    assert res.code == 2
    assert f"{path}:8:" in res.err and "environment variable SOURCE_DB is not allowed" in res.err
    assert "BASTION_ALLOW_ENV=SOURCE_DB" in res.err and str(db) not in res.err


# -- an allowed password is resolved only to connect, and shown as *** -------------------


def test_allowed_password_is_masked_in_statement_audit_runs_and_messages(
    home: Home, tmp_path: Path
) -> None:
    db, pin = source_db(tmp_path, people())
    secret = "pw-9f8e7d6c5b4a-secret"
    url = "sqlite:///${SOURCE_DB}?password=${DB_PASSWORD}&token=${DB_PASSWORD}"
    path = pipeline(tmp_path, url, pin)
    env = {
        "SOURCE_DB": str(db),
        "DB_PASSWORD": secret,
        "BASTION_ALLOW_ENV": "SOURCE_DB,DB_PASSWORD",
    }
    res = run(home, path, **env)
    assert res.code == 0, res.err
    audit = run_cli(["audit", "show", "--json", "--limit", "10000"], home.env())
    assert audit.code == 0
    statements = run_cli(["statements", "list", "--json"], home.env())
    assert statements.code == 0, statements.err
    exported = [
        run_cli(["statements", "export", s["id"]], home.env()).out
        for s in statements.json()["statements"]
    ]
    everything = res.out + res.err + audit.out + statements.out + "".join(exported)
    assert not leaks_in_text(everything, [secret])
    assert not leaks(home.path, [secret])
    # the statement of the ingest stage names the source with its secrets as ***
    shown = f"sqlite:///{db}?password=***&token=***"
    assert leaks_in_text("".join(exported), [shown])
    # a failing connection does not show it either: the database is gone
    db.unlink()
    res = run(home, path, **env)
    assert res.code == 2 and "database file not found" in res.err
    assert not leaks_in_text(res.out + res.err, [secret]) and not leaks(home.path, [secret])


# -- data values never leave in plain text ----------------------------------------------


def test_ssn_in_failing_category_column_is_masked_everywhere(home: Home, tmp_path: Path) -> None:
    rows = people()
    rows[7] = (*rows[7][:2], SSN, *rows[7][3:])
    rows[11] = (*rows[11][:2], EMAIL, *rows[11][3:])
    db, pin = source_db(tmp_path, rows)
    url = f"sqlite:///{db}"
    # policy fail: validation stops the run, naming the rows, the column and the rule
    res = run(home, pipeline(tmp_path, url, pin))
    assert res.code == 2, res.err
    assert "row 7, column plan: category: got '***-**-1120'" in res.err
    assert "row 11, column plan: category: got 'j***@e***.org'" in res.err
    assert not leaks_in_text(res.out + res.err, [SSN, EMAIL])
    # policy quarantine: the run goes on; the report lists the rows with masked values
    path = pipeline(tmp_path, url, pin, validation={"policy": "quarantine"})
    res = run_cli(["run", str(path), "--json"], home.env(), timeout=300)
    assert res.code == 0, res.err
    report = Path(res.json()["report"])
    html, doc = report.read_text(), (report.parent / "report.json").read_text()
    assert "***-**-1120" in html and "***-**-1120" in doc
    audit = run_cli(["audit", "show", "--json", "--limit", "10000"], home.env())
    everything = res.out + res.err + audit.out + html + doc
    assert not leaks_in_text(everything, [SSN, EMAIL])
    assert not leaks(home.path, [SSN, EMAIL])


def test_a_column_opted_in_shows_its_values(home: Home, tmp_path: Path) -> None:
    rows = people()
    rows[7] = (*rows[7][:2], "platinum", *rows[7][3:])
    db, pin = source_db(tmp_path, rows)
    res = run(home, pipeline(tmp_path, f"sqlite:///{db}", pin, show_values=["plan"]))
    assert res.code == 2 and "row 7, column plan: category: got 'platinum'" in res.err


# -- a query that never ends -----------------------------------------------------------------


def test_slow_source_query_is_stopped_at_its_timeout(home: Home, tmp_path: Path) -> None:
    db, _ = source_db(tmp_path, people())
    path = pipeline(tmp_path, f"sqlite:///{db}", "0" * 64)
    doc = yaml.safe_load(path.read_text())
    doc["data"]["sources"]["train"]["query"] = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    )
    doc["data"]["sources"]["train"]["timeout_seconds"] = 1
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = run(home, path)
    assert res.code == 2, res.err
    assert "source 'train'" in res.err and "ran longer than its timeout of 1 s" in res.err
    assert "data.sources.train.timeout_seconds" in res.err
