"""Everything decidable from the pipeline file and its schema fails when the file loads
(``Pipeline.from_yaml``), before any secret is asked for or any data is read, as ONE line
``file:line:col: key.path: what is wrong; what is expected`` cited at the offending node
itself — the list item, the key — never at its parent or at line 2 (issue 12, item 3)."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from bastion import Pipeline
from bastion.errors import ConfigError, PinMismatch
from bastion.spec.config import METRICS
from bastion.spec.loader import load_pipeline
from bastion.spec.stage import StageContext
from bastion.stages.evaluate import EvaluateStage
from bastion.stages.ingest import IngestStage

CSV = b"x,g,y\n1,a,0\n2,b,1\n3,a,0\n4,b,1\n5,a,0\n6,b,1\n7,a,1\n8,b,0\n"
PIN = hashlib.sha256(CSV).hexdigest()

# Line numbers below refer to this file: keep it in sync with the tests.
BASE = f"""\
# a pipeline for the load-time checks
name: demo
data:
  sources:
    main:
      format: csv
      path: data.csv
      sha256: {PIN}
  schema:
    x: {{type: int}}
    g: {{type: category, categories: [a, b]}}
    y: {{type: int}}
  label: {{column: y, positive: 1}}
  sensitive: [g]
features:
  numeric: {{columns: [x]}}
  categorical: {{columns: []}}
model:
  estimator: LogisticRegression
  params: {{C: 1.0}}
evaluate:
  gates: {{min_accuracy: 0.0}}
