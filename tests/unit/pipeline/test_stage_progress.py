"""Progress inside a stage: ``StageContext.progress`` reaches the listener the runner sets,
and is a no-op without one; the train and screen stages report their steps through it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bastion.spec.config import DataConfig, LabelConfig, ModelConfig
from bastion.spec.stage import StageContext
from bastion.stages.features import build_transformer
from bastion.stages.train import TrainStage
from tests.unit.stages.test_train import DATA, FEATURES, LABEL, _adult

Heard = list[tuple[int, int, str]]


def _ctx(heard: Heard | None, config: object = None) -> StageContext:
    return StageContext(
        config=config,  # type: ignore[arg-type]
        base_dir=Path(DATA),
        seed=0,
        actor="tester",
        run_id="run-test",
        event=lambda a, o, d: None,
        on_progress=None if heard is None else lambda d, t, w: heard.append((d, t, w)),
    )


def test_progress_without_a_listener_is_a_no_op() -> None:
    _ctx(None).progress(1, 2, "anything")  # nothing to hear it; must not fail


def test_train_reports_the_fit() -> None:
    train = _adult("adult.data", 400)
    columns = FEATURES.numeric.columns + FEATURES.categorical.columns
    transformer = build_transformer(FEATURES).fit(train[columns])
    heard: Heard = []
    stage = TrainStage(ModelConfig(estimator="LogisticRegression"), LABEL)
    stage.run(_ctx(heard), {"transformer": transformer, "train": train})
    assert heard == [(0, 1, "fitting LogisticRegression on 400 rows"), (1, 1, "fitted")]


def test_screen_reports_each_detector() -> None:
    from bastion.stages.screen import ScreenStage

    table = _adult("adult.data", 300)
    schema = {c: {"type": "float"} for c in ("age", "education-num", "hours-per-week")}
    schema["Y"] = {"type": "category", "categories": ["<=50K", ">50K"]}
    data = DataConfig.model_validate(
        {
            "sources": {"train": {"format": "csv", "path": "adult.data", "sha256": "0" * 64}},
            "schema": schema,
            "label": LabelConfig(column="Y", positive=">50K").model_dump(),
        }
    )
    heard: Heard = []
    ScreenStage("train", data).run(_ctx(heard), {"table": pd.DataFrame(table[list(schema)])})
    steps = [w for _d, _t, w in heard]
    assert "cross-validation" in steps and "duplicates" in steps, steps
