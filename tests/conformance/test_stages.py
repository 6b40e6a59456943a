"""The stage conformance suite: every stage of a pipeline passes the same checks, as
scikit-learn's ``check_estimator`` does for estimators. A new stage is covered by adding it
to a pipeline; nothing here names a stage.

The stages run on a small slice of Adult (600 training and 300 test rows) through a driver
that does what the runner does between stages, minus the store: it hands each stage the
outputs its ``inputs`` name. Checks, per stage:

- **declared inputs and outputs**: every input names an output of an earlier stage; every
  output kind is a known kind; ``run`` returns exactly the declared outputs;
- **deterministic under the seed**: a second run of the whole pipeline, from fresh stage
  objects, gives the same outputs (timings and the thread count aside: they never change
  a result);
- **the cache key covers the configuration**: every configuration value a stage reads
  while running (recorded through a read-tracking view of the pipeline file), changed,
  changes the stage's fingerprint (``threads`` aside: it never changes a result);
- **encode/decode round trip**: each output, encoded for the store and decoded, encodes to
  the same bytes (a model: predicts the same; skops archives name arrays by object id);
- **errors only from the error tree**: fed empty tables, a stage fails with a
  ``bastion.errors.Error`` (or succeeds), never with a bare exception;
- **nothing written outside the store**: the run leaves the working folder and the
  pipeline's folder as they were.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from bastion.errors import Error
from bastion.pipeline.runner import Pipeline
from bastion.pipeline.stage import KINDS, Stage, StageContext, decode, encode
from tests.helpers.adult import EXAMPLE

VOLATILE = frozenset({"fit_seconds", "seconds", "threads"})  # never change a result
NEVER_A_RESULT = frozenset({("threads",)})  # config paths that must not be in a cache key


# -- building a small pipeline and running it stage by stage ----------------------------


def _small_pipeline(folder: Path) -> Path:
    """The Adult example on its first rows, pinned, with the same schema and settings."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for name, rows in (("train", 600), ("test", 300)):
        source = doc["data"]["sources"][name]
        lines = (EXAMPLE.parent / source["path"]).read_text().splitlines(keepends=True)
        data = "".join(lines[: rows + 1])
        path = folder / f"{name}.csv"
        path.write_text(data)
        source["path"] = path.name
        source["sha256"] = hashlib.sha256(data.encode()).hexdigest()
    doc["model"].setdefault("params", {})["max_iter"] = 20
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _context(pipeline: Pipeline, config: Any, events: list[Any]) -> StageContext:
    return StageContext(
        config=config,
        base_dir=pipeline.path.parent,
        seed=pipeline.config.seed,
        actor="conformance",
        run_id="conformance-run",
        event=lambda action, outcome, details: events.append((action, outcome)),
        summary={"model_ref": f"{pipeline.config.release.name}:1"},
    )


def drive(pipeline: Pipeline, config: Any = None) -> dict[str, dict[str, Any]]:
    """Run every stage in order as the runner would (no store); outputs per stage."""
    produced: dict[str, Any] = {}
    outputs: dict[str, dict[str, Any]] = {}
    events: list[Any] = []
    ctx = _context(pipeline, config if config is not None else pipeline.config, events)
    for stage in pipeline.stages():
        inputs = {name: produced[key] for name, key in stage.inputs.items()}
        out = dict(stage.run(ctx, inputs))
        outputs[stage.name] = out
        for name, value in out.items():
            produced[f"{stage.name}.{name}"] = value
    return outputs


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline.from_yaml(_small_pipeline(tmp_path_factory.mktemp("conformance")))


@pytest.fixture(scope="module")
def first_run(small: Pipeline) -> dict[str, dict[str, Any]]:
    return drive(small)


STAGES = [s.name for s in Pipeline.from_yaml(EXAMPLE).stages()]  # the same names, small data


def _stage(pipeline: Pipeline, name: str) -> Stage:
    return next(s for s in pipeline.stages() if s.name == name)


# -- comparing outputs ---------------------------------------------------------------------


def _stable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _fingerprint_of_output(kind: str, value: Any, probe: pd.DataFrame) -> Any:
    if kind == "json":
        return _stable(value)
    if kind == "text":  # a card or report: its timing lines aside
        return [line for line in value.splitlines() if "seconds" not in line.lower()]
    if kind == "model":  # the same model predicts the same on the same rows
        columns = list(getattr(value, "feature_names_in_", probe.columns))
        if hasattr(value, "predict_proba"):
            return value.predict_proba(probe[columns]).round(12).tolist()
        return value.transform(probe[columns]).round(12).tolist()
    return encode(kind, value)  # type: ignore[arg-type]


# -- the checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STAGES)
def test_declared_inputs_and_outputs(
    small: Pipeline, first_run: dict[str, dict[str, Any]], name: str
) -> None:
    stages = small.stages()
    at = [s.name for s in stages].index(name)
    stage = stages[at]
    earlier = {f"{s.name}.{o}" for s in stages[:at] for o in s.outputs}
    assert set(stage.inputs.values()) <= earlier, f"{name} reads outputs nobody made before it"
    assert set(stage.outputs.values()) <= set(KINDS), f"{name} declares an unknown kind"
    assert set(first_run[name]) == set(stage.outputs), f"{name} returned other outputs"


