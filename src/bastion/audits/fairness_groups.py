"""Fairness groups: each row's group number for one sensitive attribute, or several crossed.

The rules of :mod:`bastion.audits.fairness`: a numeric attribute is cut into bins first
(declared edges, else quantile bins of the column with rounded edges); a missing value is
the group ``(missing)``; past 50 groups, the smallest are pooled as ``(other)``; crossed
attributes name a group by their groups joined with `` & ``. Groups are numbered by hashing
(``pd.factorize``) or by bin, never by a per-group mask, so that one ``np.bincount`` can
count them all.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bastion.errors import ConfigError

__all__ = ["JOIN", "QUANTILE_BINS", "bin_numeric", "crossed_codes", "group_codes", "is_number"]

QUANTILE_BINS = 4
"""Default number of quantile bins for a numeric attribute with no declared edges."""
JOIN = " & "
"""What joins the attributes' groups in a crossed group's name (``Female & Black``)."""
_POOL_AFTER = 50
_MISSING = "(missing)"
_OTHER = "(other)"


def crossed_codes(
    columns: Mapping[str, Any],
    *,
    numeric: Collection[str] = (),
    bins: Mapping[str, Sequence[float] | int] | None = None,
) -> tuple[np.ndarray, list[str], int, dict[str, Any]]:
    """Each row's crossed group number, the crossed group names (only those present), the
    number of distinct crossed groups before pooling, and the binning per attribute."""
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
    labels = [JOIN.join(_digits(int(c), parts)) for c in present]
    codes, labels, distinct = _pool(codes.astype(np.int64), labels, sorted(labels))
    return codes, labels, distinct, binning


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


def _quantile_edges(values: np.ndarray, count: int, whole: bool) -> list[float]:
    """The inner quantile cut points of ``values``, rounded, without repeats."""
    if len(values) == 0 or count < 2:
        return []
    cuts = np.quantile(values, np.arange(1, count) / count)
    rounded = [float(round(c)) if whole else float(f"{c:.3g}") for c in cuts]
    low = float(np.min(values))
    return sorted({c for c in rounded if c > low})  # a cut at the minimum leaves "<c" empty


def _is_int(column: Any) -> bool:
    return bool(pd.api.types.is_integer_dtype(getattr(column, "dtype", None)))


def is_number(column: Any) -> bool:
    """Whether a column holds numbers to bin (an int or float dtype; bools are categories)."""
    dtype = getattr(column, "dtype", None)
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _edge(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else repr(float(edge))


def _plain(edge: float) -> float | int:
    return int(edge) if float(edge).is_integer() else float(edge)
