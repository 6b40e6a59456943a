"""The request contract: every field named, typed, bounded; hostile bodies refused with 422."""

from __future__ import annotations

import math

import orjson
import pytest

from bastion.serving.requests import MAX_PROBLEMS, RequestRefused, RequestSchema
from bastion.spec.config import ColumnSpec

SPEC = {
    "age": ColumnSpec(type="int", min=17, max=90),
    "score": ColumnSpec(type="float", min=0, max=1),
    "job": ColumnSpec(type="category", nullable=True, categories=["a", "b"]),
    "flag": ColumnSpec(type="bool"),
    "Y": ColumnSpec(type="category", categories=["no", "yes"]),
}
COLUMNS = ["age", "score", "job", "flag"]
ROW = {"age": 30, "score": 0.5, "job": "a", "flag": True}


def schema(max_batch: int = 10) -> RequestSchema:
    return RequestSchema.from_config(SPEC, COLUMNS, max_batch=max_batch)


def body(*rows: object) -> bytes:
    return orjson.dumps({"instances": list(rows)})


def refused(raw: bytes, max_batch: int = 10) -> RequestRefused:
    with pytest.raises(RequestRefused) as info:
        schema(max_batch).parse(raw)
    assert info.value.status == 422
    return info.value


def test_valid_rows_come_back_column_by_column() -> None:
    cols = schema().parse(body(ROW, {**ROW, "job": None, "score": 1}))
    assert cols["age"] == [30, 30]
    assert cols["score"] == [0.5, 1]
    assert cols["job"][0] == "a" and math.isnan(cols["job"][1])
    assert list(cols) == COLUMNS


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ({**ROW, "extra": 1}, "extra", "not a field of this model"),
        ({k: v for k, v in ROW.items() if k != "age"}, "age", "present"),
        ({**ROW, "age": "30"}, "age", "integer"),
        ({**ROW, "age": 30.5}, "age", "integer"),
        ({**ROW, "age": True}, "age", "integer"),
        ({**ROW, "age": 91}, "age", "[17, 90]"),
        ({**ROW, "score": -0.1}, "score", "[0, 1]"),
        ({**ROW, "score": False}, "score", "number"),
        ({**ROW, "job": "c"}, "job", "one of a, b"),
        ({**ROW, "flag": 1}, "flag", "true or false"),
        ({**ROW, "flag": None}, "flag", "not null"),
    ],
    ids=[
        "unknown-field",
        "missing-field",
        "string-for-int",
        "fraction-for-int",
        "bool-for-int",
        "above-max",
        "below-min",
        "bool-for-float",
        "unknown-category",
        "int-for-bool",
        "null-not-nullable",
    ],
)
def test_bad_field_is_refused_naming_instance_and_field(
    row: dict[str, object], field: str, needle: str
) -> None:
    err = refused(body(ROW, row))
    assert err.problems[0]["instance"] == 1
    assert err.problems[0]["field"] == field
    assert needle in err.problems[0]["expected"]
    assert f"instances[1].{field}" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"instances": [{"age": 30, "score": NaN, "job": "a", "flag": true}]}',
        b'{"instances": [{"age": 30, "score": Infinity, "job": "a", "flag": true}]}',
        b'{"instances": [{"age": 30, "score": 1e999, "job": "a", "flag": true}]}',
    ],
    ids=["nan-literal", "infinity-literal", "overflow-to-inf"],
)
def test_nan_and_infinities_are_refused(raw: bytes) -> None:
    refused(raw)


def test_integer_columns_take_whole_floats_as_json_schema_does() -> None:
    rule = schema().rules[0]
    assert rule.check(62.0) is None  # JSON Schema's "integer" includes 62.0
    assert rule.check(62.5) == "an integer"
    assert rule.check(95.0) is not None  # still range-checked
    assert rule.check(math.nan) == "an integer"


def test_float_check_refuses_non_finite_values_directly() -> None:
    rule = schema().rules[1]
    assert rule.check(math.nan) == "a finite number"
    assert rule.check(math.inf) == "a finite number"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"instances": []}',
        b'{"instances": {}}',
        b'{"rows": []}',
        b'{"instances": [1]}',
        b'{"instances": [], "x": 1}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_refused(raw: bytes) -> None:
    refused(raw)


def test_batch_over_the_limit_is_refused() -> None:
    err = refused(body(*[ROW] * 4), max_batch=3)
    assert err.decision == "batch_too_large" and "at most 3" in err.message


def test_problem_list_is_bounded() -> None:
    err = refused(body(*[{"junk": i} for i in range(100)]), max_batch=1000)
    assert len(err.problems) == MAX_PROBLEMS
    assert "problem(s) in all" in err.message


