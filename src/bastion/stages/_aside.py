"""Rows set aside by a stage's policy: the raw rows, their row numbers and every reason."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["set_aside"]


def set_aside(table: pd.DataFrame, rows: np.ndarray, reasons: Sequence[str]) -> pd.DataFrame:
    """``table``'s ``rows`` as they were, plus ``row`` (their number in ``table``) and
    ``reason``; the two are prefixed with ``_bastion_`` if the table has such columns."""
    q = table.iloc[rows].reset_index(drop=True)
    q = q.astype({c: "str" for c in q.columns if q[c].dtype == object})
    row_col = "row" if "row" not in q.columns else "_bastion_row"
    reason_col = "reason" if "reason" not in q.columns else "_bastion_reason"
    q[row_col] = np.asarray(rows, dtype="int64")
    q[reason_col] = pd.array(list(reasons), dtype="str")
    return q
