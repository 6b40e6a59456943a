"""bastion.defenses.poisoning: each detector finds the attack it is named after, on real
Adult rows with seeded poison, names the rows, and leaves clean data mostly alone.

The detection *quality* figures (precision, recall, accuracy, attack success against
cleanlab and IsolationForest) are measured on the whole file by
benchmarks/bench_poisoning.py; these tests pin the behaviour with generous bounds that
a broken detector cannot meet (chance precision is the poison rate)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.defenses.findings import Finding
from bastion.defenses.poisoning import DETECTORS, screen_table
from bastion.defenses.shift import profile_table
from bastion.spec.config import ScreenConfig
from tests.helpers.adult import DATA

LABEL, POS, NEG = "Y", ">50K", "<=50K"


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    """8,000 Adult training rows (seeded sample), typed as the validate stage types them."""
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values=["?"])
    return df.sample(8_000, random_state=3).reset_index(drop=True)


def _cfg(**doc: Any) -> ScreenConfig:
    return ScreenConfig.model_validate(doc)


def _rows(findings: list[Finding], detector: str, reason: str | None = None) -> set[int]:
    return {
        f.row
        for f in findings
        if f.detector == detector and f.row is not None and reason in (None, f.reason)
    }


def _pr(found: set[int], truth: np.ndarray) -> tuple[float, float]:
    tp = len(found & set(truth.tolist()))
    return tp / max(len(found), 1), tp / len(truth)


def test_random_label_flips_are_found_far_above_chance(adult: pd.DataFrame) -> None:
    rng = np.random.default_rng(1)
    rows = rng.choice(len(adult), 800, replace=False)
    poisoned = adult.copy()
    poisoned.loc[rows, LABEL] = np.where(poisoned.loc[rows, LABEL] == POS, NEG, POS)
    result = screen_table(poisoned, label=LABEL, positive=POS, cfg=_cfg())
    precision, recall = _pr(_rows(result.findings, "label_noise", "label_flip"), rows)
    assert precision > 0.45  # chance is 0.10
    assert recall > 0.5
    first = next(f for f in result.findings if f.detector == "label_noise")
    assert "cross-validated" in first.detail and 0.7 <= first.score <= 1.0


def test_backdoor_trigger_rows_are_found_and_the_trigger_is_named(adult: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    negatives = np.flatnonzero((adult[LABEL] == NEG).to_numpy())
    rows = rng.choice(negatives, 80, replace=False)
    poisoned = adult.copy()
    poisoned.loc[rows, "capital-loss"] = 1337
    poisoned.loc[rows, LABEL] = POS
    result = screen_table(
        poisoned, label=LABEL, positive=POS, cfg=_cfg(), show_values=["capital-loss"]
    )
    found = _rows(result.findings, "backdoor", "backdoor_trigger")
    assert set(rows.tolist()) <= found
    trigger = next(t for t in result.triggers if t["column"] == "capital-loss")
    assert trigger["value"] == 1337 and trigger["label"] == POS and trigger["observed"] == 80
    detail = next(f.detail for f in result.findings if f.reason == "backdoor_trigger")
    assert detail.startswith("capital-loss=1337 predicts")
    assert trigger["expected"] < 40  # the other features say these are mostly "<=50K"
    assert result.policies["backdoor"] == "quarantine"
    assert set(rows.tolist()) <= set(result.rows_for("quarantine").tolist())


def test_a_natural_rare_value_explained_by_other_features_is_not_a_trigger(
    adult: pd.DataFrame,
) -> None:
    result = screen_table(adult, label=LABEL, positive=POS, cfg=_cfg(), show_values=["education"])
    # "Preschool" rows are all "<=50K", and so is what their schooling predicts
    assert not any(t["value"] == "Preschool" for t in result.triggers)
    assert len(_rows(result.findings, "backdoor")) < 0.01 * len(adult)


def test_duplicate_flood_is_found_exact_and_near(adult: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    seeds = rng.choice(len(adult), 10, replace=False)
    copies = adult.iloc[np.repeat(seeds, 20)].copy()
    near = np.arange(len(copies)) % 2 == 1
    jitter = 1 + rng.uniform(-0.004, 0.004, len(copies))
    copies.loc[near, "fnlwgt"] = (copies["fnlwgt"].to_numpy() * jitter)[near].round()
    flooded = pd.concat([adult, copies], ignore_index=True)
    result = screen_table(flooded, label=LABEL, positive=POS, cfg=_cfg())
    flood = _rows(result.findings, "duplicates", "duplicate_flood")
    added = set(range(len(adult), len(flooded)))
    assert added <= flood  # recall 1.0
    assert flood - added <= set(seeds.tolist())  # beyond the copies, only their originals
    size = next(f.score for f in result.findings if f.reason == "duplicate_flood")
    assert size == 21


def test_unflooded_adult_has_no_flood_and_only_its_real_duplicates(adult: pd.DataFrame) -> None:
    result = screen_table(adult, label=LABEL, positive=POS, cfg=_cfg())
    assert not _rows(result.findings, "duplicates", "duplicate_flood")
    exact = _rows(result.findings, "duplicates", "exact_duplicate")
    assert exact == set(np.flatnonzero(adult.duplicated().to_numpy()).tolist())


def test_class_outliers_name_the_column_that_makes_them_odd(adult: pd.DataFrame) -> None:
    odd = adult.iloc[:5].copy()
    odd[LABEL] = NEG
    odd["capital-gain"] = 99_999
    odd["hours-per-week"] = 99
    odd["native-country"] = "Holand-Netherlands"
    odd["occupation"] = "Armed-Forces"
    table = pd.concat([adult, odd], ignore_index=True)
    result = screen_table(table, label=LABEL, positive=POS, cfg=_cfg())
    planted = set(range(len(adult), len(table)))
    outliers = [f for f in result.findings if f.detector == "outliers"]
    assert planted <= {f.row for f in outliers}
    assert len(outliers) < 0.02 * len(table)
    assert all(f.column in table.columns for f in outliers)
    assert result.policies["outliers"] == "flag"  # outliers are reported, not removed


def test_policies_come_from_the_config(adult: pd.DataFrame) -> None:
    cfg = _cfg(policy="fail", outliers={"policy": "quarantine"})
    table = pd.concat([adult, adult.iloc[:3]], ignore_index=True)  # three exact repeats
    result = screen_table(table, label=LABEL, positive=POS, cfg=cfg)
    assert result.policies == {
        "label_noise": "flag",
        "outliers": "quarantine",
        "duplicates": "fail",
        "backdoor": "fail",
        "shift": "flag",
    }
    assert {f.row for f in result.failing() if f.detector == "duplicates"} >= {8000, 8001, 8002}


def test_unsafe_skip_means_not_run_and_says_so(adult: pd.DataFrame) -> None:
    cfg = _cfg(unsafe_skip=["label_noise", "backdoor"])
    result = screen_table(adult.iloc[:2000], label=LABEL, positive=POS, cfg=cfg)
    assert result.ran == ["outliers", "duplicates"]
    assert result.skipped == ["label_noise", "backdoor", "shift"]  # shift: no baseline
    assert "cross_validation" not in result.seconds
    assert not _rows(result.findings, "label_noise")


def test_shift_against_a_baseline_profile(adult: pd.DataFrame) -> None:
    baseline = profile_table(adult.iloc[:4000], label=LABEL, positive=POS)
    same = screen_table(adult.iloc[4000:], label=LABEL, positive=POS, cfg=_cfg(), baseline=baseline)
    assert "shift" in same.ran
    assert not [f for f in same.findings if f.detector == "shift"]
    moved = adult.iloc[4000:].copy()
    moved["age"] = moved["age"] + 25
    shifted = screen_table(moved, label=LABEL, positive=POS, cfg=_cfg(), baseline=baseline)
    assert any(f.detector == "shift" and f.column == "age" for f in shifted.findings)
    assert shifted.shift is not None and "age" in shifted.shift["columns"]


def test_screen_is_deterministic_for_a_seed(adult: pd.DataFrame) -> None:
    part = adult.iloc[:3000]
    a = screen_table(part, label=LABEL, positive=POS, cfg=_cfg(), seed=5)
    b = screen_table(part, label=LABEL, positive=POS, cfg=_cfg(), seed=5)
    assert [f.to_json() for f in a.findings] == [f.to_json() for f in b.findings]


def test_rows_with_a_null_label_are_not_screened_and_rows_keep_their_numbers(
    adult: pd.DataFrame,
) -> None:
    table = adult.iloc[:3000].copy()
    table.loc[[0, 10, 20], LABEL] = None
    dup = table.iloc[[100]]
    table = pd.concat([table, dup], ignore_index=True)  # row 3000 repeats row 100
    result = screen_table(table, label=LABEL, positive=POS, cfg=_cfg())
    assert result.unlabelled == 3
    assert 3000 in _rows(result.findings, "duplicates", "exact_duplicate")
    assert not {0, 10, 20} & {f.row for f in result.findings}


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_tiny_tables_do_not_crash(adult: pd.DataFrame, rows: int) -> None:
    result = screen_table(adult.iloc[:rows], label=LABEL, positive=POS, cfg=_cfg())
    assert result.rows == rows
    assert set(result.ran) | set(result.skipped) == set(DETECTORS)


def test_one_class_only_skips_the_model_detectors(adult: pd.DataFrame) -> None:
    table = adult[adult[LABEL] == NEG].iloc[:500]
    result = screen_table(table, label=LABEL, positive=POS, cfg=_cfg())
    assert {"label_noise", "backdoor"} <= set(result.skipped)


def test_nan_and_infinities_and_mixed_columns_are_handled(adult: pd.DataFrame) -> None:
    table = adult.iloc[:2000].copy()
    table["x"] = np.linspace(0, 1, len(table))
    table.loc[[1, 2], "x"] = [np.inf, -np.inf]
    table.loc[3, "x"] = np.nan
    table["mixed"] = ["a", 1, 2.5, None] * 500
    result = screen_table(table, label=LABEL, positive=POS, cfg=_cfg())
    assert result.rows == 2000


def test_missing_label_column_is_a_clear_error(adult: pd.DataFrame) -> None:
    from bastion.errors import DataError

    with pytest.raises(DataError, match=r"label column 'nope' is not in the table"):
        screen_table(adult, label="nope", cfg=_cfg())


def test_json_report_has_counts_examples_and_every_finding(adult: pd.DataFrame) -> None:
    table = pd.concat([adult.iloc[:2000], adult.iloc[:2]], ignore_index=True)
    result = screen_table(table, label=LABEL, positive=POS, cfg=_cfg())
    doc = result.to_json(all_findings=True)
    assert doc["counts"]["duplicates"]["exact_duplicate"] == 2
    assert {"row", "detector", "reason", "score"} <= set(doc["findings"][0])
    assert doc["rows_quarantined"] == len(result.rows_for("quarantine"))
    assert all(len(v) <= 5 for v in doc["examples"].values())
