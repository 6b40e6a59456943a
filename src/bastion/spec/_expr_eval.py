"""Evaluating a compiled custom check (see :mod:`bastion.spec.expr`): a value is its data and
its null mask (:class:`Val`); comparisons and arithmetic carry nulls through, and
``and``/``or``/``not`` follow SQL's three-valued (Kleene) logic, all as numpy operations over
whole columns. A row fails only where the result is known false (:func:`known_false`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Env",
    "Fn",
    "Val",
    "arith",
    "as_bool",
    "column_value",
    "compare",
    "either",
    "isin",
    "kleene_and",
    "kleene_not",
    "kleene_or",
    "known_false",
]


@dataclass
class Val:
    """A value during evaluation: ``data`` (array, Series or scalar) and its null mask."""

    kind: str  # num | str | bool
    data: Any
    null: np.ndarray | None = None  # None: never null


Env = Mapping[str, Val]
Fn = Callable[[Env], Val]


def column_value(values: pd.Series) -> Val:
    null = values.isna().to_numpy(dtype=bool)
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return Val("bool", values.to_numpy(dtype=bool, na_value=False), null)
    if pd.api.types.is_integer_dtype(dtype):
        return Val("num", values.to_numpy(dtype="int64", na_value=0), null)
    if pd.api.types.is_numeric_dtype(dtype):
        return Val("num", values.to_numpy(dtype="float64", na_value=np.nan), null)
    if not isinstance(dtype, pd.StringDtype):
        values = values.astype("str")
    return Val("str", values, null)


def either(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b


def as_bool(data: Any) -> Any:
    if isinstance(data, pd.Series):
        return data.to_numpy(dtype=bool, na_value=False)
    return np.asarray(data, dtype=bool) if isinstance(data, np.ndarray) else np.bool_(data)


def compare(cmp: Callable[[Any, Any], Any], a: Val, b: Val) -> Val:
    return Val("bool", as_bool(cmp(a.data, b.data)), either(a.null, b.null))


def arith(ufunc: Callable[[Any, Any], Any], a: Val, b: Val) -> Val:
    x = np.asarray(a.data, dtype="float64")
    y = np.asarray(b.data, dtype="float64")
    return Val("num", ufunc(x, y), either(a.null, b.null))


def isin(a: Val, values: Sequence[Any], negate: bool) -> Val:
    if isinstance(a.data, pd.Series):
        hit = a.data.isin(list(values)).to_numpy(dtype=bool, na_value=False)
    else:
        hit = np.isin(a.data, np.asarray(values)) if values else np.zeros_like(a.data, bool)
    return Val("bool", ~hit if negate else hit, a.null)


def kleene_not(a: Val) -> Val:
    return Val("bool", np.logical_not(a.data), a.null)


def kleene_and(parts: list[Val]) -> Val:
    known_false: Any = np.bool_(False)
    any_null: Any = np.bool_(False)
    for p in parts:
        null = np.bool_(False) if p.null is None else p.null
        known_false = known_false | (~p.data & ~null)
        any_null = any_null | null
    return Val("bool", ~known_false, ~known_false & any_null)


def kleene_or(parts: list[Val]) -> Val:
    known_true: Any = np.bool_(False)
    any_null: Any = np.bool_(False)
    for p in parts:
        null = np.bool_(False) if p.null is None else p.null
        known_true = known_true | (p.data & ~null)
        any_null = any_null | null
    return Val("bool", known_true, ~known_true & any_null)


def known_false(v: Val) -> Any:
    fails = np.logical_not(v.data)
    return fails if v.null is None else fails & ~v.null
