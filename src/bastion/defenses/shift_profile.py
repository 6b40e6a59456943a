"""Shift profiles: the small JSON summary of one version of a table, and its check.

:func:`profile` builds the document that :mod:`bastion.defenses.shift` describes and
compares (numeric bins, sample and statistics; categorical shares; the label's counts;
id-like columns skipped), optionally on a baseline's bins, categories and kinds;
:func:`checked` refuses a stored document that is not a profile for the label;
:func:`shares` counts values into right-closed buckets. :data:`FORMAT` is the
``format`` every profile carries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bastion.errors import ConfigError, DataError

__all__ = ["FORMAT", "checked", "profile", "shares"]

#: The ``format`` of a profile; :func:`bastion.defenses.shift.compare` refuses any other.
FORMAT = "bastion.shift-profile/1"
_LEVELS = tuple(i / 10 for i in range(1, 10))
_SAMPLE = 2000
_SEED = 1729
_ID_DISTINCT = 0.9
_ID_MIN_VALUES = 20
_ID_PROBE = 20_000


def profile(
    df: pd.DataFrame, label: str, positive: str, max_categories: int, ref: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Profile ``df``; with ``ref`` (a baseline) use its bins, categories and kinds."""
    if label not in df.columns:
        raise DataError(f"label column {label!r} is not in the table", [label])
    if len(df) == 0:
        raise DataError("cannot profile an empty table")
    if df.columns.duplicated().any():
        raise DataError("the table has duplicate column names")
    known = ref["columns"] if ref is not None else {}
    columns: dict[str, Any] = {}
    skipped: list[str] = []
    for name in df.columns:
        if name == label:
            continue
        key, col = str(name), df[name]
        if ref is not None and key in ref["skipped"]:
            skipped.append(key)
            continue
        kind = known[key]["kind"] if key in known else _kind(col)
        if kind == "numeric":
            columns[key] = _numeric(col, known.get(key))
            continue
        cat = _categorical(col, known.get(key), max_categories, key not in known)
        if cat is None:
            skipped.append(key)
        else:
            columns[key] = cat
    y = _value_counts(df[label])
    n_labels = int(y.sum())
    share = float(y.get(positive, 0)) / n_labels if n_labels else None
    top = y.iloc[:max_categories]
    doc: dict[str, Any] = {
        "format": FORMAT,
        "rows": len(df),
        "max_categories": max_categories,
        "label": {
            "column": label,
            "positive": positive,
            "positive_share": share,
            "null_fraction": 1.0 - n_labels / len(df),
            "counts": {str(k): int(v) for k, v in top.items()},
        },
        "columns": columns,
        "skipped": skipped,
    }
    return doc


def _kind(col: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col)
    return "numeric" if numeric else "categorical"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _numeric(col: pd.Series, ref: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    null = np.isnan(x)
    values = x[~null]
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"kind": "numeric", "null_fraction": float(null.mean())}
    out["count"] = int(values.size)
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        out.update(min=lo, max=hi, mean=_finite(finite.mean()), std=_finite(finite.std()))
    else:
        out.update(min=None, max=None, mean=None, std=None)
    if ref is not None:
        if ref["min"] is not None:
            edges = np.asarray(ref["edges"], dtype=np.float64)
            out["fractions"] = shares(values, ref["min"], ref["max"], edges)
        else:
            out["fractions"] = []
        out["edges"] = list(ref["edges"])
        size = len(ref["sample"])
    elif finite.size:
        cuts = np.unique(np.quantile(finite, _LEVELS, method="inverted_cdf"))
        cuts = cuts[cuts < out["max"]]
        out["edges"] = [float(e) for e in cuts]
        out["fractions"] = shares(values, out["min"], out["max"], cuts)
        size = _SAMPLE
    else:
        out["edges"], out["fractions"], size = [], [], _SAMPLE
    if finite.size > size:
        pick = np.random.default_rng(_SEED).choice(finite.size, size, replace=False)
        finite = finite[pick]
    out["sample"] = np.sort(finite).tolist()
    return out