release:
  name: demo
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data.csv").write_bytes(CSV)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def refused(tmp_path: Path, text: str) -> str:
    """The one-line message ``Pipeline.from_yaml`` refuses ``text`` with."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Pipeline.from_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return message.replace(str(path), "pipeline.yaml")


def test_the_base_file_loads(tmp_path: Path) -> None:
    pipeline = Pipeline.from_yaml(write(tmp_path, BASE))
    assert pipeline.config.data.label.positive == 1


# -- a field's own line, not its parent's ------------------------------------------------


def test_a_feature_missing_from_the_schema_cites_its_list_item(tmp_path: Path) -> None:
    text = edit("numeric: {columns: [x]}", "numeric: {columns: [x, zz]}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:16:26: features.numeric.columns[1]: column 'zz' is not in data.schema"
    )


def test_a_dropped_column_missing_from_the_schema_cites_its_item(tmp_path: Path) -> None:
    text = edit("  categorical: {columns: []}\n", "  categorical: {columns: []}\n  drop: [q]\n")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:18:10: features.drop[0]: column 'q' is not in data.schema"
    )


def test_a_sensitive_attribute_missing_from_the_schema_cites_its_item(tmp_path: Path) -> None:
    text = edit("sensitive: [g]", "sensitive: [g, sex]")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:14:18: data.sensitive[1]: column 'sex' is not in data.schema"
    )


def test_a_sensitive_attribute_as_a_feature_cites_the_feature(tmp_path: Path) -> None:
    text = edit("categorical: {columns: []}", "categorical: {columns: [g]}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:17:27: features.categorical.columns[0]: sensitive column 'g' used as"
        " a feature; set features.use_sensitive: true to allow it"
    )


def test_the_label_as_a_feature_cites_the_feature(tmp_path: Path) -> None:
    text = edit("numeric: {columns: [x]}", "numeric: {columns: [x, y]}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:16:26: features.numeric.columns[1]: the label 'y' cannot be a feature"
    )


def test_a_label_column_missing_from_the_schema_cites_label_column(tmp_path: Path) -> None:
    text = edit("{column: y, positive: 1}", "{column: target, positive: 1}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:13:11: data.label.column: column 'target' is not in data.schema"
    )


def test_a_test_source_that_is_not_a_source_cites_it(tmp_path: Path) -> None:
    text = BASE + "split:\n  test_source: holdout\n"
    assert refused(tmp_path, text) == (
        "pipeline.yaml:26:3: split.test_source: 'holdout' is not a data source (sources: main)"
    )


def test_two_sources_and_no_test_source_cites_the_second_source(tmp_path: Path) -> None:
    text = edit(
        "  schema:\n",
        f"    more: {{format: csv, path: data.csv, sha256: {PIN}}}\n  schema:\n",
    )
    assert refused(tmp_path, text) == (
        "pipeline.yaml:9:5: data.sources.more: 2 data sources and no split.test_source;"
        " expected one source to split, or split.test_source naming the test set"
    )


def test_stratify_with_a_test_source_is_refused_at_its_line(tmp_path: Path) -> None:
    text = edit(
        "  schema:\n",
        f"    test: {{format: csv, path: data.csv, sha256: {PIN}}}\n  schema:\n",
    )
    assert Pipeline.from_yaml(write(tmp_path, text + "split: {test_source: test}\n"))
    text += "split:\n  test_source: test\n  stratify: false\n"
    assert refused(tmp_path, text) == (
        "pipeline.yaml:28:3: split.stratify: has no effect with split.test_source (the test"
        " set is a whole source)"
    )


# -- the label's positive class ----------------------------------------------------------


def test_an_int_label_with_a_quoted_positive_says_to_write_the_number(tmp_path: Path) -> None:
    text = edit("positive: 1}", 'positive: "1"}')
    assert refused(tmp_path, text) == (
        "pipeline.yaml:13:22: data.label.positive: the label column is int but positive is"
        " '1'; write positive: 1"
    )


def test_a_category_label_with_a_number_says_to_quote_it(tmp_path: Path) -> None:
    text = edit("y: {type: int}", "y: {type: category, categories: ['0', '1']}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:13:22: data.label.positive: the label column is category but positive"
        " is 1; write positive: '1'"
    )
    assert Pipeline.from_yaml(write(tmp_path, edit("positive: 1}", "positive: '1'}", text)))


def test_a_positive_outside_the_declared_categories_is_refused(tmp_path: Path) -> None:
    text = edit("y: {type: int}", "y: {type: category, categories: [neg, pos]}")
    text = edit("positive: 1}", "positive: Pos}", text)
    assert refused(tmp_path, text) == (
        "pipeline.yaml:13:22: data.label.positive: 'Pos' is not one of the label's categories"
        " ['neg', 'pos']"
    )


def test_a_label_map_to_an_undeclared_category_cites_the_map_entry(tmp_path: Path) -> None:
    text = edit("y: {type: int}", "y: {type: category, categories: [neg, pos]}")
    text = edit(
        "{column: y, positive: 1}", "{column: y, positive: pos, map: {Y: pos, N: nah}}", text
    )
    assert refused(tmp_path, text) == (
        "pipeline.yaml:13:51: data.label.map.N: maps to 'nah', which is not one of the label's"
        " categories ['neg', 'pos']"
    )


def test_a_bool_label_takes_true_not_a_string(tmp_path: Path) -> None:
    text = edit("y: {type: int}", "y: {type: bool}")
    text = edit("positive: 1}", "positive: 'True'}", text)
    assert refused(tmp_path, text).endswith(
        "data.label.positive: the label column is bool but positive is 'True'; write positive: true"
    )


# -- gates -------------------------------------------------------------------------------


def test_a_gate_on_a_metric_evaluate_does_not_compute_is_refused(tmp_path: Path) -> None:
    text = edit("{min_accuracy: 0.0}", "{min_accuracy: 0.0, min_auc: 0.8}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:22:30: evaluate.gates.min_auc: evaluate does not compute 'auc'; a gate"
        f" may name one of {', '.join(METRICS)}"
    )
    text = edit("{min_accuracy: 0.0}", "{at_least_accuracy: 0.8}")
    assert refused(tmp_path, text) == (
        "pipeline.yaml:22:11: evaluate.gates.at_least_accuracy: expected min_<metric> or"
        " max_<metric>"
    )


def test_every_accepted_gate_is_computed_and_shown(tmp_path: Path) -> None:
    """``min_precision`` is accepted because evaluate computes precision: each accepted
    gate gets a value and a verdict in the metrics output, even when ``evaluate.metrics``
    does not list it."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    gates = ", ".join(f"{'max' if m in ('log_loss', 'brier') else 'min'}_{m}: 0.0" for m in METRICS)
    text = edit("{min_accuracy: 0.0}", "{" + gates + "}")
    text = edit("evaluate:\n", "evaluate:\n  metrics: [accuracy]\n", text)
    path = write(tmp_path, text)
    config = Pipeline.from_yaml(path).config
    table = pd.read_csv(tmp_path / "data.csv")
    model = LogisticRegression().fit(table[["x"]], table["y"])
    ctx = StageContext(config, tmp_path, 0, "t", "r", lambda *_: None)
    stage = EvaluateStage(config.evaluate, config.data.label, [])
    out = stage.run(ctx, {"model": model, "test": table[["x", "y"]]})["metrics"]
    shown = {g["metric"]: g for g in out["gates"]}
    assert sorted(shown) == sorted(METRICS)
    assert shown["precision"]["value"] is not None and shown["precision"]["gate"] == "min_precision"


# -- estimators, files, pins (the stages' load-time checks) -----------------------------


