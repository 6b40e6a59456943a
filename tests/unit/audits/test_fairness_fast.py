"""Issue 13, item 1 (measuring): the one-bincount fairness numbers equal fairlearn's
definitions to 1e-9 on the real Adult data, alone and crossed (sex & race); the bootstrap
intervals cover the estimate, shrink with n, agree with a plain row-by-row bootstrap and
are seeded; mitigation narrows the parity gap on a biased set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from bastion.audits.fairness import fairness_audit, group_fairness, intersectional_fairness
from bastion.audits.mitigation import mitigate
from bastion.errors import ConfigError

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"
RATES = {"selection_rate": "sr", "tpr": "tpr", "fpr": "fpr", "accuracy": "acc"}


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    """The real Adult test file (race groups from 135 to 13,946 rows), a fixed rule for
    the model's decisions."""
    df = pd.read_csv(DATA / "adult.test", skipinitialspace=True, na_values="?")
    df["y"] = df["Y"].str.startswith(">50K").astype("int64")
    df["pred"] = ((df["education-num"] >= 13) | (df["capital-gain"] > 5000)).astype("int64")
    return df


def _frame(y: np.ndarray, pred: np.ndarray, groups: object) -> pd.DataFrame:
    metrics = pytest.importorskip("fairlearn.metrics")
    return metrics.MetricFrame(
        metrics={
            "sr": metrics.selection_rate,
            "tpr": metrics.true_positive_rate,
            "fpr": metrics.false_positive_rate,
            "acc": accuracy_score,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=groups,
    ).by_group


def _gaps_match_fairlearn(found: dict, y: np.ndarray, pred: np.ndarray, groups: object) -> None:
    metrics = pytest.importorskip("fairlearn.metrics")
    pairs = {
        "demographic_parity_difference": metrics.demographic_parity_difference,
        "disparate_impact_ratio": metrics.demographic_parity_ratio,
        "equalized_odds_difference": metrics.equalized_odds_difference,
    }
    for key, fn in pairs.items():
        assert abs(found[key] - fn(y, pred, sensitive_features=groups)) <= 1e-9, key


@pytest.mark.parametrize("column", ["race", "sex", "relationship"])
def test_every_rate_and_gap_equals_fairlearn_to_1e_9(adult: pd.DataFrame, column: str) -> None:
    df = adult.dropna(subset=[column])
    y, pred = df["y"].to_numpy(), df["pred"].to_numpy()
    found = group_fairness(df[column], y, pred, min_group_size=1)
    frame = _frame(y, pred, df[column])
    assert sorted(g["group"] for g in found["groups"]) == sorted(map(str, frame.index))
    assert len({g["count"] for g in found["groups"]}) > 1  # groups of varied sizes
    for g in found["groups"]:
        for ours, theirs in RATES.items():
            assert abs(g[ours] - frame.loc[g["group"], theirs]) <= 1e-9, (g["group"], ours)
    _gaps_match_fairlearn(found, y, pred, df[column])


def test_sex_and_race_crossed_equal_fairlearn_on_the_intersection(adult: pd.DataFrame) -> None:
    y, pred = adult["y"].to_numpy(), adult["pred"].to_numpy()
    columns = {"sex": adult["sex"], "race": adult["race"]}
    found = intersectional_fairness(columns, y, pred, min_group_size=1)
    assert found["attributes"] == ["sex", "race"]
    frame = _frame(y, pred, adult[["sex", "race"]])
    assert len(found["groups"]) == len(frame) == 10
    for g in found["groups"]:
        sex, race = g["group"].split(" & ")
        for ours, theirs in RATES.items():
            assert abs(g[ours] - frame.loc[(sex, race), theirs]) <= 1e-9
    _gaps_match_fairlearn(found, y, pred, adult[["sex", "race"]])


def test_crossed_groups_below_the_minimum_are_counted_not_scored(adult: pd.DataFrame) -> None:
    sample = adult.sample(3000, random_state=1)
    y, pred = sample["y"].to_numpy(), sample["pred"].to_numpy()
    found = fairness_audit(sample, ["sex", "race", "age"], y, pred, min_group_size=30, n_boot=50)
    assert set(found["attributes"]) == {"sex", "race", "age"}
    assert found["attributes"]["age"]["binning"]["method"] == "quantile"  # numeric: binned
    crossed = found["intersectional"]
    assert crossed["attributes"] == ["sex", "race", "age"]
    assert crossed["binning"]["age"]["method"] == "quantile"
    assert "Male & White & <28" in {g["group"] for g in crossed["groups"]}
    small = [g for g in crossed["groups"] if g["too_small"]]
    scored = [g for g in crossed["groups"] if not g["too_small"]]
    assert small and all(g["count"] < 30 and "tpr" not in g for g in small)
    assert all(g["count"] >= 30 for g in scored)
    assert sum(g["count"] for g in crossed["groups"]) == len(sample)
    rates = [g["selection_rate"] for g in scored]
    assert crossed["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))
    single = fairness_audit(sample, ["sex"], y, pred, n_boot=0)
    assert single["intersectional"] is None


def _biased(n: int, seed: int) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.6, 0.3, 0.1])
    rate = np.select([group == "a", group == "b"], [0.5, 0.3], 0.2)
    y = (rng.random(n) < 0.4).astype(np.int64)
    pred = np.where(rng.random(n) < 0.8, y, rng.random(n) < rate).astype(np.int64)
    pred[(group == "a") & (rng.random(n) < 0.2)] = 1
    return pd.Series(group), y, pred


