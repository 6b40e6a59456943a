"""One column's checks for the validate stage: ``null``, ``type``, ``category``, ``range``
and ``unique``, each a vectorised mask over all rows (:class:`Mask`), and the column's values
as parsed (:class:`Column`). A cell that fails its type is checked no further."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bastion.stages._parse import codes_in, numbers, parse
from bastion.stages._parse import repeats as earlier_repeats

if TYPE_CHECKING:
    from bastion.spec.config import ColumnSpec

__all__ = ["Column", "Mask", "Repeats", "any_failed", "check_column", "column_checks"]

_TYPE_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "category": "a string",
}


@dataclass
class Mask:
    """Rows of one column (or one custom check) that fail one check."""

    column: str
    check: str
    mask: np.ndarray
    expected: str
    cells: tuple[str, ...] = ()  # raw columns shown as the value; () means (column,)


Repeats = Callable[[str, pd.Series], np.ndarray]
"""``repeats(column, values)``: bool per row, a non-null value seen in an earlier row."""


@dataclass
class Column:
    """One column's parsed values, its checks' masks and, for a category, its codes."""

    values: pd.Series  # parsed values (null where null or unparsed)
    masks: list[Mask]
    failed: np.ndarray  # failed its type
    codes: np.ndarray | None = None  # category: index into `categories`, -1 if not one
    categories: list[str] | None = None


def check_column(col: str, spec: ColumnSpec, raw: pd.Series, repeats: Repeats | None) -> Column:
    """Every check of one column, and its parsed values."""
    null = raw.isna().to_numpy(dtype=bool, copy=True)
    masks: list[Mask] = []
    if not spec.nullable:
        masks.append(Mask(col, "null", null, "a value (the column is not nullable)"))
    values, ok = parse(spec.type, raw, null)
    failed = ~null & ~ok
    masks.append(Mask(col, "type", failed, _TYPE_EXPECTED[spec.type]))
    valid = ~null & ok
    found = Column(values, masks, failed)
    if spec.type == "category" and spec.categories is not None:
        found.codes = codes_in(values, spec.categories)
        found.categories = list(spec.categories)
        member = found.codes >= 0
        masks.append(Mask(col, "category", valid & ~member, _one_of(spec.categories)))
        valid &= member
    if spec.min is not None or spec.max is not None:
        num = numbers(values)
        with np.errstate(invalid="ignore"):
            if spec.min is not None:
                below = valid & (num < spec.min)
                masks.append(Mask(col, "range", below, f">= {_num(spec.min)}"))
            if spec.max is not None:
                above = valid & (num > spec.max)
                masks.append(Mask(col, "range", above, f"<= {_num(spec.max)}"))
    if spec.unique:
        repeat = earlier_repeats(values) if repeats is None else repeats(col, values)
        masks.append(Mask(col, "unique", valid & repeat, "a value not in an earlier row"))
    return found


def column_checks(spec: ColumnSpec) -> list[str]:
    """The checks ``spec`` declares for its column, in ``checks_run`` order."""
    found = [] if spec.nullable else ["null"]
    found.append("type")
    if spec.type == "category" and spec.categories is not None:
        found.append("category")
    if spec.min is not None or spec.max is not None:
        found.append("range")
    if spec.unique:
        found.append("unique")
    return found


def any_failed(masks: list[Mask]) -> np.ndarray:
    """Bool per row: the row fails at least one of ``masks``."""
    n = len(masks[0].mask) if masks else 0
    bad = np.zeros(n, dtype=bool)
    for m in masks:
        bad |= m.mask
    return bad


def _one_of(categories: list[str]) -> str:
    shown = ", ".join(repr(c) for c in categories[:8])
    more = f", ... ({len(categories)} categories)" if len(categories) > 8 else ""
    return f"one of {shown}{more}"


def _num(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)
