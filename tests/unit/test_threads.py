"""bastion.threads: the thread policy for fit, cross-validation and predict."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from bastion.errors import ConfigError
from bastion.spec.loader import load_pipeline
from bastion.threads import ENV_VAR, limit_threads, resolve_threads

PIN = "0" * 61 + "abc"
BASE = f"""\
name: demo
threads: THREADS
data:
  sources:
    main: {{format: csv, path: data.csv, sha256: {PIN}}}
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


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _pool_sizes() -> set[int]:
    return {int(p["num_threads"]) for p in threadpool_info()}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_a_count_is_used_as_given() -> None:
    assert resolve_threads(1) == 1
    assert resolve_threads(3) == 3
    assert resolve_threads("2") == 2


def test_auto_is_between_one_and_the_usable_cores() -> None:
    for setting in ("auto", None):
        n = resolve_threads(setting)
        assert 1 <= n <= _cores()


def test_environment_wins_over_the_pipeline_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "1")
    assert resolve_threads(4) == 1
    monkeypatch.setenv(ENV_VAR, "auto")
    assert 1 <= resolve_threads(4) <= _cores()


@pytest.mark.parametrize("bad", [0, -1, 1025, "many", "1.5", True, 2.0])
def test_bad_settings_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"threads: expected 'auto' or a whole number 1\.\.1024"):
        resolve_threads(bad)  # type: ignore[arg-type]


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(ConfigError, match=f"{ENV_VAR}: expected"):
        resolve_threads("auto")


def test_the_pools_are_capped_inside_the_block_and_restored_after() -> None:
    np.ones((64, 64)) @ np.ones((64, 64))  # make sure the BLAS pool is loaded
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime

    before = _pool_sizes()
    with limit_threads(1) as used:
        assert used == 1
        assert _pool_sizes() == {1}
    assert _pool_sizes() == before


def test_pipeline_file_takes_threads(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    for value, expected in (("auto", "auto"), ("2", 2)):
        path.write_text(BASE.replace("THREADS", value))
        config, _ = load_pipeline(path)
        assert config.threads == expected


@pytest.mark.parametrize("value", ["0", "many", "2000"])
def test_pipeline_file_refuses_bad_threads_with_its_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(BASE.replace("THREADS", value))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert f"{path}:2:" in str(info.value)
    assert "threads" in str(info.value)
