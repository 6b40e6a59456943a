"""The training profile: what the training data looked like, column by column.

A :class:`TrainingProfile` summarises the training frame once, at release time: per numeric
column its min, max, mean, standard deviation and a grid of quantiles
(:data:`QUANTILE_LEVELS`); per categorical column the frequency of every category (and of
nulls). It round-trips through JSON so it ships with the model. It gives each value's
surprisal in bits under an independent-features model of the training data
(:meth:`TrainingProfile.numeric_bits`), and maps rows to the vector space the extraction
detector works in (:meth:`TrainingProfile.encode`: numeric z-scores, then one-hot
categories). :mod:`bastion.monitoring.screening` and :mod:`bastion.monitoring.extraction`
read requests against it. Every method that takes rows takes a DataFrame or the rows
column by column (:data:`RowsByColumn`, as the server parses them).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from bastion.errors import ConfigError, DataError
from bastion.spec.config import ColumnSpec

__all__ = [
    "QUANTILE_LEVELS",
    "CategoricalStats",
    "NumericStats",
    "RowsByColumn",
    "Table",
    "TrainingProfile",
    "has_column",
    "is_null",
    "n_rows_of",
    "strings_of",
    "to_frame",
]

#: Quantile levels stored per numeric column (dense in the tails, where screening looks).
QUANTILE_LEVELS: tuple[float, ...] = (
    0.0,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    0.9,
    0.95,
    0.975,
    0.99,
    0.995,
    0.999,
    1.0,
)
_NUMERIC = ("int", "float")
_FORMAT = "bastion.training-profile/1"


@dataclass(frozen=True)
class NumericStats:
    """Summary of one numeric training column."""

    min: float
    max: float
    mean: float
    std: float
    quantiles: tuple[float, ...]
    null_fraction: float


@dataclass(frozen=True)
class CategoricalStats:
    """Frequencies of one categorical training column (values as strings)."""

    frequencies: dict[str, float]
    null_fraction: float


def to_frame(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """``rows`` as a DataFrame (a DataFrame as it is)."""
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame.from_records(list(rows))


#: Rows column by column, as the server's request parser returns them (``None`` or NaN for
#: a null). Every method that takes rows also takes these, without building a DataFrame.
RowsByColumn: TypeAlias = Mapping[str, Sequence[Any]]
Table: TypeAlias = pd.DataFrame | RowsByColumn


def n_rows_of(table: Table) -> int:
    """How many rows ``table`` holds."""
    if isinstance(table, pd.DataFrame):
        return len(table)
    return len(next(iter(table.values()))) if table else 0


def has_column(table: Table, name: str) -> bool:
    """Whether ``table`` (a DataFrame or columns by name) has the column ``name``."""
    return name in table.columns if isinstance(table, pd.DataFrame) else name in table


def is_null(v: Any) -> bool:
    """A missing value: None or NaN."""
    return v is None or (isinstance(v, float) and v != v)


def strings_of(table: Table, name: str) -> np.ndarray:
    """Column ``name``'s values as stripped strings (None for nulls), an object array."""
    if isinstance(table, pd.DataFrame):
        return _str_values(table[name])
    values = [None if is_null(v) else str(v).strip() for v in table[name]]
    return np.array(values, dtype=object)


def _str_values(col: pd.Series) -> np.ndarray:
    """Category values as an object array of strings, with None for nulls."""
    values = col.to_numpy(dtype=object)
    nulls = pd.isna(col).to_numpy()
    out = np.array([None if n else str(v).strip() for v, n in zip(values, nulls, strict=True)])
    return out.astype(object)


