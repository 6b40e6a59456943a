"""bastion.stages.screen: the policy turns findings into kept, quarantined (with every
reason, never dropped silently) or a failed run; the profile feeds the next run's shift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from bastion.errors import GateFailed
from bastion.spec.config import DataConfig, PipelineConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.screen import ScreenStage, ShiftStage
from tests.helpers.adult import DATA
from tests.unit.stages.conftest import EventRecorder


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values=["?"])
    return df.sample(4_000, random_state=1).reset_index(drop=True)


def _data(adult_config: PipelineConfig, **screen: Any) -> DataConfig:
    doc = adult_config.data.model_dump(by_alias=True)
    doc["screen"] = screen
    return DataConfig.model_validate(doc)


def _with_repeats(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[[5, 6]]], ignore_index=True)  # rows 4000, 4001


def test_quarantine_moves_rows_aside_with_reasons_and_stores_everything(
    table: pd.DataFrame, adult_config: PipelineConfig, ctx: Callable[..., StageContext]
) -> None:
    stage = ScreenStage("train", _data(adult_config))
    out = stage.run(ctx(), {"table": _with_repeats(table)})
    q, kept, findings = out["quarantine"], out["table"], out["findings"]
    assert {4000, 4001} <= set(q["row"])
    assert q.loc[q["row"] == 4000, "reason"].item().startswith("duplicates:exact_duplicate")
    assert len(kept) + len(q) == len(table) + 2  # nothing dropped silently
    assert set(findings.columns) == {"row", "detector", "reason", "score", "detail", "column"}
    report = out["report"]
    assert report["rows_quarantined"] == len(q)
    assert "shift" not in report["ran"] + report["skipped"]  # the shift stage's business
    for name, kind in stage.outputs.items():  # every output survives the store's encoding
        decode(kind, encode(kind, out[name]))


def test_fail_policy_stops_the_run_naming_rows(
    table: pd.DataFrame,
    adult_config: PipelineConfig,
    ctx: Callable[..., StageContext],
    events: EventRecorder,
) -> None:
    stage = ScreenStage("train", _data(adult_config, duplicates={"policy": "fail"}))
    with pytest.raises(GateFailed, match=r"row 4000: duplicates:exact_duplicate") as err:
        stage.run(ctx(), {"table": _with_repeats(table)})
    assert err.value.exit_code == 1
    assert ("screen.result", "failed") in [(a, o) for a, o, _ in events.events]


def test_flag_keeps_every_row(
    table: pd.DataFrame, adult_config: PipelineConfig, ctx: Callable[..., StageContext]
) -> None:
    stage = ScreenStage("train", _data(adult_config, policy="flag"))
    out = stage.run(ctx(), {"table": _with_repeats(table)})
    assert len(out["table"]) == len(table) + 2 and out["quarantine"].empty
    assert len(out["findings"]) >= 2


def test_shift_stage_compares_with_the_last_passed_profile(
    table: pd.DataFrame, adult_config: PipelineConfig, ctx: Callable[..., StageContext]
) -> None:
    stage = ShiftStage("train", _data(adult_config))
    first = stage.run(ctx(), {"table": table})
    assert first["report"]["ran"] is False and first["report"]["baseline"] is None
    assert first["profile"]["rows"] == len(table)
    same = stage.run(ctx(), {"table": table, "baseline": first["profile"]})
    assert same["report"]["ran"] is True and same["report"]["findings"] == []
    older = table.copy()
    older["age"] = older["age"] + 20
    second = stage.run(ctx(), {"table": older, "baseline": first["profile"]})
    assert second["report"]["baseline"] == "last passed run"
    assert "age" in {f["column"] for f in second["report"]["findings"]}
    for name, kind in stage.outputs.items():
        decode(kind, encode(kind, second[name]))


def test_shift_fail_policy_stops_the_run(
    table: pd.DataFrame, adult_config: PipelineConfig, ctx: Callable[..., StageContext]
) -> None:
    stage = ShiftStage("train", _data(adult_config, shift={"policy": "fail"}))
    baseline = stage.run(ctx(), {"table": table})["profile"]
    moved = table.copy()
    moved["hours-per-week"] = moved["hours-per-week"] + 10
    with pytest.raises(GateFailed, match=r"shifted since the last passed run: hours-per-week"):
        stage.run(ctx(), {"table": moved, "baseline": baseline})


def test_unsafe_skip_is_declared_for_the_runner_to_audit(adult_config: PipelineConfig) -> None:
    stage = ScreenStage("train", _data(adult_config, unsafe_skip=["backdoor"]))
    assert stage.unsafe() == ["data.screen.unsafe_skip: backdoor"]
    assert ScreenStage("train", _data(adult_config)).unsafe() == []
    only_shift = _data(adult_config, unsafe_skip=["shift"])
    assert ScreenStage("train", only_shift).unsafe() == []
    assert ShiftStage("train", only_shift).unsafe() == ["data.screen.unsafe_skip: shift"]
