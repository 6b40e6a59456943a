"""bastion.spec.loader: every bad pipeline file is one ConfigError naming file:line:col,
the key path, what was expected and what was given — and nothing in the file can run code."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError
from bastion.spec.config import PipelineConfig
from bastion.spec.loader import (
    MAX_BYTES,
    MAX_REPORTED,
    load_pipeline,
    parse_pipeline,
    pipeline_json_schema,
)

ADULT = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "pipeline.yaml"
PIN = "0" * 61 + "abc"

# Line numbers below refer to this file: keep it in sync with the tests.
BASE = f"""\
name: demo
data:
  sources:
    main:
      format: csv
      path: data.csv
      sha256: {PIN}
  schema:
    x: {{type: int}}
    y: {{type: category, categories: [a, b]}}
  label: {{column: y, positive: b}}
features:
  numeric: {{columns: [x]}}
model:
  estimator: LogisticRegression
release:
  name: demo
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "pipeline.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error(tmp_path: Path, text: str | bytes) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") or f"{path}" in message
    return message.replace(f"{path}", "pipeline.yaml")


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def test_valid_file_loads_and_returns_its_exact_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    config, raw = load_pipeline(path)
    assert isinstance(config, PipelineConfig)
    assert config.data.sources["main"].sha256 == PIN
    assert raw == path.read_bytes()


def test_adult_pipeline_loads(tmp_path: Path) -> None:
    config, raw = load_pipeline(ADULT)
    assert hashlib.sha256(raw).hexdigest() == hashlib.sha256(ADULT.read_bytes()).hexdigest()
    assert config.name == "adult-income" and config.seed == 42
    assert list(config.data.schema_) == [
        "age",
        "workclass",
        "fnlwgt",
        "education",
        "education-num",
        "marital-status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "capital-gain",
        "capital-loss",
        "hours-per-week",
        "native-country",
        "Y",
    ]
    assert config.data.schema_["Y"].categories == ["<=50K", ">50K"]
    assert config.data.label.map == {"<=50K.": "<=50K", ">50K.": ">50K"}
    assert config.split.test_source == "test"
    assert config.evaluate.gates == {"min_accuracy": 0.84, "min_roc_auc": 0.90}


def test_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("  sources:\n", "  sourcez: {}\n  sources:\n"))
    assert msg == (
        "pipeline.yaml:3:3: data.sourcez: unknown key (expected one of: checks, label, pii,"
        " pii_scan, schema, screen, sensitive, show_values, sources, validation)"
    )


def test_wrong_type_names_expected_and_given(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("name: demo\n", "name: demo\nseed: many\n"))
    assert msg == "pipeline.yaml:2:1: seed: expected an integer, got 'many'"


def test_wrong_type_deep_in_a_flow_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("x: {type: int}", "x: {type: int, min: lots}"))
    assert msg == "pipeline.yaml:9:20: data.schema.x.min: expected a number, got 'lots'"


def test_list_where_a_string_is_expected(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("path: data.csv", "path: [data.csv]"))
    assert msg == "pipeline.yaml:6:7: data.sources.main.path: expected a string, got a list"


def test_missing_key_points_at_the_parent_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("label: {column: y, positive: b}", "label: {column: y}"))
    assert msg == "pipeline.yaml:11:3: data.label: missing required key 'positive'"


def test_missing_top_level_key_points_at_the_file_start(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("release:\n  name: demo\n", ""))
    assert msg == "pipeline.yaml:1:1: missing required key 'release'"


def test_pattern_mismatch_shows_the_pattern(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("name: demo\n", "name: Demo Pipeline\n"))
    assert msg == (
        "pipeline.yaml:1:1: name: expected a string matching ^[a-z0-9][a-z0-9._-]{0,63}$,"
        " got 'Demo Pipeline'"
    )


def test_enum_lists_the_allowed_values(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("format: csv", "format: xls"))
    assert msg == (
        "pipeline.yaml:5:7: data.sources.main.format: expected one of: csv, parquet, sql; got 'xls'"
    )


def test_enum_inside_a_list_names_the_item(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("release:", "evaluate:\n  metrics: [accuracy, vibes]\nrelease:"))
    assert msg.startswith("pipeline.yaml:17:23: evaluate.metrics[1]: expected one of: accuracy,")
    assert msg.endswith("; got 'vibes'")


def test_bound_violation(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("name: demo\n", "name: demo\nseed: -1\n"))
    assert msg == "pipeline.yaml:2:1: seed: expected a number >= 0, got -1"


def test_model_rule_is_reported_at_its_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, edit(f"      sha256: {PIN}\n", ""))
    assert msg == (
        "pipeline.yaml:4:5: data.sources.main: missing 'sha256' pin (or set"
        " 'unsafe_unpinned: true', which is audited)"
    )


def test_yaml_syntax_error_has_the_yaml_position(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("format: csv", "format: csv: bad"))
    assert msg == "pipeline.yaml:5:18: YAML syntax error: mapping values are not allowed here"


