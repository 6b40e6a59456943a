"""What the validate stage's checks found, as it is reported: a :class:`Violation` (``row``,
0-based, the header not a row, or None for a table-level one; ``column``; ``check``; ``value``;
``expected``), the :class:`Findings` of one table, the first violations listed in row order
and each bad row's reasons.

A value is masked by :func:`bastion.defenses.pii.mask` (``***-**-6789``, ``j***@e***.com``)
— it goes into messages, the audit log, run records and reports, which must never hold a
data value — unless ``data.show_values`` lists the column; then it is the raw value, at most
60 characters (:func:`clip`). A custom check masks each cell by its own column.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.defenses.pii import mask
from bastion.stages._parse import nulled

if TYPE_CHECKING:
    from bastion.stages._column_checks import Mask

__all__ = ["Findings", "Violation", "clip", "first_violations", "row_reasons"]

_VALUE_CHARS = 60


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, which check, the value (masked unless shown) and what was
    expected."""

    row: int | None  # 0-based data row; None for a table-level violation
    column: str
    check: str
    value: str | None
    expected: str

    def describe(self) -> str:
        """``row R, column C: check: got V, expected E`` (or ``column C: ...``)."""
        if self.row is None:
            got = f" (found {self.value})" if self.value is not None else ""
            return f"column {self.column}: {self.check}: {self.expected}{got}"
        got = "null" if self.value is None else repr(self.value)
        plural = "s" if self.check.startswith("custom:") and ", " in self.column else ""
        return (
            f"row {self.row}, column{plural} {self.column}: {self.check}: got {got},"
            f" expected {self.expected}"
        )


@dataclass
class Findings:
    """What :func:`~bastion.stages.checks.validate_table` found; nothing here decides pass
    or fail."""

    parsed: pd.DataFrame  # every input row, schema columns, parsed; bad cells as they parsed
    bad: np.ndarray  # bool per row: the row broke at least one row-level check
    reasons: pd.Series  # per bad row (indexed by row position): every check it failed
    table_level: list[Violation]
    violations: list[Violation]  # table-level first, then by row and column; at most `limit`
    total: int  # every violation, listed or not
    counts: dict[str, int]  # per check
    by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)  # label values of the good rows
    checks_run: list[tuple[str, str]] = field(default_factory=list)  # (column, check)
    checks_skipped: list[tuple[str, str, str]] = field(default_factory=list)  # + the reason
    cells: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # bad cells

    @cached_property
    def typed(self) -> pd.DataFrame:
        """Every input row, schema columns, typed; a bad cell is null (made on first use)."""
        return pd.DataFrame(
            {c: nulled(v, self.cells[c]) if c in self.cells else v for c, v in self.parsed.items()},
            index=self.parsed.index,
        )


def first_violations(
    columns: Mapping[str, pd.Series], masks: list[Mask], limit: int, show: Collection[str]
) -> list[Violation]:
    """The first ``limit`` row-level violations, by row, then schema column order; a value
    is masked unless its column is in ``show``."""
    if limit <= 0:
        return []
    rows, which = [], []
    for i, m in enumerate(masks):
        hits = np.flatnonzero(m.mask)[:limit]
        rows.append(hits)
        which.append(np.full(len(hits), i))
    if not rows:
        return []
    all_rows, all_which = np.concatenate(rows), np.concatenate(which)
    order = np.lexsort((all_which, all_rows))[:limit]
    found = []
    for row, i in zip(all_rows[order], all_which[order], strict=True):
        m = masks[int(i)]
        if m.cells:
            cells = [(c, _cell(c, columns[c].iloc[int(row)], show)) for c in m.cells]
            shown = [f"{c}={'null' if v is None else v}" for c, v in cells]
            value: str | None = clip(", ".join(shown))
        else:
            value = _cell(m.column, columns[m.column].iloc[int(row)], show)
        found.append(Violation(int(row), m.column, m.check, value, m.expected))
    return found


def _cell(column: str, cell: Any, show: Collection[str]) -> str | None:
    if pd.isna(cell):
        return None
    return clip(str(cell)) if column in show else clip(mask(str(cell)))


def row_reasons(bad: np.ndarray, masks: list[Mask]) -> pd.Series:
    """Per bad row (indexed by row position): every check it failed, ``; ``-separated."""
    where = np.flatnonzero(bad)
    text = np.full(len(where), "", dtype=object)
    for m in masks:
        sub = m.mask[where]
        if sub.any():
            text[sub] = text[sub] + f"; {m.column}: {m.check} (expected {m.expected})"
    return pd.Series(text, index=where, dtype="str").str.removeprefix("; ")


def clip(text: str) -> str:
    """``text`` cut to 60 characters (the last three ``...``) for a message."""
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."
