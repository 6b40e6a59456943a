"""Tabular domain constraints: which raw rows an adversary may produce.

A :class:`Constraints` is built from the pipeline's declared schema (``data.schema``), its
sensitive attributes (``data.sensitive``), any further immutable columns, and the *fitted*
feature transformer (:func:`bastion.stages.features.build_transformer`). It speaks of raw
rows (a DataFrame, the way serving feeds the pipeline):

- immutable columns — the sensitive attributes, the declared immutable ones, and every
  column the transformer does not read — never change;
- a category column only takes a declared category (``categories`` in the schema, else the
  categories the encoder was fitted on);
- an ``int`` (or ``bool``) column stays integral;
- a numeric column stays within its declared ``min``/``max``.

Numeric columns are also given their *unit*: the transformer maps a raw value ``x`` to
``a·x + b`` (a standard scaler gives ``a = 1/std``), so a budget of ε is ε standard
deviations of a standard-scaled column. :meth:`Constraints.project` makes any candidate
valid (moving each value toward its original, so a candidate inside a budget stays inside
it); :meth:`Constraints.check` lists what a row breaks (a value missing in the original may
stay missing; an attack never creates a gap).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bastion.spec.config import ColumnSpec

__all__ = ["Constraints", "Violation", "project_numeric"]


@dataclass(frozen=True)
class Violation:
    """One broken constraint: row position, column, and what was expected."""

    row: int
    column: str
    what: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.what}"


@dataclass
class Constraints:
    """What an adversarial row may change, in raw column terms (see the module docstring)."""

    numeric: list[str]
    categorical: list[str]
    immutable: set[str]
    categories: dict[str, list[Any]] = field(default_factory=dict)
    integer: set[str] = field(default_factory=set)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # raw -> transformed: z = slope * x + offset, per numeric column
    slope: dict[str, float] = field(default_factory=dict)
    offset: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_schema(
        cls,
        schema: Mapping[str, ColumnSpec],
        transformer: Any,
        *,
        sensitive: Iterable[str] = (),
        immutable: Iterable[str] = (),
    ) -> Constraints:
        """Constraints for rows fed to a fitted ``ColumnTransformer`` built from ``schema``."""
        numeric: list[str] = []
        categorical: list[str] = []
        encoders: dict[str, Any] = {}
        for name, part, columns in transformer.transformers_:
            if name == "numeric":
                numeric = list(columns)
            elif name == "categorical":
                categorical = list(columns)
                encoders = {c: part for c in columns}
        fixed = set(sensitive) | set(immutable)
        unknown = sorted(c for c in fixed if c not in schema)
        if unknown:
            raise ValueError(f"immutable column(s) {unknown} are not in data.schema")
        cats: dict[str, list[Any]] = {}
        for i, col in enumerate(categorical):
            declared = schema[col].categories if col in schema else None
            enc = encoders[col].steps[-1][1]
            cats[col] = list(declared) if declared is not None else list(enc.categories_[i])
        integer = {c for c in numeric if c in schema and schema[c].type in ("int", "bool")}
        ranges: dict[str, tuple[float, float]] = {}
        for col in numeric:
            spec = schema.get(col)
            lo = spec.min if spec is not None and spec.min is not None else -np.inf
            hi = spec.max if spec is not None and spec.max is not None else np.inf
            if spec is not None and spec.type == "bool":
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            ranges[col] = (float(lo), float(hi))
        made = cls(numeric, categorical, fixed, cats, integer, ranges)
        made._fit_units(transformer)
        return made

    def _fit_units(self, transformer: Any) -> None:
        """Find each numeric column's affine map by transforming two probe rows."""
        if not self.numeric:
            return
        probe: dict[str, list[Any]] = {c: [0.0, 1.0] for c in self.numeric}
        for col in self.categorical:
            first = self.categories[col][0] if self.categories[col] else "missing"
            probe[col] = [first, first]
        out = np.asarray(transformer.transform(pd.DataFrame(probe)), dtype=float)
        idx = self.numeric_indices(transformer)
        for col, j in zip(self.numeric, idx, strict=True):
            self.offset[col] = float(out[0, j])
            self.slope[col] = float(out[1, j] - out[0, j]) or 1.0

    def numeric_indices(self, transformer: Any) -> list[int]:
        """Positions of the numeric columns in the transformer's output."""
        names = [str(n) for n in transformer.get_feature_names_out()]
        return [names.index(f"numeric__{c}") for c in self.numeric]

    @property
    def mutable_numeric(self) -> list[str]:
        return [c for c in self.numeric if c not in self.immutable]

    @property
    def mutable_categorical(self) -> list[str]:
        return [c for c in self.categorical if c not in self.immutable]

    def project(self, candidate: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
        """``candidate`` made valid: immutable columns and invalid categories restored from
        ``original``, numerics clipped to their ranges and integers rounded toward the
        original value (so no change grows)."""
        out = candidate.copy()
        for col in out.columns:
            if col in self.immutable or (col not in self.numeric and col not in self.categorical):
                out[col] = original[col].to_numpy()
        for col in self.numeric:
            if col in self.immutable:
                continue
            new = out[col].to_numpy(dtype=float)
            old = original[col].to_numpy(dtype=float)
            out[col] = project_numeric(new, old, self.ranges[col], col in self.integer)
            if col in self.integer and pd.api.types.is_integer_dtype(original[col]):
                out[col] = out[col].round().astype(original[col].dtype)
        for col in self.categorical:
            if col in self.immutable:
                continue
            ok = out[col].isin(self.categories[col]).to_numpy()
            out[col] = np.where(ok, out[col].to_numpy(), original[col].to_numpy())
        return out

    def check(self, rows: pd.DataFrame, original: pd.DataFrame) -> list[Violation]:
        """Every constraint ``rows`` breaks, against the ``original`` rows they came from."""
        found: list[Violation] = []

        def add(mask: np.ndarray, col: str, what: str) -> None:
            found.extend(Violation(int(i), col, what) for i in np.flatnonzero(mask))

        for col in sorted(self.immutable & set(rows.columns)):
            same = rows[col].to_numpy() == original[col].to_numpy()
            add(~same, col, "is immutable but changed")
        for col in self.categorical:
            kept = _still_missing(rows[col], original[col])
            bad = ~rows[col].isin(self.categories[col]).to_numpy() & ~kept
            add(bad, col, "not a declared category")
        for col in self.numeric:
            values = rows[col].to_numpy(dtype=float)
            kept = _still_missing(rows[col], original[col])
            lo, hi = self.ranges[col]
            add(
                ((values < lo) | (values > hi) | np.isnan(values)) & ~kept,
                col,
                f"outside [{lo}, {hi}]",
            )
            if col in self.integer:
                add((values != np.round(values)) & ~np.isnan(values), col, "must be an integer")
        return found


def _still_missing(new: pd.Series, old: pd.Series) -> np.ndarray:
    """A value missing in the row and in its original (the attack left a gap as it was)."""
    return np.asarray(new.isna().to_numpy() & old.isna().to_numpy())


def project_numeric(
    new: np.ndarray, old: np.ndarray, bounds: Sequence[Any], integral: bool
) -> np.ndarray:
    """``new`` clipped to ``bounds`` (numbers, or arrays per column) and, if ``integral``,
    rounded toward ``old``."""
    lo, hi = bounds
    out = np.clip(new, lo, hi)
    if integral:
        up = out >= old
        out = np.where(up, np.floor(out + 1e-9), np.ceil(out - 1e-9))
        out = np.clip(out, np.ceil(lo), np.floor(hi))
    return np.asarray(out, dtype=float)
