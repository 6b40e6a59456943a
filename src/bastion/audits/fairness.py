# Over 400 lines, because one measurement: groups, one-bincount rates, their bootstrap intervals.
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

Speed and intervals (issue 13): each row gets a group number (``pd.factorize``, or its bin),
and one ``np.bincount`` of ``group × truth × decision`` gives every group's confusion cells
at once, with no per-group mask, so a million rows take milliseconds. With ``n_boot`` > 0,
every rate and every gap gets a seeded percentile interval from a bootstrap drawn as one
multinomial array of cell counts (see :func:`_add_intervals`). :func:`intersectional_fairness`
measures the crossed groups of several attributes (``Female & Black``) with the same rules;
:func:`fairness_audit` runs every attribute and their intersection with intervals.

A measurement, not a decision: the evaluate stage records it; gates decide.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bastion.errors import ConfigError

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "MAX_GROUPS",
    "MIN_GROUP_SIZE",
    "QUANTILE_BINS",
    "bin_numeric",
    "fairness_audit",
    "group_codes",
    "group_fairness",
    "intersectional_fairness",
]

MIN_GROUP_SIZE = 30
"""Default smallest group that is scored; smaller ones are reported as too small."""
MAX_GROUPS = 20
"""Default number of groups past which an attribute gets a warning."""
QUANTILE_BINS = 4
"""Default number of quantile bins for a numeric attribute with no declared edges."""
BOOTSTRAP_RESAMPLES = 1000
"""Default number of bootstrap resamples of :func:`fairness_audit`."""
CONFIDENCE = 0.95
"""Default level of the percentile intervals."""
_POOL_AFTER = 50
_MISSING = "(missing)"
_OTHER = "(other)"
_JOIN = " & "
_RATES = ("accuracy", "selection_rate", "base_rate", "tpr", "fpr")
_GAPS = ("demographic_parity_difference", "disparate_impact_ratio", "equalized_odds_difference")


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
    n_boot: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group rates and the gaps between groups (see the module docstring).

    ``n_boot`` > 0 adds bootstrap intervals (``interval`` per scored group, ``intervals``
    for the gaps, ``bootstrap`` for how they were drawn).
    """
    attr = name if name is not None else str(getattr(column, "name", "?"))
    codes, labels, distinct, binning = group_codes(column, numeric=numeric, bins=bins)
    return _measure(
        codes,
        labels,
        y,
        y_pred,
        attr=attr,
        distinct=distinct,
        binning=binning,
        sizes=(min_group_size, max_groups),
        boot=(n_boot, confidence, seed),
    )


def intersectional_fairness(
    columns: Mapping[str, Any],
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    numeric: Collection[str] = (),
    bins: Mapping[str, Sequence[float] | int] | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
    n_boot: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """The same measurement on every combination of the attributes' groups.

    A group is named by its attributes' groups joined with `` & `` (``Female & Black``),
    in the order the attributes are given; numeric attributes are binned first; the
    result has ``attributes`` (the names) and ``binning`` per attribute.
    """
    names = list(columns)
    bins = bins or {}
    combined: np.ndarray | None = None
    parts: list[list[str]] = []
    binning: dict[str, Any] = {}
    for attr in names:
        codes, labels, _, binning[attr] = group_codes(
            columns[attr], numeric=attr in numeric, bins=bins.get(attr)
        )
        combined = codes if combined is None else combined * len(labels) + codes
        parts.append(labels)
    if combined is None:
        raise ConfigError("intersectional_fairness: no attributes given; expected at least one")
    present, codes = np.unique(combined, return_inverse=True)
    labels = [_JOIN.join(_digits(int(c), parts)) for c in present]
    codes, labels, distinct = _pool(codes.astype(np.int64), labels, sorted(labels))
    found = _measure(
        codes,
        labels,
        y,
        y_pred,
        attr=_JOIN.join(names),
        distinct=distinct,
        binning=None,
        sizes=(min_group_size, max_groups),
        boot=(n_boot, confidence, seed),
    )
    return {**found, "attributes": names, "binning": binning}


def fairness_audit(
    table: pd.DataFrame,
    sensitive: Sequence[str],
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    numeric: Collection[str] | None = None,
    bins: Mapping[str, Sequence[float] | int] | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Every sensitive attribute alone (``attributes``) and, with two or more, all of them
    crossed (``intersectional``, else ``None``), each with bootstrap intervals.

    ``numeric`` names the attributes to bin; by default every int or float column.
    """
    if numeric is None:
        numeric = [a for a in sensitive if _is_number(table[a])]
    bins = bins or {}
    common: dict[str, Any] = {
        "min_group_size": min_group_size,
        "max_groups": max_groups,
        "n_boot": n_boot,
        "confidence": confidence,
        "seed": seed,
    }
    attributes = {
        a: group_fairness(
            table[a], y, y_pred, name=a, numeric=a in numeric, bins=bins.get(a), **common
        )
        for a in sensitive
    }
    crossed = None
    if len(sensitive) >= 2:
        columns = {a: table[a] for a in sensitive}
        crossed = intersectional_fairness(columns, y, y_pred, numeric=numeric, bins=bins, **common)
    return {"attributes": attributes, "intersectional": crossed}