@pytest.mark.parametrize("name", STAGES)
def test_deterministic_under_the_seed(
    small: Pipeline, first_run: dict[str, dict[str, Any]], name: str
) -> None:
    again = drive(Pipeline.from_yaml(small.path))
    probe = first_run["split"]["test"]
    stage = _stage(small, name)
    for output, kind in stage.outputs.items():
        a = _fingerprint_of_output(kind, first_run[name][output], probe)
        b = _fingerprint_of_output(kind, again[name][output], probe)
        assert a == b, f"{name}.{output} differs between two runs with the same seed"


@pytest.mark.parametrize("name", STAGES)
def test_encode_decode_round_trip(
    small: Pipeline, first_run: dict[str, dict[str, Any]], name: str
) -> None:
    stage = _stage(small, name)
    probe = first_run["split"]["test"]
    for output, kind in stage.outputs.items():
        value = first_run[name][output]
        data = encode(kind, value)
        back = decode(kind, data)
        if kind == "model":  # skops names arrays by object id: compare what the model does
            same = _fingerprint_of_output(kind, back, probe) == _fingerprint_of_output(
                kind, value, probe
            )
        else:
            same = encode(kind, back) == data
        assert same, f"{name}.{output} does not round-trip"


class _Reads:
    """A read-only view of a pydantic model that records every attribute path read."""

    def __init__(self, target: Any, path: tuple[str, ...], log: set[tuple[str, ...]]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        path = (*self._path, name)
        if name.startswith("_") or callable(value):
            return value
        if hasattr(value, "model_fields"):
            return _Reads(value, path, self._log)
        self._log.add(path)
        return value


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 0.001
    if isinstance(value, str):
        return value + "-changed"
    if value is None:
        return 1
    if isinstance(value, list | tuple):
        return list(value)[:-1] if value else ["changed"]
    if isinstance(value, dict):
        return {**value, "changed": 1}
    return None


def _with(config: Any, path: tuple[str, ...], value: Any) -> Any:
    """A deep copy of the config with ``path`` set to ``value`` (no validation)."""
    root = copy.deepcopy(config)
    node = root
    for name in path[:-1]:
        node = getattr(node, name)
    object.__setattr__(node, path[-1], value)
    return root


def _reads_of(small: Pipeline, name: str) -> set[tuple[str, ...]]:
    """Config paths the stage reads while running (through ctx.config)."""
    log: set[tuple[str, ...]] = set()
    view = _Reads(small.config, (), log)
    produced: dict[str, Any] = {}
    events: list[Any] = []
    for stage in small.stages():
        inputs = {n: produced[k] for n, k in stage.inputs.items()}
        ctx = _context(small, view if stage.name == name else small.config, events)
        for o, v in stage.run(ctx, inputs).items():
            produced[f"{stage.name}.{o}"] = v
        if stage.name == name:
            break
    return log


@pytest.mark.parametrize("name", STAGES)
def test_the_cache_key_covers_every_setting_the_stage_reads(small: Pipeline, name: str) -> None:
    before = _stage(small, name).fingerprint()
    uncovered = []
    for path in sorted(_reads_of(small, name)):
        if path in NEVER_A_RESULT:
            continue
        value = _changed(getattr_path(small.config, path))
        if value is None:
            continue
        try:
            changed = _stage(
                Pipeline(_with(small.config, path, value), small.raw, small.path), name
            )
        except Error:
            continue  # a value the pipeline refuses outright cannot reach the stage
        if changed.fingerprint() == before:
            uncovered.append(".".join(path))
    assert not uncovered, f"{name} reads {uncovered} but its fingerprint ignores them"


def getattr_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _emptied(value: Any) -> Any:
    return value.iloc[0:0] if isinstance(value, pd.DataFrame) else value


@pytest.mark.parametrize("name", STAGES)
def test_errors_only_from_the_error_tree(
    small: Pipeline, first_run: dict[str, dict[str, Any]], name: str
) -> None:
    stage = _stage(small, name)
    if not stage.inputs:
        pytest.skip(f"{name} reads nothing from earlier stages")
    produced = {f"{s}.{o}": v for s, outs in first_run.items() for o, v in outs.items()}
    inputs = {n: _emptied(produced[k]) for n, k in stage.inputs.items()}
    try:
        stage.run(_context(small, small.config, []), inputs)
    except Error:
        pass
    except Exception as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{name} on empty tables raised {type(exc).__name__}: {exc}")


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def in_empty_folder(tmp_path: Path) -> Iterator[Path]:
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_nothing_is_written_outside_the_store(small: Pipeline, in_empty_folder: Path) -> None:
    pipeline_folder = _listing(small.path.parent)
    drive(Pipeline.from_yaml(small.path))
    assert _listing(in_empty_folder) == set(), "a stage wrote into the working folder"
    assert _listing(small.path.parent) == pipeline_folder, "a stage wrote beside the pipeline"
