"""evaluate.fairness in the pipeline file: bins only for a numeric column of data.sensitive,
edges strictly ascending, a count of quantile bins in range; each mistake is one
ConfigError naming the file, line, column and key."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.spec.loader import parse_pipeline

PIN = "0" * 61 + "abc"

# Line numbers below refer to this text: keep them in sync with the tests.
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
    age: {{type: int}}
    income: {{type: float}}
    sex: {{type: category, categories: [f, m]}}
    y: {{type: category, categories: [a, b]}}
  label: {{column: y, positive: b}}
  sensitive: [sex, age]
features:
  numeric: {{columns: [x, income]}}
model:
  estimator: LogisticRegression
release:
  name: demo
evaluate:
  fairness:
"""


def _parse(fairness: str) -> object:
    return parse_pipeline((BASE + fairness).encode(), "p.yaml", check_env=False)


def _error(fairness: str) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(fairness)
    return str(info.value)


def test_defaults_and_declared_bins_load() -> None:
    config = _parse("    bins: {age: [25, 45, 65]}\n    min_group_size: 50\n")
    fairness = config.evaluate.fairness  # type: ignore[attr-defined]
    assert fairness.bins == {"age": [25, 45, 65]}
    assert fairness.min_group_size == 50 and fairness.max_groups == 20
    assert _parse("    bins: {age: 5}\n").evaluate.fairness.bins == {"age": 5}  # type: ignore[attr-defined]


def test_bins_for_a_column_not_in_sensitive_is_refused_at_its_line() -> None:
    message = _error("    bins:\n      income: [1000, 2000]\n")
    assert message.startswith("p.yaml:25:")
    assert "evaluate.fairness.bins.income" in message
    assert "'income' is not listed in data.sensitive" in message


def test_bins_for_a_category_column_is_refused() -> None:
    message = _error("    bins:\n      sex: [1, 2]\n")
    assert message.startswith("p.yaml:25:")
    assert "'sex' is of type category; only int and float bin" in message


@pytest.mark.parametrize("edges", ["[45, 25]", "[25, 25]", "[]", "[a, 25]", "true", "2.5"])
def test_edges_must_be_strictly_ascending(edges: str) -> None:
    message = _error(f"    bins:\n      age: {edges}\n")
    assert message.startswith("p.yaml:25:")
    assert "evaluate.fairness.bins.age: expected a number of quantile bins (2 to 20) or a list" in (
        message
    )
    assert message.count("\n") == 0  # one problem, one line: not one per side of the union


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("bins: {age: 1}", "bins"),
        ("min_group_size: 0", "min_group_size"),
        ("max_groups: 1", "max_groups"),
    ],
)
def test_out_of_range_numbers_are_refused(line: str, key: str) -> None:
    message = _error(f"    {line}\n")
    assert message.startswith("p.yaml:24:") and key in message
    assert message.count("\n") == 0


def test_an_unknown_key_is_refused() -> None:
    assert "min_group" in _error("    min_group: 5\n")