class TrainingProfile:
    """Per-column statistics of a training frame; see the module docstring."""

    def __init__(
        self,
        numeric: Mapping[str, NumericStats],
        categorical: Mapping[str, CategoricalStats],
        n_rows: int,
    ) -> None:
        self.numeric: dict[str, NumericStats] = dict(numeric)
        self.categorical: dict[str, CategoricalStats] = dict(categorical)
        self.n_rows = int(n_rows)
        self._floor = 1.0 / (self.n_rows + 1)
        self._cat_index = {
            name: {v: i for i, v in enumerate(sorted(s.frequencies))}
            for name, s in self.categorical.items()
        }
        self.dim = len(self.numeric) + sum(len(ix) for ix in self._cat_index.values())
        # per-column arrays, built once (the server screens every request with them)
        self._mean = np.array([s.mean for s in self.numeric.values()], dtype=np.float64)
        self._std = np.array([s.std for s in self.numeric.values()], dtype=np.float64)
        self._min = np.array([s.min for s in self.numeric.values()], dtype=np.float64)
        self._max = np.array([s.max for s in self.numeric.values()], dtype=np.float64)
        self._q = np.array([s.quantiles for s in self.numeric.values()], dtype=np.float64)
        self._q = self._q.reshape(len(self.numeric), len(QUANTILE_LEVELS))
        self._null_tail = np.array([max(s.null_fraction, self._floor) for s in numeric.values()])
        # the same as Python lists, for one row at a time (row_numeric, row_bits)
        self._q_rows = [list(map(float, row)) for row in self._q]
        self._null_row_bits = [-math.log2(t) for t in self._null_tail.tolist()]

    @classmethod
    def from_frame(
        cls, df: pd.DataFrame, schema: Mapping[str, ColumnSpec], label: str
    ) -> TrainingProfile:
        """Profile every schema column except ``label``; columns must be in ``df``."""
        if len(df) == 0:
            raise DataError("cannot profile an empty training frame")
        missing = [c for c in schema if c != label and c not in df.columns]
        if missing:
            raise DataError(f"training frame lacks schema columns {missing}", missing)
        numeric: dict[str, NumericStats] = {}
        categorical: dict[str, CategoricalStats] = {}
        for name, spec in schema.items():
            if name == label:
                continue
            col = df[name]
            nulls = float(col.isna().mean())
            if spec.type in _NUMERIC:
                x = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=np.float64)
                if x.size == 0:
                    raise DataError(f"numeric column {name!r} has no values", [name])
                std = float(x.std())
                numeric[name] = NumericStats(
                    min=float(x.min()),
                    max=float(x.max()),
                    mean=float(x.mean()),
                    std=std if std > 0 else 1.0,
                    quantiles=tuple(float(q) for q in np.quantile(x, QUANTILE_LEVELS)),
                    null_fraction=nulls,
                )
            else:
                vals = pd.Series(_str_values(col)).dropna()
                freqs = vals.value_counts(normalize=False)
                total = float(len(col))
                categorical[name] = CategoricalStats(
                    frequencies={str(k): float(v) / total for k, v in freqs.items()},
                    null_fraction=nulls,
                )
        return cls(numeric, categorical, len(df))

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> str:
        """A stable JSON document (sorted keys) that :meth:`from_json` reads back."""
        doc = {
            "format": _FORMAT,
            "n_rows": self.n_rows,
            "quantile_levels": list(QUANTILE_LEVELS),
            "numeric": {
                k: {
                    "min": s.min,
                    "max": s.max,
                    "mean": s.mean,
                    "std": s.std,
                    "quantiles": list(s.quantiles),
                    "null_fraction": s.null_fraction,
                }
                for k, s in self.numeric.items()
            },
            "categorical": {
                k: {"frequencies": s.frequencies, "null_fraction": s.null_fraction}
                for k, s in self.categorical.items()
            },
        }
        return json.dumps(doc, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainingProfile:
        """Read a profile written by :meth:`to_json`; anything else is a ConfigError."""
        try:
            doc = json.loads(text)
            if doc.get("format") != _FORMAT:
                raise ConfigError(f"training profile: expected format {_FORMAT!r}")
            if list(doc["quantile_levels"]) != list(QUANTILE_LEVELS):
                raise ConfigError("training profile: unexpected quantile_levels")
            numeric = {
                str(k): NumericStats(
                    min=float(v["min"]),
                    max=float(v["max"]),
                    mean=float(v["mean"]),
                    std=float(v["std"]),
                    quantiles=tuple(float(q) for q in v["quantiles"]),
                    null_fraction=float(v["null_fraction"]),
                )
                for k, v in doc["numeric"].items()
            }
            categorical = {
                str(k): CategoricalStats(
                    frequencies={str(c): float(f) for c, f in v["frequencies"].items()},
                    null_fraction=float(v["null_fraction"]),
                )
                for k, v in doc["categorical"].items()
            }
            n_rows = int(doc["n_rows"])
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"training profile: malformed JSON ({exc})") from exc
        if any(len(s.quantiles) != len(QUANTILE_LEVELS) for s in numeric.values()):
            raise ConfigError("training profile: wrong number of quantiles")
        if n_rows < 1:
            raise ConfigError("training profile: n_rows must be >= 1")
        return cls(numeric, categorical, n_rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainingProfile):
            return NotImplemented
        return (self.numeric, self.categorical, self.n_rows) == (
            other.numeric,
            other.categorical,
            other.n_rows,
        )

    __hash__ = None  # type: ignore[assignment]

    # -- vectors --------------------------------------------------------------------------

    def numeric_matrix(self, frame: Table) -> np.ndarray:
        """Raw numeric values, rows × numeric columns (float64, NaN for null or absent)."""
        out = np.full((n_rows_of(frame), len(self.numeric)), np.nan)
        if not isinstance(frame, pd.DataFrame):
            for j, name in enumerate(self.numeric):
                if name in frame:
                    values = frame[name]
                    try:
                        out[:, j] = np.asarray(values, dtype=np.float64)
                    except (TypeError, ValueError):
                        out[:, j] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
                            dtype=np.float64, na_value=np.nan
                        )
            return out
        for j, name in enumerate(self.numeric):
            if name in frame.columns:
                col = frame[name]
                try:
                    out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError):
                    out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(
                        dtype=np.float64, na_value=np.nan
                    )
        return out

    def zscores(self, raw: np.ndarray) -> np.ndarray:
        """Z-scores of a :meth:`numeric_matrix`; nulls become 0 (the mean)."""
        z: np.ndarray = np.nan_to_num(
            (raw - self._mean) / self._std, nan=0.0, posinf=0.0, neginf=0.0
        )
        return z

    def encode(self, rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> np.ndarray:
        """Rows → float32 vectors: numeric z-scores, then one-hot categories.

        Nulls encode as the mean (z = 0) or as all-zero one-hot; unseen categories likewise.
        """
        frame = to_frame(rows)
        return self._encode(frame, self.numeric_matrix(frame))

    def _encode(self, frame: Table, raw: np.ndarray) -> np.ndarray:
        n = n_rows_of(frame)
        out = np.zeros((n, self.dim), dtype=np.float32)
        k = len(self.numeric)
        out[:, :k] = self.zscores(raw)
        offset = k
        rows_ix = np.arange(n)
        for name, index in self._cat_index.items():
            if has_column(frame, name):
                values = strings_of(frame, name)
                pos = np.array([index.get(v, -1) if v is not None else -1 for v in values])
                hit = pos >= 0
                out[rows_ix[hit], offset + pos[hit]] = 1.0
            offset += len(index)
        return out

    # -- surprisal --------------------------------------------------------------------------

    def numeric_bits(self, raw: np.ndarray) -> np.ndarray:
        """Surprisal in bits of every value of a :meth:`numeric_matrix` (rows × numeric
        columns): ``-log2`` of the value's two-sided tail probability ``2 * min(P(X <= x),
        P(X >= x))``, both read as upper bounds from the quantile grid (conservative),
        floored at ``1 / (n + 1)``; a null costs ``-log2`` of its column's null share."""
        q = self._q  # columns x levels
        x = raw[:, :, None]
        with np.errstate(invalid="ignore"):
            i = np.sum(q[None] <= x, axis=2)  # searchsorted side="right"
            j = np.sum(q[None] < x, axis=2)  # side="left"
        levels = np.asarray(QUANTILE_LEVELS)
        p_le = np.where(i < q.shape[1], levels[np.minimum(i, q.shape[1] - 1)], 1.0)
        p_ge = np.where(j > 0, 1.0 - levels[np.maximum(j - 1, 0)], 1.0)
        tail = np.clip(2.0 * np.minimum(p_le, p_ge), self._floor, 1.0)
        bits: np.ndarray = -np.log2(np.where(np.isnan(raw), self._null_tail, tail))
        return bits

    # -- one row ----------------------------------------------------------------------------
    # A single-row request is the server's common case, and NumPy's per-call overhead is
    # most of what vectorised code costs on one row: these read one row in plain Python
    # (the same arithmetic, equal to the vectorised results within rounding).

    def row_numeric(self, columns: Table) -> list[float] | None:
        """The numeric values of a one-row ``columns`` (rows by column, not a DataFrame) as
        floats, NaN for null or absent; None when a value is not a plain int or float (a
        string, a bool: :meth:`numeric_matrix` coerces those as pandas does)."""
        if isinstance(columns, pd.DataFrame):
            return None
        out: list[float] = []
        for name in self.numeric:
            values = columns.get(name)
            v = values[0] if values is not None else None
            if type(v) is int or type(v) is float:
                out.append(float(v))
            elif v is None:
                out.append(math.nan)
            else:
                return None
        return out

    def row_bits(self, raw: Sequence[float]) -> list[float]:
        """:meth:`numeric_bits` of one row of :meth:`row_numeric` values."""
        levels, last, floor = QUANTILE_LEVELS, len(QUANTILE_LEVELS), self._floor
        out: list[float] = []
        for x, q, null_bits in zip(raw, self._q_rows, self._null_row_bits, strict=True):
            if x != x:
                out.append(null_bits)
                continue
            i, j = bisect_right(q, x), bisect_left(q, x)
            p_le = levels[i] if i < last else 1.0
            p_ge = 1.0 - levels[j - 1] if j > 0 else 1.0
            out.append(-math.log2(min(max(2.0 * min(p_le, p_ge), floor), 1.0)))
        return out
