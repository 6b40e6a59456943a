"""A SQL source's result (see :mod:`bastion.stages.ingest`): its pin, the SHA-256 of a
canonical serialisation of the rows in the order they arrive (:func:`canonical_rows_sha256`,
the format is in the ingest module's docstring), and the table made of them
(:func:`rows_frame`: Int64, boolean, float64 or str columns)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["canonical_rows_sha256", "rows_frame"]


def canonical_rows_sha256(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 of the canonical serialisation of a query result (see
    :mod:`bastion.stages.ingest`)."""
    digest = hashlib.sha256()

    def line(value: list[Any]) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        digest.update(text.encode("utf-8") + b"\n")

    line(list(columns))
    for row in rows:
        line([_canonical(v) for v in row])
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"timedelta": repr(value.total_seconds())}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    return {type(value).__name__: str(value)}


def _text(value: Any) -> str:
    """A SQL value that pandas cannot type natively, as text for the table."""
    canon = _canonical(value)
    if isinstance(canon, dict):
        return str(next(iter(canon.values())))
    return str(canon) if not isinstance(canon, float) or math.isfinite(canon) else repr(canon)


def rows_frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """A table whose columns are Int64, boolean, float64 or str: Parquet-friendly."""
    data: dict[str, pd.Series] = {}
    for i, col in enumerate(columns):
        values = [row[i] for row in rows]
        arr = pd.array(values) if values else pd.array([], dtype="str")
        if isinstance(arr.dtype, pd.Int64Dtype | pd.BooleanDtype):
            data[col] = pd.Series(arr)
        elif isinstance(arr.dtype, pd.Float64Dtype):
            data[col] = pd.Series(arr.to_numpy(dtype="float64", na_value=np.nan))
        elif isinstance(arr.dtype, pd.StringDtype):
            data[col] = pd.Series(arr, dtype="str")
        else:
            data[col] = pd.Series([None if v is None else _text(v) for v in values], dtype="str")
    return pd.DataFrame(data, columns=columns)
