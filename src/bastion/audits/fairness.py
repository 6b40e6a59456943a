"""Fairness: how a model's decisions differ across the groups of a sensitive attribute.

:func:`group_fairness` takes one sensitive column of the test table, the true labels and
the predicted labels (both 0/1) and returns, per group, ``count``, ``accuracy``,
``selection_rate``, ``base_rate``, ``tpr`` and ``fpr``, and across groups
``demographic_parity_difference`` (max − min selection rate), ``disparate_impact_ratio``
(min / max selection rate) and ``equalized_odds_difference`` (the larger of the TPR and
FPR spreads). A missing value is the group ``(missing)``; past 50 groups, the smallest
are pooled as ``(other)``. A number that is undefined (an empty group, a zero rate) is
``None``, never NaN.

A measurement, not a decision: the evaluate stage records it; gates decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["group_fairness"]

_MAX_GROUPS = 50


def group_fairness(column: Any, y: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Per-group rates and the gaps between groups (see the module docstring)."""
    keys = column.astype(object).where(column.notna(), "(missing)").astype(str).to_numpy()
    values, counts = np.unique(keys, return_counts=True)
    if len(values) > _MAX_GROUPS:
        top = set(values[np.argsort(-counts, kind="stable")[: _MAX_GROUPS - 1]])
        keys = np.where(np.isin(keys, list(top)), keys, "(other)")
    rows = []
    for group in sorted(set(keys.tolist())):
        mask = keys == group
        pos, neg = mask & (y == 1), mask & (y == 0)
        rows.append(
            {
                "group": group,
                "count": int(mask.sum()),
                "accuracy": _mean(y_pred[mask] == y[mask]),
                "selection_rate": _mean(y_pred[mask]),
                "base_rate": _mean(y[mask]),
                "tpr": _mean(y_pred[pos]),
                "fpr": _mean(y_pred[neg]),
            }
        )
    return {
        "groups": rows,
        "demographic_parity_difference": _spread(r["selection_rate"] for r in rows),
        "disparate_impact_ratio": _ratio([r["selection_rate"] for r in rows]),
        "equalized_odds_difference": _max_or_none(
            _spread(r["tpr"] for r in rows), _spread(r["fpr"] for r in rows)
        ),
    }


def _mean(values: np.ndarray) -> float | None:
    return _num(float(np.mean(values))) if len(values) else None


def _spread(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return _num(max(present) - min(present)) if present else None


def _ratio(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present or max(present) == 0:
        return None
    return _num(min(present) / max(present))


def _max_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
