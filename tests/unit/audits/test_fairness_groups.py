"""Issue 12, item 4: a numeric sensitive attribute is binned (declared edges, or quantiles
said so), a group below the minimum size is marked too small instead of scored, an
attribute with too many groups is named in a warning, and what is scored equals
fairlearn's definitions on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bastion.audits.fairness import bin_numeric, group_fairness

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    """The real Adult test file, with a fixed rule standing in for a model's decisions."""
    df = pd.read_csv(DATA / "adult.test", skipinitialspace=True, na_values="?")
    df["y"] = df["Y"].str.startswith(">50K").astype("int64")
    df["pred"] = ((df["education-num"] >= 13) | (df["capital-gain"] > 5000)).astype("int64")
    return df


def _fair(df: pd.DataFrame, column: str, **kw: object) -> dict:
    return group_fairness(df[column], df["y"].to_numpy(), df["pred"].to_numpy(), **kw)  # type: ignore[arg-type]


def test_age_without_bins_gets_four_quantile_groups_not_one_per_age(adult: pd.DataFrame) -> None:
    before = _fair(adult, "age")  # as a category: one group per distinct age
    assert len(before["groups"]) == 50  # the smallest ages pooled as "(other)"
    assert "'age' has 73 groups (more than 20)" in before["warnings"][0]
    found = _fair(adult, "age", numeric=True)
    assert found["binning"] == {"method": "quantile", "bins": 4, "edges": [28, 37, 48]}
    assert [g["group"] for g in found["groups"]] == ["<28", "[28, 37)", "[37, 48)", ">=48"]
    assert sum(g["count"] for g in found["groups"]) == len(adult)
    assert all(not g["too_small"] for g in found["groups"])
    assert found["warnings"] == []
    assert 0 < found["demographic_parity_difference"] < 1
    assert 0 < found["disparate_impact_ratio"] < 1


def test_declared_edges_are_used_as_written_with_open_ends(adult: pd.DataFrame) -> None:
    found = _fair(adult, "age", numeric=True, bins=[25, 45.5, 65])
    assert found["binning"] == {"method": "declared", "edges": [25, 45.5, 65]}
    groups = {g["group"]: g["count"] for g in found["groups"]}
    assert list(groups) == ["<25", "[25, 45.5)", "[45.5, 65)", ">=65"]
    age = adult["age"]
    assert groups["<25"] == (age < 25).sum()
    assert groups["[25, 45.5)"] == ((age >= 25) & (age < 45.5)).sum()
    assert groups[">=65"] == (age >= 65).sum()


def test_quantile_edges_are_rounded_and_never_repeat() -> None:
    values = pd.Series([0.123456, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9876, 1.5, None])
    keys, order, info = bin_numeric(values, 4)
    assert info["method"] == "quantile"
    assert info["edges"] == sorted(set(info["edges"]))
    assert all(len(repr(e).replace("0.", "").lstrip("0")) <= 4 for e in info["edges"])
    assert keys[-1] == "(missing)" and order[-1] == "(missing)"


def test_a_group_below_the_minimum_is_marked_too_small_and_not_scored() -> None:
    # 40 "a" rows selected half the time, 40 "b" rows a quarter, and 3 "c" rows never:
    # scoring "c" would make the parity difference 0.5 and the ratio 0.0
    column = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 3, name="origin")
    y = np.array([1, 0] * 20 + [1, 0] * 20 + [1, 1, 0])
    y_pred = np.array([1, 0] * 20 + [1, 0, 0, 0] * 10 + [0, 0, 0])
    found = group_fairness(column, y, y_pred, min_group_size=30)
    c = found["groups"][2]
    assert c == {"group": "c", "count": 3, "too_small": True}
    assert found["scored_groups"] == 2 and found["min_group_size"] == 30
    assert found["demographic_parity_difference"] == pytest.approx(0.25)
    assert found["disparate_impact_ratio"] == pytest.approx(0.5)
    scored_all = group_fairness(column, y, y_pred, min_group_size=1)
    assert scored_all["demographic_parity_difference"] == pytest.approx(0.5)
    assert scored_all["disparate_impact_ratio"] == 0.0


def test_fewer_than_two_scored_groups_give_no_differences_and_a_warning() -> None:
    column = pd.Series(["a"] * 40 + ["b"] * 5, name="site")
    y = np.zeros(45, dtype=int)
    found = group_fairness(column, y, y, min_group_size=30)
    assert found["demographic_parity_difference"] is None
    assert found["disparate_impact_ratio"] is None
    assert found["equalized_odds_difference"] is None
    assert found["warnings"] == [
        "sensitive attribute 'site': 1 group(s) of at least 30 rows; no differences between"
        " groups can be measured"
    ]


def test_too_many_groups_warns_naming_the_attribute_and_the_limit() -> None:
    column = pd.Series([f"g{i % 25}" for i in range(2500)], name="district")
    y = np.zeros(2500, dtype=int)
    found = group_fairness(column, y, y, max_groups=20)
    assert len(found["warnings"]) == 1
    assert "'district' has 25 groups (more than 20)" in found["warnings"][0]
    assert group_fairness(column, y, y, max_groups=25)["warnings"] == []


@pytest.mark.parametrize(
    ("column", "kw"),
    [
        ("sex", {}),
        ("race", {}),
        ("age", {"numeric": True}),
        ("age", {"numeric": True, "bins": [30, 40, 50, 60, 70, 80]}),
        ("hours-per-week", {"numeric": True, "bins": 6}),
    ],
)
def test_scored_groups_match_fairlearn(adult: pd.DataFrame, column: str, kw: dict) -> None:
    fairlearn = pytest.importorskip("fairlearn.metrics")
    sample = adult.sample(700, random_state=3)  # small enough that some groups are too small
    found = _fair(sample, column, min_group_size=30, **kw)
    scored = {g["group"] for g in found["groups"] if not g["too_small"]}
    if kw.get("numeric"):
        keys = bin_numeric(sample[column], kw.get("bins", 4))[0]
    else:
        keys = sample[column].astype(str).to_numpy()
    if column == "race" or kw.get("bins") == [30, 40, 50, 60, 70, 80]:  # some left out
        assert len(scored) < len(found["groups"])
    keep = np.isin(keys, list(scored))
    y, pred, groups = sample["y"].to_numpy()[keep], sample["pred"].to_numpy()[keep], keys[keep]
    assert found["demographic_parity_difference"] == pytest.approx(
        fairlearn.demographic_parity_difference(y, pred, sensitive_features=groups)
    )
    assert found["disparate_impact_ratio"] == pytest.approx(
        fairlearn.demographic_parity_ratio(y, pred, sensitive_features=groups)
    )
    assert found["equalized_odds_difference"] == pytest.approx(
        fairlearn.equalized_odds_difference(y, pred, sensitive_features=groups)
    )
    frame = fairlearn.MetricFrame(
        metrics={"selection_rate": fairlearn.selection_rate, "tpr": fairlearn.true_positive_rate},
        y_true=y,
        y_pred=pred,
        sensitive_features=groups,
    ).by_group
    for g in found["groups"]:
        if not g["too_small"]:
            assert g["selection_rate"] == pytest.approx(frame.loc[g["group"], "selection_rate"])
            assert g["tpr"] == pytest.approx(frame.loc[g["group"], "tpr"])