def test_unclosed_flow_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("x: {type: int}", "x: {type: int"))
    assert msg.startswith("pipeline.yaml:10:6: YAML syntax error:")


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: pipeline file not found"):
        load_pipeline(path)


def test_directory_is_not_a_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_pipeline(tmp_path)


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("- a\n- b\n", "a list"),
        ("", "nothing (the file is empty)"),
        ("# just a comment\n", "nothing (the file is empty)"),
        ("just words\n", "'just words'"),
        ("42\n", "42"),
    ],
)
def test_file_that_is_not_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    expected = f"pipeline.yaml:1:1: expected a mapping at the top level, got {got}"
    assert error(tmp_path, text) == expected


def test_duplicate_top_level_key_is_refused(tmp_path: Path) -> None:
    # PyYAML alone would silently keep the second name.
    msg = error(tmp_path, BASE + "name: other\n")
    assert msg == "pipeline.yaml:18:1: name: duplicate key (first defined on line 1)"


def test_duplicate_nested_key_is_refused(tmp_path: Path) -> None:
    text = edit("      path: data.csv\n", "      path: data.csv\n      path: evil.csv\n")
    assert error(tmp_path, text) == (
        "pipeline.yaml:7:7: data.sources.main.path: duplicate key (first defined on line 6)"
    )


def test_duplicate_key_in_flow_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("x: {type: int}", "x: {type: int, type: float}"))
    assert msg == "pipeline.yaml:9:20: data.schema.x.type: duplicate key (first defined on line 9)"


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        edit("    main:\n", "    main: &main\n").replace(
            "  schema:\n", "    other:\n      <<: *main\n      path: other.csv\n  schema:\n", 1
        )
        + "split: {test_source: other}\n"
    )
    config, _ = load_pipeline(write(tmp_path, text))
    assert config.data.sources["other"].path == "other.csv"
    assert config.data.sources["other"].sha256 == PIN


def test_several_errors_one_per_line_sorted(tmp_path: Path) -> None:
    text = edit("name: demo\n", "name: Demo\nseed: many\n").replace("format: csv", "format: xls")
    lines = error(tmp_path, text).splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        "pipeline.yaml:1:1",
        "pipeline.yaml:2:1",
        "pipeline.yaml:6:7",
    ]


def test_many_errors_are_capped(tmp_path: Path) -> None:
    extra = "".join(f"  extra{i}: {i}\n" for i in range(MAX_REPORTED + 3))
    lines = error(tmp_path, edit("  schema:\n", extra + "  schema:\n")).splitlines()
    assert len(lines) == MAX_REPORTED + 1
    assert lines[0].startswith("pipeline.yaml:8:3: data.extra0: unknown key")
    assert lines[-1] == "... and 3 more"


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    text = edit("name: demo\n", f"name: demo\nseed: {tag}\n")
    msg = error(tmp_path, text)
    assert msg == "pipeline.yaml:2:7: this YAML tag is not allowed (plain data only)"
    assert not marker.exists()


def test_bad_timestamp_is_positioned(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("name: demo\n", "name: demo\nseed: 2001-13-01\n"))
    assert msg.startswith("pipeline.yaml:2:7: cannot load this value (month must be in 1..12)")


def test_unhashable_key_is_positioned(tmp_path: Path) -> None:
    msg = error(tmp_path, edit("name: demo\n", "name: demo\nseed: {[1]: 2}\n"))
    assert msg == "pipeline.yaml:2:8: a mapping key must be a plain value"


