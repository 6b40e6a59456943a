"""bastion.stages.validate, custom checks and the fast paths: every declared check runs and is
counted (no silent skips), custom rules name rows and columns, and typed, categorical and
text input give the same findings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError, DataError
from bastion.spec.config import CustomCheck, DataConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.validate import (
    CHECKS,
    TABLE,
    ValidateStage,
    declared_checks,
    validate_table,
)

from .test_validate import SCHEMA, clean

CUSTOM = [
    {"name": "young_or_scored", "expr": "age < 60 or not_null(score)", "message": "a score"},
    {"name": "red_flag", "expr": "color != 'red' or flag or age > 50"},
]


def config(
    checks: list[dict[str, Any]] | None = None, policy: str = "fail", **schema: Any
) -> DataConfig:
    return DataConfig.model_validate(
        {
            "sources": {"s": {"format": "csv", "path": "s.csv", "sha256": "0" * 64}},
            "schema": {**SCHEMA, **schema},
            "label": {"column": "label", "positive": "yes", "map": {"Y": "yes", "N": "no"}},
            "checks": CUSTOM if checks is None else checks,
            "validation": {"policy": policy},
            "show_values": list({**SCHEMA, **schema}),  # values shown: these test the checks
        }
    )


def by_hand(data: DataConfig) -> list[tuple[str, str]]:
    """What the config declares, derived here independently of the module under test."""
    found = [(TABLE, "duplicate_column"), (TABLE, "missing_column"), (TABLE, "extra_column")]
    for col, spec in data.schema_.items():
        found += [(col, "null")] if not spec.nullable else []
        found.append((col, "type"))
        found += [(col, "category")] if spec.categories is not None else []
        found += [(col, "range")] if spec.min is not None or spec.max is not None else []
        found += [(col, "unique")] if spec.unique else []
    found.append((data.label.column, "label_classes"))
    found += [
        ("age, score", "custom:young_or_scored"),
        ("color, flag, age", "custom:red_flag"),
    ][: len(data.checks)]
    return found


# -- no silent skips -----------------------------------------------------------------------


def test_every_declared_check_runs_and_is_counted_even_with_no_failure() -> None:
    data = config()
    found = validate_table(clean(), data)
    assert found.total == 0
    assert found.checks_run == by_hand(data) == declared_checks(data)
    assert found.checks_skipped == []
    assert found.counts == dict.fromkeys(CHECKS, 0) | {
        "custom:young_or_scored": 0,
        "custom:red_flag": 0,
    }


def test_a_check_that_cannot_run_is_listed_as_skipped_with_the_reason() -> None:
    data = config()
    found = validate_table(clean().drop(columns=["score"]), data)
    declared = set(declared_checks(data))
    assert set(found.checks_run) | {(c, k) for c, k, _ in found.checks_skipped} == declared
    assert ("score", "type", "the column is missing") in found.checks_skipped
    assert (
        "age, score",
        "custom:young_or_scored",
        "column 'score' is missing or repeated",
    ) in found.checks_skipped
    assert ("color, flag, age", "custom:red_flag") in found.checks_run
    assert found.counts["missing_column"] == 1


def test_the_report_lists_the_checks_that_ran(ctx: Callable[..., StageContext]) -> None:
    report = ValidateStage("s", config()).run(ctx(), {"table": clean()})["report"]
    assert [tuple(c) for c in report["checks_run"]] == declared_checks(config())
    assert report["checks_skipped"] == []
    assert report["checks"]["custom:red_flag"] == 0
    assert decode("json", encode("json", report)) == report


# -- custom checks -------------------------------------------------------------------------


def test_a_custom_failure_names_the_row_the_columns_and_their_values() -> None:
    table = clean()
    table.loc[5, "flag"] = "false"  # color is green there: fine
    table.loc[2, "flag"] = "0"  # red and not flag
    found = validate_table(table, config())
    (v,) = found.violations
    assert (v.row, v.column, v.check) == (2, "color, flag, age", "custom:red_flag")
    assert v.value == "color=red, flag=0, age=+7"
    assert v.expected == "color != 'red' or flag or age > 50"
    assert v.describe() == (
        "row 2, columns color, flag, age: custom:red_flag: got 'color=red, flag=0, age=+7',"
        " expected color != 'red' or flag or age > 50"
    )
    assert found.counts["custom:red_flag"] == 1
    assert found.by_column == {"color, flag, age": {"custom:red_flag": 1}}
    assert found.bad.tolist() == [i == 2 for i in range(8)]


def test_the_message_is_what_a_failing_row_expected() -> None:
    table = clean()
    table.loc[3, ["age", "score"]] = ["64", None]
    (v,) = validate_table(table, config()).violations
    assert (v.row, v.check, v.value, v.expected) == (
        3,
        "custom:young_or_scored",
        "age=64, score=null",
        "a score",
    )


def test_a_cell_that_failed_its_type_is_not_checked_again_by_a_custom_rule() -> None:
    table = clean()
    table.loc[0, "flag"] = "maybe"  # red row: the rule would fail on a null flag too
    found = validate_table(table, config())
    assert [(v.row, v.column, v.check) for v in found.violations] == [(0, "flag", "type")]


def test_a_custom_rule_still_sees_values_that_broke_their_range() -> None:
    table = clean()
    table.loc[4, ["age", "score"]] = ["150", None]
    found = validate_table(table, config())
    assert [(v.row, v.check) for v in found.violations] == [
        (4, "range"),
        (4, "custom:young_or_scored"),
    ]


def test_custom_failures_are_quarantined_with_reasons(ctx: Callable[..., StageContext]) -> None:
    table = clean()
    table.loc[6, "flag"] = "false"
    out = ValidateStage("s", config(policy="quarantine")).run(ctx(), {"table": table})
    assert out["quarantine"]["row"].tolist() == [6]
    assert out["quarantine"]["reason"][0] == (
        "color, flag, age: custom:red_flag (expected color != 'red' or flag or age > 50)"
    )
    assert out["report"]["checks"]["custom:red_flag"] == 1
    assert len(out["table"]) == 7 and str(out["table"]["age"].dtype) == "int64"


def test_policy_fail_names_the_custom_rule(ctx: Callable[..., StageContext]) -> None:
    table = clean()
    table.loc[6, "flag"] = "false"
    with pytest.raises(DataError, match=r"row 6, columns color, flag, age: custom:red_flag"):
        ValidateStage("s", config()).run(ctx(), {"table": table})


def test_a_bad_expression_is_refused_when_the_config_is_built() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="check 'sneaky': calls are not allowed"):
        config([{"name": "sneaky", "expr": "__import__('os').getcwd() == 'x'"}])


def test_a_bad_expression_built_past_the_config_is_a_config_error() -> None:
    good = config([])
    bad = good.model_copy(
        update={"checks": [CustomCheck(name="sneaky", expr="__import__('os').getcwd() == 'x'")]}
    )  # model_copy skips validation: validate_table still refuses it
    with pytest.raises(ConfigError, match="check 'sneaky': calls are not allowed"):
        validate_table(clean(), bad)


def test_the_fingerprint_changes_with_the_checks() -> None:
    plain = ValidateStage("s", config([])).fingerprint()
    assert "checks" not in plain
    one = ValidateStage("s", config(CUSTOM[:1])).fingerprint()
    two = ValidateStage("s", config(CUSTOM)).fingerprint()
    assert len({repr(plain), repr(one), repr(two)}) == 3


# -- bad input: mixed types, NaN and infinities --------------------------------------------


def test_mixed_types_in_an_int_column_are_reported_by_row_and_column() -> None:
    table = clean().astype({"age": "object"})
    table["age"] = [30, "forty", 2.5, None, np.int64(7), "58", True, 64.0]
    found = validate_table(table, config([]))
    assert [(v.row, v.column, v.check, v.value) for v in found.violations] == [
        (1, "age", "type", "forty"),
        (2, "age", "type", "2.5"),
        (3, "age", "null", None),
        (6, "age", "type", "True"),
        (7, "age", "type", "64.0"),  # a mixed column is read as text: "64.0" is not an int
    ]


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_nan_and_infinities_in_text_are_type_violations(text: str) -> None:
    table = clean()
    table.loc[5, "score"] = text
    found = validate_table(table, config([]))
    assert [(v.row, v.column, v.check, v.value) for v in found.violations] == [
        (5, "score", "type", text)
    ]


def test_infinities_in_a_float_column_are_type_violations_and_nan_is_null() -> None:
    table = clean().drop(columns=["score"])
    table.insert(2, "score", [0.5, np.inf, -np.inf, np.nan, 0.1, 0.2, 0.3, 0.4])
    found = validate_table(table, config([], score={"type": "float", "min": 0, "max": 1}))
    assert [(v.row, v.column, v.check) for v in found.violations] == [
        (1, "score", "type"),
        (2, "score", "type"),
        (3, "score", "null"),
    ]


# -- typed, categorical and text input agree -----------------------------------------------


def typed_frame(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": rng.permutation(n),
            "age": rng.integers(-5, 130, n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 1.2),
            "flag": rng.random(n) < 0.5,
            "color": pd.Series(rng.choice(["red", "green", "blue"], n), dtype="str"),
            "note": pd.Series(rng.choice(["a", "b"], n), dtype="str"),
            "label": pd.Series(rng.choice(["yes", "no", "Y", "maybe"], n), dtype="str"),
        }
    )
    frame.loc[rng.choice(n, 20), "id"] = 7
    return frame


def summary(found: Any) -> tuple[Any, ...]:
    return (
        found.counts,
        found.by_column,
        found.bad.tolist(),
        [(v.row, v.column, v.check) for v in found.violations],
        found.classes,
        found.checks_run,
    )


def test_typed_categorical_and_text_input_give_the_same_findings() -> None:
    data = config()
    frame = typed_frame()
    as_text = frame.astype("str")
    as_text["score"] = frame["score"].map(lambda x: "" if np.isnan(x) else repr(x))
    as_text["score"] = as_text["score"].replace("", None)
    categorical = frame.astype({"color": "category", "label": "category", "note": "category"})
    expected = summary(validate_table(frame, data))
    assert summary(validate_table(as_text, data)) == expected
    assert summary(validate_table(categorical, data)) == expected
    assert expected[0]["unique"] > 0 and expected[0]["range"] > 0


def test_the_typed_view_nulls_bad_cells_and_keeps_the_rest() -> None:
    table = clean()
    table.loc[3, "age"] = "150"
    table.loc[2, "color"] = "blue"
    found = validate_table(table, config([]))
    assert found.typed["age"].isna().tolist() == [i == 3 for i in range(8)]
    assert found.typed["color"].isna().tolist() == [i == 2 for i in range(8)]
    assert found.parsed["age"][3] == 150  # as parsed, for the rules and the quarantine


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=60), st.integers(0, 3))
def test_unique_matches_pandas_duplicated_for_dense_and_sparse_ids(
    values: list[int], spread: int
) -> None:
    ids = pd.Series([v // (10**spread * 2**30) if spread else v for v in values], dtype="int64")
    table = pd.DataFrame({"id": ids})
    data = DataConfig.model_validate(
        {
            "sources": {"s": {"format": "csv", "path": "s.csv", "sha256": "0" * 64}},
            "schema": {"id": {"type": "int", "unique": True}},
            "label": {"column": "id", "positive": "1"},
        }
    )
    found = validate_table(table, data)
    repeats = [v.row for v in found.violations if v.check == "unique"]
    assert repeats == np.flatnonzero(ids.duplicated().to_numpy()).tolist()[: len(repeats)]
    assert found.counts["unique"] == int(ids.duplicated().sum())


_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
TEXT = st.one_of(
    st.text(alphabet=" +-.eE0123456789", max_size=12),
    st.text(max_size=6),
    st.sampled_from(["true", "FALSE", " 1 ", "0", "nan", "inf", "1e400", "١٢", "0x1f"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=20))
def test_text_parsing_matches_the_documented_grammar(cells: list[str]) -> None:
    """int: ASCII sign and up to 18 digits; float: a finite decimal; bool: true/false/1/0;
    each after stripping surrounding whitespace (a reference in plain Python)."""
    table = pd.DataFrame({"i": cells, "f": cells, "b": cells}, dtype="str")
    data = DataConfig.model_validate(
        {
            "sources": {"s": {"format": "csv", "path": "s.csv", "sha256": "0" * 64}},
            "schema": {
                "i": {"type": "int", "nullable": True},
                "f": {"type": "float", "nullable": True},
                "b": {"type": "bool", "nullable": True},
            },
            "label": {"column": "b", "positive": "True"},
        }
    )
    found = validate_table(table, data, limit=1_000)
    for col, ok in (
        ("i", lambda s: bool(_INT.fullmatch(s))),
        ("f", lambda s: bool(_FLOAT.fullmatch(s)) and np.isfinite(float(s))),
        ("b", lambda s: s.lower() in ("true", "false", "1", "0")),
    ):
        bad = [v.row for v in found.violations if v.column == col and v.check == "type"]
        assert bad == [i for i, c in enumerate(cells) if not ok(c.strip())], (col, cells)
    good = [i for i, c in enumerate(cells) if _INT.fullmatch(c.strip())]
    assert [int(found.parsed["i"][i]) for i in good] == [int(cells[i].strip()) for i in good]
