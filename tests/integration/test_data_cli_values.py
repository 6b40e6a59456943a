"""``bastion data check`` and ``bastion data screen`` print rows, columns and rules, and
mask values unless a column is opted in (``data.show_values``, ``--show-values``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import run_cli
from tests.helpers.adult import DATA

SSN = "078-05-1120"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}


def _pipeline(folder: Path, show: list[str]) -> Path:
    doc = {
        "name": "tiny",
        "data": {
            "sources": {"train": {"format": "csv", "path": "t.csv", "unsafe_unpinned": True}},
            "schema": {
                "plan": {"type": "category", "categories": ["basic", "pro"]},
                "y": {"type": "category", "categories": ["no", "yes"]},
            },
            "label": {"column": "y", "positive": "yes"},
            "show_values": show,
        },
        "features": {"categorical": {"columns": ["plan"]}},
        "model": {"estimator": "LogisticRegression"},
        "release": {"name": "tiny"},
    }
    path = folder / f"pipeline-{len(show)}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_data_check_masks_a_failing_value_unless_its_column_is_shown(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    data.write_text(f"plan,y\nbasic,no\n{SSN},yes\npro,no\n")
    res = run_cli(["data", "check", str(data), "--pipeline", str(_pipeline(tmp_path, []))], _env())
    assert res.code == 1
    assert "row 1, column plan: category: got '***-**-1120'" in res.out
    assert SSN not in res.out + res.err
    shown = run_cli(
        ["data", "check", str(data), "--pipeline", str(_pipeline(tmp_path, ["plan"])), "--json"],
        _env(),
    )
    assert shown.code == 1 and SSN in shown.out


def test_data_screen_masks_the_outliers_rarest_value_unless_shown(tmp_path: Path) -> None:
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values=["?"]).iloc[:3000]
    path = tmp_path / "small.csv"
    df.to_csv(path, index=False, na_rep="?")
    args = ["data", "screen", str(path), "--label", "Y", "--json", "--unsafe-skip", "backdoor"]
    masked = run_cli(args, _env())
    assert masked.code == 0, masked.err
    details = [f["detail"] for f in masked.json()["findings"] if f["detector"] == "outliers"]
    assert details
    found = [re.search(r"rarest value (.+?)=(.*)$", d) for d in details]
    columns = {m.group(1) for m in found if m}
    column = sorted(c for c in columns if not pd.api.types.is_numeric_dtype(df[c]))[0]
    raw = {str(v) for v in df[column].dropna().unique()}
    assert not any(m.group(2).strip("'") in raw for m in found if m and len(m.group(2)) > 6)
    shown = run_cli([*args, "--show-values", column], _env())
    plain = [f["detail"] for f in shown.json()["findings"] if f["detector"] == "outliers"]
    values = [re.search(r"rarest value (.+?)=(.*)$", d) for d in plain]
    assert any(m and m.group(1) == column and m.group(2).strip("'") in raw for m in values)