def shares(values: np.ndarray, lo: float, hi: float, cuts: np.ndarray) -> list[float]:
    """Shares of ``values`` in ``< lo``, ``[lo, c1]``, ``(c1, c2]`` … ``(ck, hi]``, ``> hi``."""
    if values.size == 0:
        return [0.0] * (len(cuts) + 3)
    # one counting pass per boundary (≤ 11) beats a searchsorted over every value
    at_most = [np.count_nonzero(values < lo)]
    at_most += [np.count_nonzero(values <= c) for c in (*cuts, hi)]
    counts = np.diff(np.array([0, *at_most, values.size], dtype=np.float64))
    shares: list[float] = (counts / values.size).tolist()
    return shares


def _value_counts(col: pd.Series) -> pd.Series:
    """Counts per value as a string, most frequent first, ties by value."""
    vc = col.value_counts(dropna=True)
    vc = vc[vc > 0]
    vc.index = vc.index.map(str)
    if vc.index.has_duplicates:  # 1 and "1" in one object column
        vc = vc.groupby(level=0).sum()
    frame = pd.DataFrame({"value": vc.index.to_numpy(dtype=object), "n": vc.to_numpy()})
    frame = frame.sort_values(["n", "value"], ascending=[False, True], kind="stable")
    return pd.Series(frame["n"].to_numpy(dtype=np.int64), index=frame["value"].to_numpy())


def _categorical(
    col: pd.Series, ref: Mapping[str, Any] | None, max_categories: int, may_skip: bool
) -> dict[str, Any] | None:
    if may_skip and _looks_like_ids(col):
        return None
    vc = _value_counts(col)
    count = int(vc.sum())
    kept = vc.iloc[:max_categories]
    if ref is not None:
        listed = vc[vc.index.isin(list(ref["frequencies"]))]
        kept = pd.concat([kept, listed[~listed.index.isin(kept.index)]])
    freqs = {str(k): int(v) / count for k, v in kept.items()} if count else {}
    return {
        "kind": "categorical",
        "null_fraction": 1.0 - count / len(col),
        "count": count,
        "frequencies": freqs,
        "other": (count - int(kept.sum())) / count if count else 0.0,
    }


def _looks_like_ids(col: pd.Series) -> bool:
    """Over 90 % distinct among at least 20 values; a seeded sample rules most columns out."""
    if len(col) > _ID_PROBE:
        pick = np.random.default_rng(_SEED).choice(len(col), _ID_PROBE, replace=False)
        probe = col.iloc[pick].dropna()
        if len(probe) >= _ID_MIN_VALUES and probe.nunique() <= _ID_DISTINCT * len(probe):
            return False  # a sample is at least as distinct as the whole, on average
    count = int(col.notna().sum())
    return count >= _ID_MIN_VALUES and col.nunique(dropna=True) > _ID_DISTINCT * count


def checked(doc: Mapping[str, Any], what: str, label: str, positive: str) -> Mapping[str, Any]:
    """``doc`` if it is a profile for this label; a ConfigError naming the problem if not."""
    try:
        if doc.get("format") != FORMAT:
            raise ConfigError(f"{what} profile: expected format {FORMAT!r}")
        if (doc["label"]["column"], doc["label"]["positive"]) != (label, positive):
            raise ConfigError(
                f"{what} profile: made for label {doc['label']['column']!r} with positive "
                f"{doc['label']['positive']!r}, not {label!r} with {positive!r}"
            )
        if int(doc["rows"]) < 1 or int(doc["max_categories"]) < 1:
            raise ConfigError(f"{what} profile: rows and max_categories must be >= 1")
        if not isinstance(doc["skipped"], list):
            raise ConfigError(f"{what} profile: skipped must be a list")
        y = doc["label"]
        if "positive_share" not in y or not 0.0 <= float(y["null_fraction"]) <= 1.0:
            raise ConfigError(f"{what} profile: the label section is malformed")
        for name, col in doc["columns"].items():
            ok = int(col["count"]) >= 0 and 0.0 <= float(col["null_fraction"]) <= 1.0
            if col["kind"] == "numeric":
                bins = col["min"] is None or len(col["fractions"]) == len(col["edges"]) + 3
                ok = ok and bins and isinstance(col["sample"], list)
            else:
                ok = ok and col["kind"] == "categorical" and 0.0 <= float(col["other"]) <= 1.0
                ok = ok and isinstance(col["frequencies"], Mapping)
            if not ok:
                raise ConfigError(f"{what} profile: column {name!r} is malformed")
    except ConfigError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{what} profile: malformed ({exc!r})") from exc
    return doc