def test_billion_laughs_stops_early(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    msg = error(tmp_path, "\n".join(lines) + "\n")
    assert "YAML nodes" in msg
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n"])
def test_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    assert "nested deeper than" in error(tmp_path, text)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested deeper than" in error(tmp_path, "a: " + "[" * 3000 + "]" * 3000 + "\n")


def test_invalid_utf8_is_positioned(tmp_path: Path) -> None:
    assert error(tmp_path, b"name: demo\nseed: \xff\n") == "pipeline.yaml:2:7: not valid UTF-8"


def test_control_character_is_positioned(tmp_path: Path) -> None:
    msg = error(tmp_path, "name: demo\nseed: 1\x01\n")
    assert msg == "pipeline.yaml:2:8: character U+0001 is not allowed in YAML"


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    msg = error(tmp_path, "# " + "x" * MAX_BYTES + "\n")
    assert msg == f"pipeline.yaml: pipeline file is larger than {MAX_BYTES} bytes"


def test_json_schema_is_reexported() -> None:
    schema = pipeline_json_schema()
    assert schema["title"] == "Bastion pipeline"
    assert {"name", "data", "features", "model", "release"} <= set(schema["properties"])


# -- property: whatever the bytes, the loader answers with a config or ConfigError --------

_YAMLISH = st.text(
    alphabet=st.sampled_from([*"abcxyz019 -:,.[]{}&*!|>?'\"#%@`\n\t\\<=", "\x00", "é"]),
    max_size=200,
)


def _mutations() -> st.SearchStrategy[str]:
    lines = ADULT.read_text().splitlines(keepends=True)
    return st.tuples(
        st.integers(0, len(lines) - 1),
        st.integers(0, 80),
        st.text(max_size=12),
        st.booleans(),
    ).map(
        lambda t: "".join(
            lines[: t[0]]
            + ([lines[t[0]][: t[1]] + t[2] + lines[t[0]][t[1] :]] if t[3] else [])
            + lines[t[0] + 1 :]
        )
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.one_of(_YAMLISH, _mutations()))
def test_garbage_never_raises_anything_but_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config, _ = load_pipeline(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert isinstance(config, PipelineConfig)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError):
        load_pipeline(path)


def test_a_custom_check_that_is_not_allowed_fails_at_load_naming_it(tmp_path: Path) -> None:
    text = edit(
        "  label: {column: y, positive: b}\n",
        "  label: {column: y, positive: b}\n"
        "  checks:\n"
        "    - {name: sneaky, expr: \"__import__('os').system('id')\"}\n",
    )
    msg = error(tmp_path, text)
    assert msg.startswith(
        "pipeline.yaml:13:22: data.checks[0].expr: check 'sneaky': calls are not allowed"
    )


def test_a_custom_check_on_an_unknown_column_fails_at_load(tmp_path: Path) -> None:
    text = edit(
        "  label: {column: y, positive: b}\n",
        "  label: {column: y, positive: b}\n  checks: [{name: pos, expr: 'z > 0'}]\n",
    )
    assert "check 'pos'" in error(tmp_path, text) and "'z'" in error(tmp_path, text)


# -- ${NAME} in a source URL -------------------------------------------------------------------

SQL = """\
    main:
      format: sql
      url: postgresql://reader:${PGPASS}@db.example/prod?sslmode=require
      query: SELECT x, y FROM t
      sha256: {PIN}
""".replace("{PIN}", PIN)


def test_url_variable_not_allowed_is_refused_at_its_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_ALLOW_ENV", raising=False)
    monkeypatch.setenv("PGPASS", "hunter2-do-not-show")
    text = edit(f"    main:\n      format: csv\n      path: data.csv\n      sha256: {PIN}\n", SQL)
    msg = error(tmp_path, text)
    assert msg.startswith("pipeline.yaml:6:32: data.sources.main.url: environment variable PGPASS")
    assert "BASTION_ALLOW_ENV=PGPASS" in msg and "hunter2" not in msg
    monkeypatch.setenv("BASTION_ALLOW_ENV", "PGPASS")
    config, _ = load_pipeline(write(tmp_path, text))
    assert config.data.sources["main"].url == (
        "postgresql://reader:${PGPASS}@db.example/prod?sslmode=require"
    )


@pytest.mark.parametrize("name", ["BASTION_MASTER_KEY", "BASTION_TOKEN", "BASTION_HOME"])
def test_bastion_variables_are_refused_even_when_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("BASTION_ALLOW_ENV", f"PGPASS,{name}")
    text = edit(
        f"    main:\n      format: csv\n      path: data.csv\n      sha256: {PIN}\n",
        SQL.replace("${PGPASS}", "x").replace("/prod", "/${" + name + "}"),
    )
    msg = error(tmp_path, text)
    assert f"environment variable {name} may not be used" in msg
    assert msg.startswith("pipeline.yaml:6:")
    assert load_pipeline(write(tmp_path, text), check_env=False)[0].data.sources["main"].url


def test_show_values_must_name_schema_columns_and_not_pii(tmp_path: Path) -> None:
    text = edit(
        "  label: {column: y, positive: b}\n",
        "  label: {column: y, positive: b}\n  show_values: [x, z]\n",
    )
    assert error(tmp_path, text) == (
        "pipeline.yaml:12:20: data.show_values[1]: column 'z' is not in data.schema"
    )
    text = edit(
        "  label: {column: y, positive: b}\n",
        "  label: {column: y, positive: b}\n  show_values: [x]\n  pii: {x: {policy: drop}}\n",
    )
    assert error(tmp_path, text) == (
        "pipeline.yaml:12:17: data.show_values[0]: PII column 'x' is always masked"
    )


def test_stored_bytes_parse_as_the_file_does_and_errors_name_the_given_name() -> None:
    """The server reads a model's pipeline file from the store: same checks, no temp file."""
    config, raw = load_pipeline(ADULT)
    assert parse_pipeline(raw, "stored pipeline file abc") == config
    with pytest.raises(ConfigError) as info:
        parse_pipeline(b"name: demo\nseed: 1\x01\n", "stored pipeline file abc")
    assert str(info.value) == (
        "stored pipeline file abc:2:8: character U+0001 is not allowed in YAML"
    )
    with pytest.raises(ConfigError) as info:
        parse_pipeline(b"# " + b"x" * MAX_BYTES + b"\n", "stored pipeline file abc")
    assert str(info.value) == (
        f"stored pipeline file abc: pipeline file is larger than {MAX_BYTES} bytes"
    )
