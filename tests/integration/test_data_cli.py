"""``bastion data screen`` and ``bastion data check`` through the real CLI, and PII in a real
pipeline run: the JSON contract, row numbers, exit codes, and every kind of bad file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import PASSPHRASE, Home, run_cli
from tests.helpers.adult import DATA, EXAMPLE

ADULT_CSV = ["--skip-initial-space", "--na-value", "?"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 Adult rows, then row 3000 = a copy of row 17 and row 3001 = a copy of row 18."""
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values=["?"]).iloc[:3000]
    df = pd.concat([df, df.iloc[[17, 18]]], ignore_index=True)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    df.to_csv(path, index=False, na_rep="?")
    return path


def test_screen_json_lists_findings_by_data_row(small: Path) -> None:
    res = run_cli(["data", "screen", str(small), "--label", "Y", *ADULT_CSV, "--json"], _env())
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["rows"] == 3002
    assert set(doc["ran"]) == {"label_noise", "backdoor", "outliers", "duplicates"}
    assert doc["skipped"] == ["shift"]
    assert doc["pii"] == []  # Adult holds no personal data
    dups = {f["row"] for f in doc["findings"] if f["reason"] == "exact_duplicate"}
    assert {3000, 3001} <= dups  # 0-based data rows, header excluded
    first = doc["findings"][0]
    assert {"row", "detector", "reason", "score"} <= set(first)
    assert isinstance(first["row"], int) and isinstance(first["score"], float)


def test_screen_human_output_and_strict_exit_code(small: Path) -> None:
    res = run_cli(["data", "screen", str(small), "--label", "Y", *ADULT_CSV], _env())
    assert res.code == 0, res.err
    assert "exact_duplicate" in res.out and "quarantine" in res.out
    strict = run_cli(["data", "screen", str(small), "--label", "Y", *ADULT_CSV, "--strict"], _env())
    assert strict.code == 1  # rows that a pipeline would quarantine


def test_a_fail_policy_from_the_pipeline_fails_the_screen_without_strict(
    small: Path, tmp_path: Path
) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["data"]["screen"] = {"duplicates": {"policy": "fail"}}
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    args = ["data", "screen", str(small), "--label", "Y", *ADULT_CSV, "--json"]
    res = run_cli([*args, "--config", str(config)], _env())
    assert res.code == 1, res.err
    assert res.json()["ok"] is False and res.json()["policies"]["duplicates"] == "fail"


def test_screen_with_a_baseline_measures_shift(small: Path, tmp_path: Path) -> None:
    df = pd.read_csv(small, na_values=["?"])
    df["age"] = df["age"] + 20
    moved = tmp_path / "moved.csv"
    df.to_csv(moved, index=False, na_rep="?")
    args = ["data", "screen", str(moved), "--label", "Y", "--positive", ">50K"]
    res = run_cli(
        [
            *args,
            "--baseline",
            str(small),
            "--na-value",
            "?",
            "--unsafe-skip",
            "label_noise",
            "--json",
        ],
        _env(),
    )
    assert res.code == 0, res.err
    doc = res.json()
    assert "shift" in doc["ran"] and "label_noise" in doc["skipped"]
    assert any(f["detector"] == "shift" and f["column"] == "age" for f in doc["findings"])


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        ("", [], "empty file"),
        ("a,b,Y\n", [], "no data rows"),
        ("a;b;Y\n1;2;x\n3;4;y\n", [], "delimiter"),
        ("a,b,Y\n1,2,x\n3,4\n5,6,7,8\n", [], "line"),
        ("a,b,Y\n1,2,x\n", ["--label", "nope"], "no such column"),
        ("a,b,Y\n1,2,x\n", ["--unsafe-skip", "everything"], "expected one of"),
        ("a,b,Y\n" + "1,2,x\n" * 500, ["--memory-budget", "1K"], "memory budget"),
        ("a,b,Y\n1,2,x\n", ["--memory-budget", "lots"], "expected a size"),
        ("a,b,Y\n1,2,x\n", ["--delimiter", ";;"], "at most 1 character"),
    ],
    ids=[
        "empty",
        "header-only",
        "wrong-delimiter",
        "ragged",
        "no-label",
        "bad-detector",
        "over-budget",
        "bad-budget",
        "bad-delimiter",
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2(
    tmp_path: Path, content: str, args: list[str], expected: str
) -> None:
    path = _write(tmp_path, "bad.csv", content)
    label = [] if "--label" in args else ["--label", "Y"]
    res = run_cli(["data", "screen", str(path), *label, *args], _env())
    assert res.code == 2, (res.out, res.err)
    assert expected in res.err
    assert "Traceback" not in res.err


def test_screen_reports_personal_data_masked_and_strict_fails_on_it(tmp_path: Path) -> None:
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(1)
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "contact": [fake.email() for _ in range(300)],
            "x": rng.normal(size=300),
            "y": rng.choice(["p", "q"], 300),
        }
    )
    path = tmp_path / "people.csv"
    df.to_csv(path, index=False)
    res = run_cli(["data", "screen", str(path), "--label", "y", "--json"], _env())
    assert res.code == 0, res.err
    hits = res.json()["pii"]
    assert [(h["column"], h["pattern"]) for h in hits] == [("contact", "email")]
    assert not any(email in res.out for email in df["contact"])  # masked
    strict = run_cli(["data", "screen", str(path), "--label", "y", "--strict"], _env())
    assert strict.code == 1 and "personal data: column 'contact'" in strict.out


