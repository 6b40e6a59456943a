"""One encoding of a table for every detector: integer codes per column, computed once.

Each usable column becomes an ``int32`` code vector (``-1`` for null):

- categorical (text, category, bool): exact codes by ``pandas.factorize`` (for duplicate
  and trigger search); for the models, codes by frequency rank, where values past the
  ``max_codes``-th and values seen in fewer than ``rare`` rows are null;
- numeric (int, float): the exact value's code (for duplicates and triggers) and a coarse
  quantile bin (at most ``bins``) for the models, so a model cannot memorise one exact
  rare value — which is what lets the backdoor detector see a value that "predicts the
  label on its own". Infinities count as null.

Columns that look like identifiers (text with more than 90% distinct values, e.g. a
pseudonymised id) carry no signal for any detector and are skipped; so is the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

__all__ = ["Encoded", "encode_table"]

_ID_DISTINCT = 0.9


@dataclass
class Encoded:
    """The table as codes: exact per column, and a coarse float matrix for models."""

    columns: list[str]
    exact: list[np.ndarray]  # int32 codes of exact values, -1 = null
    values: list[np.ndarray]  # per column: the value of each exact code (for messages)
    numeric: list[bool]
    coarse: np.ndarray  # float32 (n, d): bin index or category code, NaN = null/other
    categorical_mask: np.ndarray  # bool (d,): coarse column is categorical
    raw_numeric: dict[str, np.ndarray] = field(default_factory=dict)  # float64, NaN = null
    skipped: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.coarse.shape[0])


def encode_table(
    df: pd.DataFrame,
    *,
    exclude: tuple[str, ...] = (),
    bins: int = 16,
    max_codes: int = 250,
    rare: int = 0,
) -> Encoded:
    """Encode every column of ``df`` except ``exclude`` (the label) and id-like ones.

    In the coarse matrix a category seen in fewer than ``rare`` rows is null, like an
    unknown one: models then predict such rows from their other columns.
    """
    n = len(df)
    columns: list[str] = []
    exact: list[np.ndarray] = []
    values: list[np.ndarray] = []
    numeric: list[bool] = []
    coarse: list[np.ndarray] = []
    cat_mask: list[bool] = []
    raw_numeric: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for name in df.columns:
        col = str(name)
        if col in exclude:
            continue
        s = df[name]
        is_num = ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_bool_dtype(s.dtype)
        if is_num:
            x = s.to_numpy(dtype="float64", na_value=np.nan)
            x = np.where(np.isfinite(x), x, np.nan)
            codes, uniques = pd.factorize(x, use_na_sentinel=True)
            raw_numeric[col] = x
            coarse.append(_quantile_bins(x, bins))
            cat_mask.append(False)
        else:
            text = s.astype("str").where(s.notna())
            codes, uniques = pd.factorize(text, use_na_sentinel=True)
            if n and len(uniques) > _ID_DISTINCT * n and n >= 20:
                skipped.append(col)
                continue
            coarse.append(_frequent_codes(codes, len(uniques), max_codes, rare))
            cat_mask.append(True)
        columns.append(col)
        exact.append(codes.astype(np.int32, copy=False))
        values.append(np.asarray(uniques, dtype=object))
        numeric.append(is_num)
    matrix = np.column_stack(coarse).astype(np.float32) if coarse else np.zeros((n, 0), "f4")
    return Encoded(
        columns, exact, values, numeric, matrix, np.array(cat_mask, bool), raw_numeric, skipped
    )


def _quantile_bins(x: np.ndarray, bins: int) -> np.ndarray:
    ok = ~np.isnan(x)
    out = np.full(len(x), np.nan, dtype=np.float32)
    if not ok.any():
        return out
    edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)[1:-1]))
    out[ok] = np.searchsorted(edges, x[ok], side="right")
    return out


def _frequent_codes(codes: np.ndarray, k: int, max_codes: int, rare: int) -> np.ndarray:
    """Category codes by frequency rank; rare values, ranks past ``max_codes``, nulls: NaN."""
    out = np.full(len(codes), np.nan, dtype=np.float32)
    ok = codes >= 0
    if not ok.any():
        return out
    counts = np.bincount(codes[ok], minlength=k)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(k)
    r = rank[codes[ok]]
    keep = (r < max_codes) & (counts[codes[ok]] >= rare)
    out[ok] = np.where(keep, r, np.nan)
    return out
