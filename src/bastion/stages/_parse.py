"""Parsing and per-column primitives of the validate stage, vectorised.

Text is parsed with pyarrow compute (RE2 matches, then casts) and stripped of surrounding
spaces; typed numbers are checked in place; a unique integer column in a dense range is
counted with ``bincount`` before any hashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

__all__ = ["as_text", "codes_in", "mapped", "nulled", "numbers", "parse", "repeats"]

_INT = r"^[+-]?[0-9]{1,18}$"
_FLOAT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?$"


def codes_in(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Per row, the index of its value in ``categories``; -1 for null or not one of them."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        where = pd.Index(categories).get_indexer(dtype.categories.astype("str"))
        codes = values.cat.codes.to_numpy()
        return np.asarray(np.where(codes >= 0, where[codes], -1), dtype=np.int64)
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        arrow = pa.array(values)
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        found = pc.index_in(arrow, value_set=pa.array(categories, type=arrow.type))
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.asarray(pd.Index(categories).get_indexer(values.astype("object")), dtype=np.int64)


def numbers(values: pd.Series) -> np.ndarray:
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf":
        return np.asarray(values.to_numpy())
    return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))


def repeats(values: pd.Series) -> np.ndarray:
    """Bool per row: its value was seen in an earlier row (``duplicated(keep="first")``).

    Integers in a dense range (the usual ids) are counted with ``bincount`` first; only the
    rows whose value occurs more than once go through the hash table.
    """
    n = len(values)
    if n and isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
        v = values.to_numpy()
        lo, hi = int(v.min()), int(v.max())
        if hi - lo <= 4 * n + 1024:
            offset = (v - lo).astype(np.intp, copy=False)
            multi = np.bincount(offset, minlength=hi - lo + 1)[offset] > 1
            found = np.zeros(n, dtype=bool)
            if multi.any():
                found[multi] = pd.Series(v[multi]).duplicated(keep="first").to_numpy()
            return found
    return np.asarray(values.duplicated(keep="first").to_numpy(dtype=bool, copy=True))


def nulled(values: pd.Series, bad: np.ndarray) -> pd.Series:
    """``values`` with the bad cells null (as a nullable dtype where needed)."""
    if not bad.any():
        return values
    if values.dtype.kind in "iu":
        values = values.astype("Int64")
    elif values.dtype.kind == "b" and isinstance(values.dtype, np.dtype):
        values = values.astype("boolean")
    return values.where(pd.Series(~bad, index=values.index))


def parse(kind: str, raw: pd.Series, null: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Typed values and a per-row "parsed" mask (meaningless where the raw value is null)."""
    n = len(raw)
    if kind in ("str", "category"):
        if isinstance(raw.dtype, pd.CategoricalDtype):
            return _text_categories(raw), np.ones(n, dtype=bool)
        return as_text(raw), np.ones(n, dtype=bool)
    if ptypes.is_bool_dtype(raw.dtype):
        if kind == "bool":
            return raw, np.ones(n, dtype=bool)
        return pd.Series(pd.NA, index=raw.index, dtype="object"), np.zeros(n, dtype=bool)
    if ptypes.is_numeric_dtype(raw.dtype):
        if kind == "int" and ptypes.is_integer_dtype(raw.dtype):
            if isinstance(raw.dtype, np.dtype) and raw.dtype != np.uint64:
                return raw, np.ones(n, dtype=bool)
            return raw.astype("Int64"), np.ones(n, dtype=bool)
        if raw.dtype == np.float64:
            num = raw.to_numpy()
        else:
            num = raw.to_numpy(dtype="float64", na_value=np.nan)
        if kind == "float":
            if raw.dtype == np.float64:
                return raw, np.isfinite(num)
            return pd.Series(num, index=raw.index), np.isfinite(num)
        if kind == "int":
            ok = np.isfinite(num) & (np.abs(num) < 2.0**63)
            ok[ok] &= num[ok] == np.trunc(num[ok])
            return pd.Series(np.where(ok, num, np.nan), index=raw.index).astype("Int64"), ok
        ok = np.isin(num, (0.0, 1.0))
        return pd.Series(np.where(ok, num == 1.0, None), index=raw.index).astype("boolean"), ok
    return _parse_text(kind, raw)


def _parse_text(kind: str, raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse text with pyarrow compute (RE2 and casts), stripped of surrounding spaces."""
    arrow = pa.array(as_text(raw), from_pandas=True)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    text = pc.utf8_trim_whitespace(arrow)
    if kind == "bool":
        lower = pc.utf8_lower(text)
        true = _mask(pc.is_in(lower, value_set=pa.array(["true", "1"])))
        ok = true | _mask(pc.is_in(lower, value_set=pa.array(["false", "0"])))
        return pd.Series(pd.arrays.BooleanArray(true, ~ok), index=raw.index), ok
    matched = pc.fill_null(pc.match_substring_regex(text, _INT if kind == "int" else _FLOAT), False)
    ok = _mask(matched)
    kept = pc.if_else(matched, text, pa.scalar(None, text.type))
    if kind == "int":
        if pc.any(pc.starts_with(kept, "+")).as_py():
            kept = pc.utf8_ltrim(kept, characters="+")
        ints = pc.cast(kept, pa.int64())
        values = np.array(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False), dtype="int64")
        return pd.Series(pd.arrays.IntegerArray(values, ~ok), index=raw.index), ok
    nums = pc.cast(kept, pa.float64()).to_numpy(zero_copy_only=False).astype("float64")
    ok &= np.isfinite(nums)
    nums[~ok] = np.nan
    return pd.Series(nums, index=raw.index), ok


def _mask(arrow: Any) -> np.ndarray:
    return np.array(pc.fill_null(arrow, False).to_numpy(zero_copy_only=False), dtype=bool)


def _text_categories(raw: pd.Series) -> pd.Series:
    """A categorical column with its categories as text (cheap: the categories, not rows)."""
    cats = raw.cat.categories
    if ptypes.is_string_dtype(cats.dtype) and all(isinstance(c, str) for c in cats):
        return raw
    text = [str(c) for c in cats]
    if len(set(text)) != len(text):
        return raw.astype("str")
    return raw.cat.rename_categories(text)


def as_text(raw: pd.Series) -> pd.Series:
    return raw if isinstance(raw.dtype, pd.StringDtype) else raw.astype("str")


def mapped(text: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    hit = text.isin(list(mapping))
    return text.where(~hit, text.map(dict(mapping)))