def test_nan_infinities_and_mixed_types_are_screened_not_crashed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n).astype(object)
    x[:3] = ["nan", "inf", "-inf"]
    df = pd.DataFrame(
        {
            "x": x,
            "mixed": ["a", "1", "2.5", ""] * (n // 4),
            "y": rng.choice(["p", "q"], n),
        }
    )
    path = tmp_path / "odd.csv"
    df.to_csv(path, index=False)
    res = run_cli(["data", "screen", str(path), "--label", "y", "--json"], _env())
    assert res.code == 0, res.err
    assert res.json()["rows"] == n


def test_screen_parquet(small: Path, tmp_path: Path) -> None:
    path = tmp_path / "small.parquet"
    pd.read_csv(small, na_values=["?"]).to_parquet(path)
    res = run_cli(["data", "screen", str(path), "--label", "Y", "--json"], _env())
    assert res.code == 0, res.err
    assert {3000, 3001} <= {f["row"] for f in res.json()["findings"]}


def test_data_check_streams_a_file_through_the_pipeline_checks(tmp_path: Path) -> None:
    ok = run_cli(
        [
            "data",
            "check",
            str(DATA / "adult.data"),
            "--pipeline",
            str(EXAMPLE),
            "--source",
            "train",
            "--chunk-rows",
            "5000",
            "--json",
        ],
        _env(),
    )
    assert ok.code == 0, ok.err
    assert ok.json()["rows"] == 32561 and ok.json()["chunks"] == 7
    bad = DATA.joinpath("adult.data").read_text().splitlines()
    bad[5] = "500" + bad[5][bad[5].index(",") :]  # an age out of range, data row 4
    path = _write(tmp_path, "bad.data", "\n".join(bad) + "\n")
    res = run_cli(
        ["data", "check", str(path), "--pipeline", str(EXAMPLE), "--source", "train"], _env()
    )
    assert res.code == 1
    assert "row 4, column age" in res.out


# -- PII in a pipeline run ------------------------------------------------------------------


def _pii_pipeline(folder: Path, pii: dict[str, Any] | None) -> Path:
    """The Adult pipeline on 2,000 training rows with an ``email`` column added."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(4)
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values=["?"]).iloc[:2000]
    df.insert(0, "email", [fake.email() for _ in range(len(df))])
    data = folder / "train.csv"
    df.to_csv(data, index=False, na_rep="?")
    doc = yaml.safe_load(EXAMPLE.read_text())
    train = doc["data"]["sources"]["train"]
    train["path"] = str(data)
    train["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    del doc["data"]["sources"]["test"]
    doc["split"] = {"test_size": 0.25}
    doc["data"]["schema"] = {"email": {"type": "str"}, **doc["data"]["schema"]}
    doc["data"]["pii"] = pii or {}
    doc["evaluate"]["gates"] = {}
    doc.pop("audits")  # about PII, not the model: no audits, no gates
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Home:
    from bastion import Workspace

    ws, issued = Workspace.init(tmp_path / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    return Home(tmp_path / "home", issued.token)


def test_undeclared_pii_column_fails_the_run_naming_it_with_values_masked(
    home: Home, tmp_path: Path
) -> None:
    path = _pii_pipeline(tmp_path, None)
    res = run_cli(["run", str(path)], home.env(), timeout=300)
    assert res.code == 2, res.err
    assert "column 'email'" in res.err and "email" in res.err
    raw = pd.read_csv(tmp_path / "train.csv")["email"].iloc[:50]
    assert not any(value in res.err for value in raw)  # masked, never the value
    assert "data.pii" in res.err


def _table_of(home: Home, result: dict[str, Any], stage: str) -> pd.DataFrame:
    from bastion import Workspace
    from bastion.spec.stage import decode

    digest = next(s for s in result["stages"] if s["name"] == stage)["outputs"]["table"]
    ws = Workspace.open(home.path, PASSPHRASE, token=home.token)
    try:
        return decode("table", ws.store.read_bytes(digest))
    finally:
        ws.close()


def test_pseudonymized_email_is_stable_and_changes_after_rotation(
    home: Home, tmp_path: Path
) -> None:
    path = _pii_pipeline(tmp_path, {"email": {"policy": "pseudonymize"}})
    first = run_cli(["run", str(path), "--json"], home.env(), timeout=300)
    assert first.code == 0, first.err
    table = _table_of(home, first.json(), "pii.train")
    raw = pd.read_csv(tmp_path / "train.csv")["email"]
    assert table["email"].str.fullmatch(r"p_[0-9a-f]{32}").all()
    assert not set(raw) & set(table["email"])
    again = run_cli(["run", str(path), "--json", "--force"], home.env(), timeout=300)
    assert _table_of(home, again.json(), "pii.train")["email"].tolist() == table["email"].tolist()
    rotated = run_cli(["keys", "rotate", "--pseudonym"], home.env())
    assert rotated.code == 0, rotated.err
    after = run_cli(["run", str(path), "--json"], home.env(), timeout=300)
    assert after.code == 0, after.err
    stages = {s["name"]: s for s in after.json()["stages"]}
    assert not stages["pii.train"]["cached"]  # a new key invalidates the cache
    renamed = _table_of(home, after.json(), "pii.train")["email"]
    assert not set(renamed) & set(table["email"])
