"""bastion.audits.fairness: per-group rates and the gaps between groups, computed by hand on a
small table; undefined numbers are None, never NaN; many groups are pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.audits.fairness import group_fairness


def test_rates_and_gaps_match_a_hand_count() -> None:
    column = pd.Series(["a", "a", "a", "a", "b", "b", "b", "b"])
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    found = group_fairness(column, y, y_pred, min_group_size=1)
    a, b = found["groups"]
    assert a == {
        "group": "a",
        "count": 4,
        "too_small": False,
        "accuracy": 0.5,
        "selection_rate": 0.5,
        "base_rate": 0.5,
        "tpr": 0.5,
        "fpr": 0.5,
    }
    assert (b["accuracy"], b["selection_rate"], b["tpr"], b["fpr"]) == (1.0, 0.5, 1.0, 0.0)
    assert found["demographic_parity_difference"] == 0.0
    assert found["disparate_impact_ratio"] == 1.0
    assert found["equalized_odds_difference"] == 0.5


def test_a_group_without_positives_has_no_tpr_and_missing_values_are_a_group() -> None:
    column = pd.Series(["x", None, "x"], dtype=object)
    y = np.array([0, 1, 1])
    y_pred = np.array([0, 1, 0])
    found = group_fairness(column, y, y_pred, min_group_size=1)
    groups = {g["group"]: g for g in found["groups"]}
    assert set(groups) == {"(missing)", "x"}
    assert groups["(missing)"]["fpr"] is None  # no negatives: undefined, not NaN
    assert groups["x"]["tpr"] == 0.0


def test_no_one_selected_gives_no_disparate_impact_ratio() -> None:
    found = group_fairness(
        pd.Series(["a", "b"]), np.array([1, 0]), np.array([0, 0]), min_group_size=1
    )
    assert found["disparate_impact_ratio"] is None


def test_past_fifty_groups_the_smallest_are_pooled_as_other() -> None:
    column = pd.Series([f"g{i}" for i in range(60)] + ["g0"] * 10)
    y = np.zeros(len(column), dtype=int)
    found = group_fairness(column, y, y, min_group_size=1)
    names = [g["group"] for g in found["groups"]]
    assert len(names) == 50 and "(other)" in names and "g0" in names