def test_an_unknown_estimator_is_refused_at_load_citing_its_line(tmp_path: Path) -> None:
    text = edit("estimator: LogisticRegression", "estimator: Skynet")
    message = refused(tmp_path, text)
    assert message.startswith(
        "pipeline.yaml:19:3: model.estimator: unknown estimator 'Skynet'; it is not on the"
        " allow-list (allowed: "
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("params", "col", "needle"),
    [
        ("{C: -1.0}", 12, "model.params.C: The 'C' parameter of LogisticRegression must be"),
        ("{C: 'strong'}", 12, "model.params.C: The 'C' parameter of LogisticRegression must be"),
        ("{trees: 3}", 12, "model.params.trees: not a parameter of LogisticRegression;"),
    ],
    ids=["out-of-range", "wrong-type", "unknown-key"],
)
def test_a_bad_estimator_parameter_is_refused_at_load_at_its_key(
    tmp_path: Path, params: str, col: int, needle: str
) -> None:
    text = edit("params: {C: 1.0}", f"params: {params}")
    message = refused(tmp_path, text)
    assert message.startswith(f"pipeline.yaml:20:{col}: {needle}"), message


def test_a_missing_source_file_is_refused_at_load_at_its_path(tmp_path: Path) -> None:
    text = edit("path: data.csv", "path: nope/data.csv")
    assert refused(tmp_path, text) == (
        f"pipeline.yaml:7:7: data.sources.main.path: file not found:"
        f" {tmp_path / 'nope' / 'data.csv'}; expected a path relative to {tmp_path}"
    )


def test_load_problems_are_all_listed_sorted_by_line(tmp_path: Path) -> None:
    text = edit("path: data.csv", "path: nope.csv")
    text = edit("params: {C: 1.0}", "params: {trees: 3}", text)
    lines = refused(tmp_path, text).splitlines()
    assert [line.split(": ")[0] for line in lines] == ["pipeline.yaml:7:7", "pipeline.yaml:20:12"]


def test_a_pin_mismatch_says_how_to_update_the_pin(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    (tmp_path / "data.csv").write_bytes(CSV + b"9,a,1\n")
    actual = hashlib.sha256((tmp_path / "data.csv").read_bytes()).hexdigest()
    config, raw = load_pipeline(path)
    ctx = StageContext(
        config, tmp_path, 0, "t", "r", lambda *_: None, pipeline_file=str(path), pipeline_raw=raw
    )
    with pytest.raises(PinMismatch) as info:
        IngestStage("main", config.data.sources["main"]).run(ctx, {})
    assert str(info.value) == (
        f"source 'main' (data.csv): SHA-256 mismatch: expected {PIN}, got {actual}; if this"
        f" file is the one you mean to use, change the pin data.sources.main.sha256 at"
        f" {path}:8:7 to {actual}"
    )


# -- the command line ----------------------------------------------------------------------


def test_bastion_run_on_a_bad_file_exits_2_with_one_line_before_any_secret(
    tmp_path: Path,
) -> None:
    import subprocess

    path = write(tmp_path, edit("positive: 1}", 'positive: "1"}'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_HOME"] = str(tmp_path / "no-home")  # no home, no passphrase: never reached
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bastion", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"{path}:13:22: data.label.positive:" in lines[0]
    assert "write positive: 1" in lines[0]
    assert time.monotonic() - started < 30


def test_an_int_label_with_positive_1_passes_validation_and_trains(tmp_path: Path) -> None:
    """The positive class typed as its column works downstream: validate counts the
    label's classes as text, train compares the typed values."""
    import pandas as pd

    from bastion.stages.train import TrainStage
    from bastion.stages.validate import label_violations

    config = Pipeline.from_yaml(write(tmp_path, BASE)).config
    assert label_violations({"0": 4, "1": 4}, config.data) == []
    assert label_violations({"0": 4, "2": 4}, config.data) != []
    table = pd.read_csv(tmp_path / "data.csv")
    from sklearn.compose import ColumnTransformer

    transformer = ColumnTransformer([("x", "passthrough", ["x"])]).fit(table)
    stage = TrainStage(config.model, config.data.label)
    ctx = StageContext(config, tmp_path, 0, "t", "r", lambda *_: None)
    out = stage.run(ctx, {"transformer": transformer, "train": table})
    assert out["training"]["class_balance"]["positive"] == int((table["y"] == 1).sum())


def test_a_stored_file_read_for_its_contract_skips_the_file_checks(tmp_path: Path) -> None:
    """A released model's stored pipeline file is read as it was accepted (check_env=False),
    so a check added later cannot make a released model unservable; a run checks it all."""
    from bastion.spec.loader import parse_pipeline

    raw = edit("positive: 1}", 'positive: "1"}').encode()
    assert parse_pipeline(raw, "stored", check_env=False).data.label.positive == "1"
    with pytest.raises(ConfigError, match=r"^stored:13:22: data\.label\.positive: "):
        parse_pipeline(raw, "stored")