def test_schema_needs_every_model_column_in_the_data_schema() -> None:
    with pytest.raises(ValueError, match="zzz"):
        RequestSchema.from_config(SPEC, ["age", "zzz"], max_batch=1)


def test_instance_schema_carries_types_ranges_and_enums() -> None:
    doc = schema().instance_schema()
    assert doc["additionalProperties"] is False
    assert doc["required"] == COLUMNS
    assert doc["properties"]["age"] == {"type": "integer", "minimum": 17, "maximum": 90}
    assert doc["properties"]["job"]["enum"] == ["a", "b", None]
    assert doc["properties"]["flag"] == {"type": "boolean"}


def test_a_declared_field_that_is_not_an_input_is_named_as_such_with_the_inputs() -> None:
    # Y is declared in the data schema (the label) but the model does not take it
    err = refused(body({**ROW, "Y": "yes"}))
    assert err.problems == [
        {
            "instance": 0,
            "field": "Y",
            "expected": "absent: declared in the data schema but not an input of this model"
            " (data minimisation)",
        }
    ]
    assert err.message.startswith(
        "instances[0].Y: declared in the data schema but not an input of this model"
    )
    assert "--drop-declared-fields" in err.message
    assert "this model takes: age, score, job, flag (1 problem(s) in all)" in err.message
    assert "unknown fields are refused" not in err.message


def test_an_undeclared_field_is_not_a_field_of_this_model() -> None:
    err = refused(body({**ROW, "zodiac": "leo"}))
    assert err.message == (
        "instances[0].zodiac: not a field of this model; this model takes: age, score, job,"
        " flag (1 problem(s) in all)"
    )
    assert err.problems[0]["expected"] == "absent: not a field of this model"


def test_dropping_declared_fields_accepts_them_unread_but_never_undeclared_ones() -> None:
    lenient = RequestSchema.from_config(SPEC, COLUMNS, max_batch=10, drop_declared=True)
    # the label's value is not even checked: it is dropped, never read
    cols = lenient.parse(body({**ROW, "Y": "not a category"}, ROW))
    assert list(cols) == COLUMNS and cols["age"] == [30, 30]
    with pytest.raises(RequestRefused) as info:
        lenient.parse(body({**ROW, "Y": "yes", "zodiac": "leo"}))
    assert [p["field"] for p in info.value.problems] == ["zodiac"]
    assert "drop" not in info.value.message  # no hint to drop what is already dropped
    with pytest.raises(RequestRefused) as info:  # inputs are still required
        lenient.parse(body({"Y": "yes", **{k: v for k, v in ROW.items() if k != "job"}}))
    assert info.value.problems[0] == {"instance": 0, "field": "job", "expected": "present"}


def test_the_openapi_instance_lists_dropped_fields_only_when_they_are_dropped() -> None:
    assert "Y" not in schema().instance_schema()["properties"]
    lenient = RequestSchema.from_config(SPEC, COLUMNS, max_batch=10, drop_declared=True)
    doc = lenient.instance_schema()
    assert "dropped unread" in doc["properties"]["Y"]["description"]
    assert doc["required"] == COLUMNS and doc["additionalProperties"] is False


def test_a_batch_refusal_says_which_setting_bounds_it() -> None:
    limited = RequestSchema.from_config(
        SPEC, COLUMNS, max_batch=3, batch_limit="the server's --burst; --burst raises it"
    )
    with pytest.raises(RequestRefused) as info:
        limited.parse(body(*[ROW] * 4))
    assert info.value.message == (
        "instances: expected at most 3 rows per request, got 4"
        " (the server's --burst; --burst raises it)"
    )


def test_a_long_input_list_is_capped_in_the_message() -> None:
    spec = {f"c{i}": ColumnSpec(type="int") for i in range(40)}
    wide = RequestSchema.from_config(spec, list(spec), max_batch=1)
    with pytest.raises(RequestRefused) as info:
        wide.parse(orjson.dumps({"instances": [{"zz": 1}]}))
    assert "c23, ... (40 in all; GET /openapi.json lists them)" in info.value.message
    assert "c24" not in info.value.message


def test_describe_gives_each_input_its_type_and_what_is_allowed() -> None:
    assert schema().describe() == [
        {"name": "age", "type": "int", "nullable": False, "min": 17, "max": 90},
        {"name": "score", "type": "float", "nullable": False, "min": 0.0, "max": 1.0},
        {"name": "job", "type": "category", "nullable": True, "categories": ["a", "b"]},
        {"name": "flag", "type": "bool", "nullable": False},
    ]
