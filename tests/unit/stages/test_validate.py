"""bastion.stages.validate: each check finds a seeded violation at the right row and column;
quarantine sets bad rows aside with reasons (never silently); fail stops the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.errors import DataError
from bastion.spec.config import DataConfig, PipelineConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.ingest import IngestStage
from bastion.stages.validate import CHECKS, ValidateStage, Violation, validate_table

SCHEMA: dict[str, Any] = {
    "id": {"type": "int", "unique": True},
    "age": {"type": "int", "min": 0, "max": 120},
    "score": {"type": "float", "nullable": True, "min": 0, "max": 1},
    "flag": {"type": "bool"},
    "color": {"type": "category", "categories": ["red", "green"]},
    "note": {"type": "str", "nullable": True},
    "label": {"type": "category", "categories": ["no", "yes"]},
}


def data_config(
    policy: str = "fail", max_report: int = 50, show: list[str] | None = None, **schema: Any
) -> DataConfig:
    """These tests check the checks, so every value is shown unless ``show`` says otherwise
    (masking has its own tests)."""
    return DataConfig.model_validate(
        {
            "sources": {"s": {"format": "csv", "path": "s.csv", "sha256": "0" * 64}},
            "schema": {**SCHEMA, **schema},
            "label": {"column": "label", "positive": "yes", "map": {"Y": "yes", "N": "no"}},
            "validation": {"policy": policy, "max_report": max_report},
            "show_values": list({**SCHEMA, **schema}) if show is None else show,
        }
    )


def clean() -> pd.DataFrame:
    """Eight good rows, raw text as ingest produces it."""
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(8)],
            "age": ["30", "41", "+7", " 58 ", "0", "120", "33", "64"],
            "score": ["0.5", None, "1", "0", ".25", "1e-1", "0.75", "0.125"],
            "flag": ["true", "False", "1", "0", "TRUE", "false", "true", "0"],
            "color": ["red", "green", "red", "red", "green", "green", "red", "green"],
            "note": ["a", None, "", "x" * 100, "b", "c", "d", "e"],
            "label": ["yes", "no", "Y", "N", "no", "yes", "no", "Y"],
        },
        dtype="str",
    )


def test_clean_table_passes_and_is_typed(ctx: Callable[..., StageContext]) -> None:
    out = ValidateStage("s", data_config()).run(ctx(), {"table": clean()})
    table, report = out["table"], out["report"]
    assert report["rows_in"] == report["rows_out"] == 8 and report["quarantined"] == 0
    assert report["checks"] == dict.fromkeys(CHECKS, 0)
    assert table["age"].tolist() == [30, 41, 7, 58, 0, 120, 33, 64]
    assert str(table["age"].dtype) == "int64"
    assert table["score"].dtype == "float64" and np.isnan(table["score"][1])
    assert table["flag"].tolist() == [True, False, True, False, True, False, True, False]
    assert table["label"].tolist() == ["yes", "no", "yes", "no", "no", "yes", "no", "yes"]
    assert list(table.columns) == list(SCHEMA)
    assert report["label"]["classes"] == {"no": 4, "yes": 4}
    assert decode("table", encode("table", table)).equals(table)
    assert decode("json", encode("json", report)) == report
    assert out["quarantine"].empty and {"row", "reason"} <= set(out["quarantine"].columns)


def test_declares_the_protocol_attributes() -> None:
    stage = ValidateStage("train", data_config())
    assert stage.name == "validate.train"
    assert stage.inputs == {"table": "ingest.train.table"}
    assert stage.outputs == {"table": "table", "report": "json", "quarantine": "table"}
    assert stage.fingerprint() == ValidateStage("train", data_config()).fingerprint()
    assert stage.fingerprint() != ValidateStage("train", data_config("quarantine")).fingerprint()


SEEDED = [
    ("age", 2, "abc", "type"),
    ("age", 5, "1.5", "type"),
    ("age", 3, "150", "range"),
    ("age", 4, "-1", "range"),
    ("age", 1, None, "null"),
    ("id", 5, "0", "unique"),
    ("id", 7, "99999999999999999999", "type"),
    ("score", 6, "1.2.3", "type"),
    ("score", 6, "inf", "type"),
    ("score", 2, "2.5", "range"),
    ("flag", 7, "maybe", "type"),
    ("flag", 0, None, "null"),
    ("color", 4, "blue", "category"),
    ("color", 3, "Red", "category"),
    ("label", 6, "maybe", "category"),
    ("label", 2, "yes.", "category"),
]


@pytest.mark.parametrize(("column", "row", "value", "check"), SEEDED)
def test_each_check_finds_a_seeded_violation(
    column: str, row: int, value: str | None, check: str
) -> None:
    table = clean()
    table.loc[row, column] = value
    found = validate_table(table, data_config())
    assert [(v.row, v.column, v.check, v.value) for v in found.violations] == [
        (row, column, check, value)
    ]
    assert found.counts[check] == 1 and found.total == 1
    assert found.bad.tolist() == [i == row for i in range(8)]


def test_value_is_truncated_to_60_characters() -> None:
    table = clean()
    table.loc[3, "color"] = "z" * 500
    (v,) = validate_table(table, data_config()).violations
    assert v.value is not None and len(v.value) == 60


def test_typed_input_columns_are_checked_too() -> None:
    table = pd.DataFrame(
        {
            "id": np.arange(4),
            "age": [1.0, 2.5, np.nan, 4.0],
            "score": [0.1, 0.2, np.inf, 0.4],
            "flag": [True, False, True, False],
            "color": ["red"] * 4,
            "note": [None] * 4,
            "label": ["yes", "no", "yes", "no"],
        }
    )
    found = validate_table(table, data_config())
    assert [(v.row, v.column, v.check) for v in found.violations] == [
        (1, "age", "type"),
        (2, "age", "null"),
        (2, "score", "type"),
    ]


def test_missing_and_extra_columns_are_named() -> None:
    table = clean().drop(columns=["note"]).assign(ssn="123-45-6789", extra="x")
    found = validate_table(table, data_config())
    assert [(v.row, v.column, v.check) for v in found.table_level] == [
        (None, "note", "missing_column"),
        (None, "ssn", "extra_column"),
        (None, "extra", "extra_column"),
    ]


@pytest.mark.parametrize("policy", ["fail", "quarantine"])
def test_table_level_violations_fail_under_either_policy(
    ctx: Callable[..., StageContext], policy: str
) -> None:
    table = clean().assign(extra="x")
    with pytest.raises(DataError, match="column extra: extra_column"):
        ValidateStage("s", data_config(policy)).run(ctx(), {"table": table})


def test_label_must_have_exactly_two_classes_including_positive() -> None:
    table = clean()
    table["label"] = "no"
    found = validate_table(table, data_config())
    (v,) = found.table_level
    assert (v.column, v.check, v.value) == ("label", "label_classes", "'no'")
    assert "exactly two classes including 'yes'" in v.describe()


def test_label_map_is_applied_before_the_category_check() -> None:
    table = clean()
    table["label"] = ["Y", "N"] * 4
    found = validate_table(table, data_config())
    assert found.total == 0
    assert found.typed["label"].tolist() == ["yes", "no"] * 4


def test_fail_policy_raises_with_row_and_column(ctx: Callable[..., StageContext]) -> None:
    table = clean()
    table.loc[3, "age"] = "150"
    table.loc[5, "color"] = "blue"
    with pytest.raises(DataError) as info:
        ValidateStage("train", data_config()).run(ctx(), {"table": table})
    msg = str(info.value)
    assert msg.startswith("validate.train: 2 violation(s) (category 1, range 1): ")
    assert "row 3, column age: range: got '150', expected <= 120" in msg
    assert "row 5, column color: category: got 'blue'" in msg
    assert info.value.failures[0] == "row 3, column age: range: got '150', expected <= 120"
    assert len(info.value.failures) == 2


def test_quarantine_keeps_good_rows_and_stores_bad_ones_with_reasons(
    ctx: Callable[..., StageContext],
) -> None:
    table = clean()
    table.loc[1, "age"] = "old"
    table.loc[1, "color"] = "blue"
    table.loc[6, "id"] = "0"
    out = ValidateStage("s", data_config("quarantine")).run(ctx(), {"table": table})
    good, bad, report = out["table"], out["quarantine"], out["report"]
    assert good["id"].tolist() == [0, 2, 3, 4, 5, 7]
    assert bad["row"].tolist() == [1, 6]
    assert bad["age"].tolist() == ["old", "33"]  # raw values, as they came in
    assert bad["reason"][0] == (
        "age: type (expected an integer); color: category (expected one of 'red', 'green')"
    )
    assert bad["reason"][1].startswith("id: unique")
    assert (report["rows_in"], report["rows_out"], report["quarantined"]) == (8, 6, 2)
    assert report["checks"]["type"] == report["checks"]["category"] == 1
    assert report["checks"]["unique"] == 1 and report["violations_total"] == 3
    assert report["by_column"] == {
        "age": {"type": 1},
        "color": {"category": 1},
        "id": {"unique": 1},
    }
    assert [v["row"] for v in report["violations"]] == [1, 1, 6]
    assert decode("table", encode("table", bad)).equals(bad)


def test_report_lists_at_most_max_report(ctx: Callable[..., StageContext]) -> None:
    table = pd.concat([clean()] * 10, ignore_index=True)
    table["id"] = [str(i) for i in range(80)]
    table.loc[::2, "age"] = "x"
    out = ValidateStage("s", data_config("quarantine", max_report=5)).run(ctx(), {"table": table})
    assert out["report"]["violations_total"] == 40
    assert [v["row"] for v in out["report"]["violations"]] == [0, 2, 4, 6, 8]
    assert out["report"]["quarantined"] == 40


def test_violation_describe() -> None:
    assert Violation(3, "age", "range", "150", "<= 90").describe() == (
        "row 3, column age: range: got '150', expected <= 90"
    )
    assert Violation(4, "age", "null", None, "a value").describe() == (
        "row 4, column age: null: got null, expected a value"
    )


@pytest.fixture(scope="module")
def adult_tables(adult_dir: Path) -> dict[str, pd.DataFrame]:
    from bastion.spec.loader import load_pipeline

    config, _ = load_pipeline(adult_dir / "pipeline.yaml")
    c = StageContext(
        config=config, base_dir=adult_dir, seed=0, actor="t", run_id="r", event=lambda *_: None
    )
    return {
        n: IngestStage(n, config.data.sources[n]).run(c, {})["table"] for n in ("train", "test")
    }


@pytest.mark.parametrize(("name", "rows"), [("train", 32561), ("test", 16281)])
def test_real_adult_files_pass_with_policy_fail(
    adult_config: PipelineConfig,
    adult_tables: dict[str, pd.DataFrame],
    ctx: Callable[..., StageContext],
    name: str,
    rows: int,
) -> None:
    assert adult_config.data.validation.policy == "fail"
    out = ValidateStage(name, adult_config.data).run(ctx(), {"table": adult_tables[name]})
    table = out["table"]
    assert len(table) == rows and out["report"]["violations_total"] == 0
    assert set(table["Y"].unique()) == {"<=50K", ">50K"}
    assert str(table["age"].dtype) == "int64"
    assert table["workclass"].isna().sum() > 0  # "?" became null, allowed by nullable
    assert table["age"].between(17, 90).all()


def test_a_poisoned_adult_row_is_caught(
    adult_config: PipelineConfig,
    adult_tables: dict[str, pd.DataFrame],
    ctx: Callable[..., StageContext],
) -> None:
    table = adult_tables["train"].copy()
    table.loc[1234, "age"] = "200"
    table.loc[20000, "Y"] = ">5OK"
    with pytest.raises(DataError) as info:
        ValidateStage("train", adult_config.data).run(ctx(), {"table": table})
    # the Adult pipeline shows no values: the row, column and rule, the value masked
    assert info.value.failures[0] == "row 1234, column age: range: got '***', expected <= 90"
    assert info.value.failures[1].startswith("row 20000, column Y: category: got '>***'")


# -- values stay inside ------------------------------------------------------------------------

SSN, EMAIL = "123-45-6789", "jane.doe@example.com"


@pytest.mark.parametrize("policy", ["fail", "quarantine"])
def test_values_are_masked_in_violations_messages_and_reports(
    ctx: Callable[..., StageContext], policy: str
) -> None:
    table = clean()
    table.loc[2, "color"] = SSN
    table.loc[5, "note"] = None
    table.loc[4, "age"] = EMAIL
    data = data_config(policy, show=[])
    found = validate_table(table, data)
    shown = {(v.row, v.column, v.check): v.value for v in found.violations}
    assert shown == {(2, "color", "category"): "***-**-6789", (4, "age", "type"): "j***@e***.com"}
    if policy == "fail":
        with pytest.raises(DataError) as info:
            ValidateStage("s", data).run(ctx(), {"table": table})
        text = str(info.value) + repr(info.value.failures)
        assert "row 2, column color: category: got '***-**-6789'" in text
    else:
        out = ValidateStage("s", data).run(ctx(), {"table": table})
        text = repr(out["report"])
        assert out["report"]["quarantined"] == 2
    assert SSN not in text and EMAIL not in text and "6789" in text


def test_a_column_opted_in_shows_its_values_and_only_its_own() -> None:
    table = clean()
    table.loc[2, "color"] = SSN
    table.loc[4, "age"] = EMAIL
    found = validate_table(table, data_config(show=["color"]))
    shown = {(v.row, v.column): v.value for v in found.violations}
    assert shown == {(2, "color"): SSN, (4, "age"): "j***@e***.com"}


def test_label_classes_show_declared_classes_and_mask_others() -> None:
    table = clean()
    table["label"] = ["yes"] * 3 + ["no"] * 3 + [SSN] * 2
    data = data_config(show=[], label={"type": "str"})
    (v,) = [v for v in validate_table(table, data).violations if v.check == "label_classes"]
    assert v.value == "'***-**-6789', 'no', 'yes'"