def test_intervals_cover_the_estimate_and_shrink_with_n() -> None:
    widths = []
    for n in (2_000, 50_000):
        group, y, pred = _biased(n, seed=7)
        found = group_fairness(group, y, pred, n_boot=1000, seed=3)
        assert found["bootstrap"] == {"resamples": 1000, "confidence": 0.95, "seed": 3}
        for g in found["groups"]:
            for key in ("accuracy", "selection_rate", "base_rate", "tpr", "fpr"):
                low, high = g["interval"][key]
                assert low <= g[key] <= high, (n, g["group"], key)
        for key in ("demographic_parity_difference", "disparate_impact_ratio"):
            low, high = found["intervals"][key]
            assert low <= found[key] <= high and low < high
        low, high = found["intervals"]["demographic_parity_difference"]
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # about sqrt(25) = 5 times narrower


def test_intervals_agree_with_a_plain_row_bootstrap() -> None:
    group, y, pred = _biased(4_000, seed=11)
    found = group_fairness(group, y, pred, n_boot=4000, seed=0)
    rng = np.random.default_rng(99)
    gaps, rates = [], []
    for _ in range(1000):  # resample the rows themselves, one by one
        pick = rng.integers(0, len(y), len(y))
        again = group_fairness(group.iloc[pick].reset_index(drop=True), y[pick], pred[pick])
        gaps.append(again["demographic_parity_difference"])
        rates.append(again["groups"][2]["tpr"])  # group c, the smallest (about 400 rows)
    for ours, plain in [
        (found["intervals"]["demographic_parity_difference"], gaps),
        (found["groups"][2]["interval"]["tpr"], rates),
    ]:
        expected = np.percentile(plain, [2.5, 97.5])
        assert np.allclose(ours, expected, atol=0.015), (ours, expected)


def test_intervals_are_seeded() -> None:
    group, y, pred = _biased(5_000, seed=5)
    first = group_fairness(group, y, pred, n_boot=200, seed=42)
    assert first == group_fairness(group, y, pred, n_boot=200, seed=42)
    other = group_fairness(group, y, pred, n_boot=200, seed=43)
    assert other["intervals"] != first["intervals"]
    assert "interval" not in group_fairness(group, y, pred)["groups"][0]  # off by default


def test_a_group_without_positives_has_no_tpr_interval() -> None:
    group = pd.Series(["a"] * 40 + ["b"] * 40)
    y = np.array([0, 1] * 20 + [0] * 40)
    pred = np.array([0, 1] * 40)
    found = group_fairness(group, y, pred, n_boot=100)
    b = found["groups"][1]
    assert b["tpr"] is None and b["interval"]["tpr"] is None
    assert b["interval"]["fpr"] is not None


