"""Fairness: how a model's decisions differ across the groups of a sensitive attribute.

:func:`group_fairness` takes one sensitive column of the test table, the true labels and
the predicted labels (both 0/1) and returns, per group, ``count``, ``accuracy``,
``selection_rate``, ``base_rate``, ``tpr`` and ``fpr``, and across groups
``demographic_parity_difference`` (max − min selection rate), ``disparate_impact_ratio``
(min / max selection rate) and ``equalized_odds_difference`` (the larger of the TPR and
FPR spreads), the same definitions as fairlearn's ``demographic_parity_difference``,
``demographic_parity_ratio`` and ``equalized_odds_difference``. A number that is undefined
(an empty group, a zero rate) is ``None``, never NaN.

Groups:

- a numeric attribute (``numeric=True``: an int or float column of the schema) is cut into
  bins first, since one group per distinct age is noise: the declared edges (``bins`` a
  list), else quantile bins of the test column (``bins`` a count, default 4) with edges
  rounded (whole numbers for whole-number values, three significant digits otherwise). Edges
  ``[25, 45]`` give the groups ``<25``, ``[25, 45)`` and ``>=45``. ``binning`` records the
  method (``declared`` or ``quantile``) and the edges;
- a missing value is the group ``(missing)``; past 50 groups, the smallest are pooled as
  ``(other)``;
- a group of fewer than ``min_group_size`` rows is reported with its count and
  ``too_small: true``, without rates, and left out of the differences and the ratio
  (which are ``None`` unless at least two groups are scored);
- ``warnings`` names the attribute when it has more than ``max_groups`` groups (after
  binning), or fewer than two groups large enough to compare.

A measurement, not a decision: the evaluate stage records it; gates decide.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_GROUPS", "MIN_GROUP_SIZE", "QUANTILE_BINS", "bin_numeric", "group_fairness"]

MIN_GROUP_SIZE = 30
"""Default smallest group that is scored; smaller ones are reported as too small."""
MAX_GROUPS = 20
"""Default number of groups past which an attribute gets a warning."""
QUANTILE_BINS = 4
"""Default number of quantile bins for a numeric attribute with no declared edges."""
_POOL_AFTER = 50
_MISSING = "(missing)"


def group_fairness(
    column: Any,
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    name: str | None = None,
    numeric: bool = False,
    bins: Sequence[float] | int | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
) -> dict[str, Any]:
    """Per-group rates and the gaps between groups (see the module docstring)."""
    attr = name if name is not None else str(getattr(column, "name", "?"))
    binning = None
    if numeric:
        keys, order, binning = bin_numeric(column, QUANTILE_BINS if bins is None else bins)
    else:
        keys = column.astype(object).where(column.notna(), _MISSING).astype(str).to_numpy()
        order = sorted(set(keys.tolist()))
    values, counts = np.unique(keys, return_counts=True)
    if len(values) > _POOL_AFTER:
        top = set(values[np.argsort(-counts, kind="stable")[: _POOL_AFTER - 1]])
        keys = np.where(np.isin(keys, list(top)), keys, "(other)")
        order = [g for g in order if g in top] + ["(other)"]
    present = set(keys.tolist())
    rows = [_group(g, keys == g, y, y_pred, min_group_size) for g in order if g in present]
    scored = [r for r in rows if not r["too_small"]]
    compared = scored if len(scored) >= 2 else []  # one group has nothing to differ from
    return {
        "groups": rows,
        "binning": binning,
        "min_group_size": min_group_size,
        "scored_groups": len(scored),
        "demographic_parity_difference": _spread(r["selection_rate"] for r in compared),
        "disparate_impact_ratio": _ratio([r["selection_rate"] for r in compared]),
        "equalized_odds_difference": _max_or_none(
            _spread(r["tpr"] for r in compared), _spread(r["fpr"] for r in compared)
        ),
        "warnings": _warnings(attr, len(values), len(scored), min_group_size, max_groups),
    }


def bin_numeric(
    column: Any, bins: Sequence[float] | int
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Each value's bin label, the labels in order, and ``{method, edges}``.

    ``bins`` is a list of ascending edges (``declared``) or a number of quantile bins.
    """
    numbers = pd.to_numeric(column, errors="coerce")
    present = numbers.notna().to_numpy()
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    if isinstance(bins, int):
        whole = _is_int(column) or bool(np.all(np.mod(values[present], 1) == 0))
        method, edges = "quantile", _quantile_edges(values[present], bins, whole)
    else:
        method, edges = "declared", [float(e) for e in bins]
    shown = [_edge(e) for e in edges]
    labels = [f"<{shown[0]}"] if shown else ["all"]
    labels += [f"[{a}, {b})" for a, b in itertools.pairwise(shown)]
    labels += [f">={shown[-1]}"] if shown else []
    where = np.searchsorted(np.asarray(edges, dtype="float64"), values[present], side="right")
    keys = np.full(len(values), _MISSING, dtype=object)
    keys[present] = np.asarray(labels, dtype=object)[where]
    info: dict[str, Any] = {"method": method, "edges": [_plain(e) for e in edges]}
    if method == "quantile":
        info["bins"] = bins
    return keys.astype(str), [*labels, _MISSING], info


def _quantile_edges(values: np.ndarray, count: int, whole: bool) -> list[float]:
    """The inner quantile cut points of ``values``, rounded, without repeats."""
    if len(values) == 0 or count < 2:
        return []
    cuts = np.quantile(values, np.arange(1, count) / count)
    rounded = [float(round(c)) if whole else float(f"{c:.3g}") for c in cuts]
    low = float(np.min(values))
    return sorted({c for c in rounded if c > low})  # a cut at the minimum leaves "<c" empty


def _group(
    group: str, mask: np.ndarray, y: np.ndarray, y_pred: np.ndarray, min_size: int
) -> dict[str, Any]:
    count = int(mask.sum())
    if count < min_size:
        return {"group": group, "count": count, "too_small": True}
    pos, neg = mask & (y == 1), mask & (y == 0)
    return {
        "group": group,
        "count": count,
        "too_small": False,
        "accuracy": _mean(y_pred[mask] == y[mask]),
        "selection_rate": _mean(y_pred[mask]),
        "base_rate": _mean(y[mask]),
        "tpr": _mean(y_pred[pos]),
        "fpr": _mean(y_pred[neg]),
    }


def _warnings(attr: str, groups: int, scored: int, min_size: int, limit: int) -> list[str]:
    out = []
    if groups > limit:
        out.append(
            f"sensitive attribute {attr!r} has {groups} groups (more than {limit}): declare"
            f" bins for it in evaluate.fairness.bins, or choose a coarser attribute"
        )
    if scored < 2:
        out.append(
            f"sensitive attribute {attr!r}: {scored} group(s) of at least {min_size} rows;"
            " no differences between groups can be measured"
        )
    return out


def _is_int(column: Any) -> bool:
    return bool(pd.api.types.is_integer_dtype(getattr(column, "dtype", None)))


def _edge(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else repr(float(edge))


def _plain(edge: float) -> float | int:
    return int(edge) if float(edge).is_integer() else float(edge)


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