def group_codes(
    column: Any, *, numeric: bool = False, bins: Sequence[float] | int | None = None
) -> tuple[np.ndarray, list[str], int, dict[str, Any] | None]:
    """Each row's group number, the group names in report order (only groups present),
    the number of distinct groups before pooling, and the binning (``None`` unless numeric).

    Past 50 groups the smallest are pooled as ``(other)``.
    """
    if numeric:
        where, labels, binning = _bins(column, QUANTILE_BINS if bins is None else bins)
        labels = [*labels, _MISSING]
        codes = np.where(where < 0, len(labels) - 1, where)
    else:
        binning = None
        codes, labels = _category_codes(column)
    counts = np.bincount(codes, minlength=len(labels))
    keep = np.flatnonzero(counts)
    remap = np.full(len(labels), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    labels = [labels[i] for i in keep]
    codes, labels, distinct = _pool(remap[codes], labels, sorted(labels))
    return codes, labels, distinct, binning


def bin_numeric(
    column: Any, bins: Sequence[float] | int
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Each value's bin label, the labels in order, and ``{method, edges}``.

    ``bins`` is a list of ascending edges (``declared``) or a number of quantile bins.
    """
    where, labels, info = _bins(column, bins)
    names = np.asarray([*labels, _MISSING], dtype=object)
    return names[where].astype(str), [*labels, _MISSING], info


def _bins(column: Any, bins: Sequence[float] | int) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Each value's bin number (-1 when missing), the bin labels, and ``{method, edges}``."""
    numbers = pd.to_numeric(pd.Series(column), errors="coerce")
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
    where = np.full(len(values), -1, dtype=np.int64)
    where[present] = np.searchsorted(np.asarray(edges, dtype="float64"), values[present], "right")
    info: dict[str, Any] = {"method": method, "edges": [_plain(e) for e in edges]}
    if method == "quantile":
        info["bins"] = bins
    return where, labels, info


def _category_codes(column: Any) -> tuple[np.ndarray, list[str]]:
    """Group numbers by hashing (no per-group masks); names are the values as text, a
    missing value ``(missing)``; values with the same text are one group."""
    codes, uniques = pd.factorize(pd.Series(column), use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if (codes < 0).any():
        names.append(_MISSING)
        codes = np.where(codes < 0, len(names) - 1, codes)
    order = sorted(set(names))
    index = {n: i for i, n in enumerate(order)}
    remap = np.asarray([index[n] for n in names], dtype=np.int64)
    return remap[codes], order


def _pool(
    codes: np.ndarray, labels: list[str], by_name: list[str]
) -> tuple[np.ndarray, list[str], int]:
    """Past 50 groups, all but the 49 largest become ``(other)`` (ties: by name)."""
    if len(labels) <= _POOL_AFTER:
        return codes, labels, len(labels)
    counts = np.bincount(codes, minlength=len(labels))
    rank = {n: i for i, n in enumerate(by_name)}
    largest = sorted(range(len(labels)), key=lambda i: (-counts[i], rank[labels[i]]))
    top = sorted(largest[: _POOL_AFTER - 1])
    remap = np.full(len(labels), len(top), dtype=np.int64)
    remap[top] = np.arange(len(top))
    return remap[codes], [labels[i] for i in top] + [_OTHER], len(labels)


def _digits(code: int, parts: list[list[str]]) -> list[str]:
    out = []
    for labels in reversed(parts):
        code, digit = divmod(code, len(labels))
        out.append(labels[digit])
    return out[::-1]


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


def _measure(
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


def _quantile_edges(values: np.ndarray, count: int, whole: bool) -> list[float]:
    """The inner quantile cut points of ``values``, rounded, without repeats."""
    if len(values) == 0 or count < 2:
        return []
    cuts = np.quantile(values, np.arange(1, count) / count)
    rounded = [float(round(c)) if whole else float(f"{c:.3g}") for c in cuts]
    low = float(np.min(values))
    return sorted({c for c in rounded if c > low})  # a cut at the minimum leaves "<c" empty


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


def _is_number(column: Any) -> bool:
    dtype = getattr(column, "dtype", None)
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _edge(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else repr(float(edge))


def _plain(edge: float) -> float | int:
    return int(edge) if float(edge).is_integer() else float(edge)


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
