"""bastion.stages.split: deterministic for a seed, stratified, or a named test source."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from bastion.errors import ConfigError
from bastion.spec.config import SplitConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.split import SplitStage


def table(n: int = 2000, positive: float = 0.23, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "id": np.arange(n),
            "Y": pd.Series(np.where(rng.random(n) < positive, ">50K", "<=50K"), dtype="str"),
        }
    )


def random_split(**kw: object) -> SplitStage:
    return SplitStage(SplitConfig.model_validate(kw), "Y", ["all"])


def test_declares_inputs_for_a_single_source() -> None:
    stage = random_split()
    assert stage.name == "split"
    assert stage.inputs == {"data": "validate.all.table"}
    assert stage.outputs == {"train": "table", "test": "table", "report": "json"}


def test_declares_inputs_for_a_test_source() -> None:
    stage = SplitStage(SplitConfig(test_source="test"), "Y", ["train", "test"])
    assert stage.inputs == {"train": "validate.train.table", "test": "validate.test.table"}


@pytest.mark.parametrize(
    ("split", "sources"),
    [
        (SplitConfig(), ["a", "b"]),
        (SplitConfig(test_source="c"), ["a", "b"]),
        (SplitConfig(test_source="a"), ["a", "b", "c"]),
        (SplitConfig(test_source="a"), ["a"]),
    ],
)
def test_ambiguous_sources_are_a_config_error(split: SplitConfig, sources: list[str]) -> None:
    with pytest.raises(ConfigError, match="split"):
        SplitStage(split, "Y", sources)


def test_same_seed_same_split(ctx: Callable[..., StageContext]) -> None:
    data = table()
    a = random_split().run(ctx(seed=7), {"data": data})
    b = random_split().run(ctx(seed=7), {"data": data.copy()})
    pd.testing.assert_frame_equal(a["train"], b["train"])
    pd.testing.assert_frame_equal(a["test"], b["test"])
    assert encode("json", a["report"]) == encode("json", b["report"])
    c = random_split().run(ctx(seed=8), {"data": data})
    assert not c["test"]["id"].equals(a["test"]["id"])


def test_split_is_a_partition_of_the_input(ctx: Callable[..., StageContext]) -> None:
    data = table()
    out = random_split(test_size=0.25).run(ctx(), {"data": data})
    ids = sorted(out["train"]["id"].tolist() + out["test"]["id"].tolist())
    assert ids == list(range(len(data)))
    assert len(out["test"]) == 500
    assert out["train"].index.tolist() == list(range(1500))


def test_stratified_proportions_within_one_percent(ctx: Callable[..., StageContext]) -> None:
    data = table(n=5000, positive=0.1)
    out = random_split(test_size=0.2).run(ctx(), {"data": data})
    overall = (data["Y"] == ">50K").mean()
    for part in ("train", "test"):
        frac = (out[part]["Y"] == ">50K").mean()
        assert abs(frac - overall) < 0.01
        balance = out["report"]["class_balance"][part][">50K"]["fraction"]
        assert balance == pytest.approx(frac, abs=1e-6)


def test_report(ctx: Callable[..., StageContext]) -> None:
    out = random_split(test_size=0.2).run(ctx(seed=3), {"data": table(1000)})
    report = out["report"]
    assert report["mode"] == "random" and report["seed"] == 3 and report["stratify"] is True
    assert report["sizes"] == {"train": 800, "test": 200}
    assert set(report["class_balance"]["test"]) == {"<=50K", ">50K"}
    assert decode("json", encode("json", report)) == report


def test_unstratifiable_data_is_a_config_error(ctx: Callable[..., StageContext]) -> None:
    data = table(20)
    data.loc[0, "Y"] = "rare"
    with pytest.raises(ConfigError, match="stratify"):
        random_split().run(ctx(), {"data": data})
    out = random_split(stratify=False).run(ctx(), {"data": data})
    assert len(out["test"]) == 4


def test_test_source_mode_passes_tables_through(ctx: Callable[..., StageContext]) -> None:
    train, test = table(300, seed=1), table(100, seed=2)
    test.index = test.index + 1000  # the runner may hand over any index
    stage = SplitStage(SplitConfig(test_source="test"), "Y", ["train", "test"])
    out = stage.run(ctx(), {"train": train, "test": test})
    pd.testing.assert_frame_equal(out["train"], train)
    pd.testing.assert_frame_equal(out["test"], test.reset_index(drop=True))
    assert out["report"]["mode"] == "test_source"
    assert out["report"]["sizes"] == {"train": 300, "test": 100}


def test_adult_config_uses_the_test_file(adult_config: object) -> None:
    from bastion.spec.config import PipelineConfig

    assert isinstance(adult_config, PipelineConfig)
    stage = SplitStage(
        adult_config.split, adult_config.data.label.column, list(adult_config.data.sources)
    )
    assert stage.inputs == {"train": "validate.train.table", "test": "validate.test.table"}


def test_quarantined_rows_leave_the_train_part_never_the_test_part(
    ctx: Callable[..., StageContext],
) -> None:
    """The screen ran over the whole single source; its finds must not clean the test set."""
    data = table()
    plain = random_split().run(ctx(seed=3), {"data": data})
    quarantine = pd.DataFrame({"row": np.arange(0, len(data), 7), "reason": "label noise"})
    stage = SplitStage(SplitConfig(), "Y", ["all"], {"all": "pii.all.table"}, "screen.all.q")
    assert stage.inputs == {"data": "pii.all.table", "quarantine": "screen.all.q"}
    out = stage.run(ctx(seed=3), {"data": data, "quarantine": quarantine})
    pd.testing.assert_frame_equal(out["test"], plain["test"])  # every test row, as it came
    assert not set(out["train"]["id"]) & set(quarantine["row"])
    kept = set(plain["train"]["id"]) - set(quarantine["row"])
    assert set(out["train"]["id"]) == kept
    assert out["report"]["quarantined_from_train"] == len(plain["train"]) - len(kept) > 0
