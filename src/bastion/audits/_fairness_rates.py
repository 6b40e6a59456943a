"""Fairness numbers from one bincount: per-group rates, the gaps between groups, intervals.

:func:`measure` takes each row's group number (from :mod:`bastion.audits.fairness_groups`),
counts every group's confusion cells (``group × truth × decision``) in one ``np.bincount``,
and returns the per-group rates, the differences and the ratio between the scored groups,
the warnings and, with resamples, seeded percentile bootstrap intervals drawn as one
multinomial array of cell counts (see :func:`_add_intervals`). Undefined numbers are
``None``, never NaN. The result is the dict :mod:`bastion.audits.fairness` documents.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bastion.errors import ConfigError

__all__ = ["measure"]

_RATES = ("accuracy", "selection_rate", "base_rate", "tpr", "fpr")
_GAPS = ("demographic_parity_difference", "disparate_impact_ratio", "equalized_odds_difference")


def _cells(codes: np.ndarray, groups: int, y: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """A (groups, 4) table of counts: [y=0 p=0, y=0 p=1, y=1 p=0, y=1 p=1], one bincount."""
    truth = np.asarray(y) == 1
    chosen = np.asarray(y_pred) == 1
    cell = codes * 4 + truth.astype(np.int64) * 2 + chosen
    return np.bincount(cell, minlength=groups * 4).reshape(groups, 4)


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Every rate from cell counts of shape (..., groups, 4); NaN where undefined."""
    c00, c01, c10, c11 = (cells[..., i].astype(np.float64) for i in range(4))
    n, pos, neg = c00 + c01 + c10 + c11, c10 + c11, c00 + c01
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": (c00 + c11) / n,
            "selection_rate": (c01 + c11) / n,
            "base_rate": pos / n,
            "tpr": c11 / pos,
            "fpr": c01 / neg,
        }


def _gaps(rates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The differences and the ratio over the last axis (the compared groups), NaN-aware."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = rates["selection_rate"]
        high, low = _nan_reduce(np.fmax, sr), _nan_reduce(np.fmin, sr)
        tpr, fpr = rates["tpr"], rates["fpr"]
        tpr_gap = _nan_reduce(np.fmax, tpr) - _nan_reduce(np.fmin, tpr)
        fpr_gap = _nan_reduce(np.fmax, fpr) - _nan_reduce(np.fmin, fpr)
        return {
            "demographic_parity_difference": high - low,
            "disparate_impact_ratio": np.where(high > 0, low / high, np.nan),
            "equalized_odds_difference": np.fmax(tpr_gap, fpr_gap),
        }


def _nan_reduce(op: Any, values: np.ndarray) -> np.ndarray:
    return np.asarray(op.reduce(values, axis=-1))


def measure(
    codes: np.ndarray,
    labels: list[str],
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    attr: str,
    distinct: int,
    binning: dict[str, Any] | None,
    sizes: tuple[int, int],
    boot: tuple[int, float, int],
) -> dict[str, Any]:
    """The rows, the gaps and the warnings from one bincount of the confusion cells."""
    min_size, max_groups = sizes
    cells = _cells(codes, len(labels), y, y_pred)
    rates = _rates(cells)
    counts = cells.sum(axis=1)
    scored = np.flatnonzero(counts >= min_size)
    rows = [
        _row(labels[g], int(counts[g]), rates, g, counts[g] >= min_size) for g in range(len(labels))
    ]
    compared = [rows[g] for g in scored] if len(scored) >= 2 else []  # one group: no gap
    found: dict[str, Any] = {
        "groups": rows,
        "binning": binning,
        "min_group_size": min_size,
        "scored_groups": len(scored),
        "demographic_parity_difference": _spread(r["selection_rate"] for r in compared),
        "disparate_impact_ratio": _ratio([r["selection_rate"] for r in compared]),
        "equalized_odds_difference": _max_or_none(
            _spread(r["tpr"] for r in compared), _spread(r["fpr"] for r in compared)
        ),
        "warnings": _warnings(attr, distinct, len(scored), min_size, max_groups),
    }
    n_boot, confidence, seed = boot
    if n_boot > 0:
        _add_intervals(found, cells, scored, n_boot, confidence, seed)
    return found


def _row(
    group: str, count: int, rates: Mapping[str, np.ndarray], g: int, scored: bool
) -> dict[str, Any]:
    if not scored:
        return {"group": group, "count": count, "too_small": True}
    row: dict[str, Any] = {"group": group, "count": count, "too_small": False}
    return row | {k: _num(rates[k][g]) for k in _RATES}


def _add_intervals(
    found: dict[str, Any],
    cells: np.ndarray,
    scored: np.ndarray,
    n_boot: int,
    confidence: float,
    seed: int,
) -> None:
    """Percentile intervals from ``n_boot`` bootstrap resamples of the rows, drawn at once.

    Every number depends on the rows only through the (group, truth, decision) cell
    counts, and resampling N rows with replacement gives cell counts that are multinomial
    (N, cell shares): one ``multinomial`` draw of shape (B, cells) is the row bootstrap
    exactly, in O(B × cells) instead of O(B × N). Which groups are scored and compared is
    fixed by the full data; a resample where a rate is undefined is left out of its interval.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"bootstrap confidence {confidence}: expected a number between 0 and 1")
    total = int(cells.sum())
    found["bootstrap"] = {"resamples": n_boot, "confidence": confidence, "seed": seed}
    if total == 0:
        found["intervals"] = dict.fromkeys(_GAPS)
        return
    rng = np.random.default_rng(seed)
    shares = cells.ravel() / total
    draws = rng.multinomial(total, shares, size=n_boot).reshape(n_boot, *cells.shape)
    rates = _rates(draws)
    tail = (1 - confidence) / 2 * 100
    per_group = {k: _percentiles(v, tail) for k, v in rates.items()}
    for g in scored:
        found["groups"][g]["interval"] = {k: _pair(per_group[k][:, g]) for k in _RATES}
    if len(scored) < 2:
        found["intervals"] = dict.fromkeys(_GAPS)
        return
    gaps = _gaps({k: v[:, scored] for k, v in rates.items()})
    found["intervals"] = {k: _pair(_percentiles(gaps[k], tail)) for k in _GAPS}


def _percentiles(values: np.ndarray, tail: float) -> np.ndarray:
    """The (low, high) percentiles along the resample axis, NaN where none is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice: no interval
        return np.asarray(np.nanpercentile(values, [tail, 100 - tail], axis=0))


def _pair(values: np.ndarray) -> list[float] | None:
    low, high = _num(values[0]), _num(values[1])
    return None if low is None or high is None else [low, high]


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