def _biased_training(n: int) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    rng = np.random.default_rng(0)
    sex = rng.choice(np.array(["F", "M"]), size=n)
    skill = rng.normal(size=n) + np.where(sex == "M", 0.8, 0.0)
    x = pd.DataFrame({"skill": skill, "other": rng.normal(size=n), "m": (sex == "M") * 1.0})
    y = (skill + 0.5 * rng.normal(size=n) > 0.5).astype(np.int64)
    return x, y, pd.Series(sex, name="sex")


@pytest.mark.parametrize(
    ("method", "constraint"),
    [("threshold", "demographic_parity"), ("exponentiated_gradient", "demographic_parity")],
)
def test_mitigation_narrows_the_parity_gap(method: str, constraint: str) -> None:
    pytest.importorskip("fairlearn")
    from sklearn.linear_model import LogisticRegression

    x, y, sex = _biased_training(3_000)
    found = mitigate(LogisticRegression(), x, y, sex, method=method, constraint=constraint)
    before = found["before"]["fairness"]["demographic_parity_difference"]
    after = found["after"]["fairness"]["demographic_parity_difference"]
    assert before > 0.2 and after < before / 3, (before, after)
    assert found["predictions"].shape == (3_000,)
    assert 0.5 < found["after"]["accuracy"] < found["before"]["accuracy"]


def test_mitigation_refuses_an_unknown_method_or_a_missing_fairlearn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, sex = _biased_training(200)
    with pytest.raises(ConfigError, match="expected one of threshold, exponentiated_gradient"):
        mitigate(LogisticRegression(), x, y, sex, method="reweigh")
    monkeypatch.setitem(sys.modules, "fairlearn.reductions", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"install the 'fairness' extra"):
        mitigate(LogisticRegression(), x, y, sex)


def _by_masks(keys: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """The plain per-group computation the one-bincount pass replaced: a mask per group."""
    out = {}
    for g in np.unique(keys):
        m = keys == g
        pos, neg = m & (y == 1), m & (y == 0)
        out[str(g)] = {
            "count": int(m.sum()),
            "accuracy": float(np.mean(pred[m] == y[m])),
            "selection_rate": float(np.mean(pred[m])),
            "base_rate": float(np.mean(y[m])),
            "tpr": float(np.mean(pred[pos])) if pos.any() else None,
            "fpr": float(np.mean(pred[neg])) if neg.any() else None,
        }
    return out


@pytest.mark.parametrize("seed", range(5))
def test_one_pass_equals_a_mask_per_group_with_missing_values_and_bins(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 3_000))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.int64)
    pred = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.int64)
    names = np.array([f"g{i}" for i in range(int(rng.integers(2, 12)))], dtype=object)
    column = pd.Series(names[rng.zipf(1.6, n) % len(names)])
    column[rng.random(n) < 0.05] = None
    found = group_fairness(column, y, pred, min_group_size=1)
    keys = column.fillna("(missing)").to_numpy(dtype=str)
    expected = _by_masks(keys, y, pred)
    assert {
        g["group"]: {k: v for k, v in g.items() if k not in ("group", "too_small")}
        for g in found["groups"]
    } == expected
    ages = pd.Series(rng.integers(17, 90, n)).astype("Int64")
    ages[rng.random(n) < 0.05] = pd.NA
    binned = group_fairness(ages, y, pred, numeric=True, bins=[30, 50], min_group_size=1)
    labels = np.where(
        ages.isna(),
        "(missing)",
        np.where(ages.fillna(0) < 30, "<30", np.where(ages.fillna(0) < 50, "[30, 50)", ">=50")),
    )
    assert [g["group"] for g in binned["groups"]] == [
        g for g in ["<30", "[30, 50)", ">=50", "(missing)"] if g in set(labels)
    ]
    expected = _by_masks(labels, y, pred)
    for g in binned["groups"]:
        assert {k: g[k] for k in expected[g["group"]]} == expected[g["group"]]


def test_bad_settings_are_refused_with_what_was_expected() -> None:
    group, y, pred = _biased(500, seed=1)
    with pytest.raises(ConfigError, match=r"confidence 1\.5: expected a number between 0 and 1"):
        group_fairness(group, y, pred, n_boot=10, confidence=1.5)
    with pytest.raises(ConfigError, match="no attributes given"):
        intersectional_fairness({}, y, pred)
