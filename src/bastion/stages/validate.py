"""Validate: check one ingested table against the declared schema; type it; apply the policy.

How it works. :func:`validate_table` finds problems; :class:`ValidateStage` applies the
policy (checks return findings, policy decides). Every check is a vectorised pandas/numpy
mask over all rows — no Python loop over rows — so a million rows take about a second.

- Table-level checks: every schema column present (``missing_column``), no undeclared
  column (``extra_column``), no repeated column name (``duplicate_column``), and the label's
  values — after ``label.map`` — are exactly two classes including ``label.positive``
  (``label_classes``, counted on the rows that pass). These cannot be fixed by setting rows
  aside, so they fail the stage under either policy.
- Row-level checks, per column: ``null`` (a null in a column that is not nullable),
  ``type`` (int: optional sign and up to 18 digits, or an integral number; float: a finite
  decimal number; bool: true/false/1/0, any case — text is stripped of surrounding spaces
  before it is parsed as a number or boolean), ``category`` (exact match with the declared
  categories, after ``label.map`` for the label column), ``range`` (``min``/``max``,
  inclusive) and ``unique`` (a repeat of a value seen in an earlier row). A cell that fails
  its type is checked no further.
- A :class:`Violation` is ``row`` (0-based data row; the header is not a row), ``column``,
  ``check``, ``value`` (the raw value, at most 60 characters) and ``expected``; ``row`` is
  None for table-level ones.

Policy ``fail`` raises :class:`~bastion.errors.DataError` naming the first violations as
``row R, column C: ...``, with ``.failures`` listing up to ``max_report``. Policy
``quarantine`` passes the good rows on and moves each bad row, raw, to the ``quarantine``
output with its original ``row`` number and a ``reason`` listing every check it failed —
nothing is dropped silently, and the report counts both. The ``table`` output holds the
schema's columns in schema order, typed: int → ``int64`` (``Int64`` if nullable), float →
``float64``, bool → ``bool`` (``boolean`` if nullable), str and category → pandas ``str``,
with the label mapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.pipeline.config import ColumnSpec, DataConfig
    from bastion.pipeline.stage import Kind, StageContext

__all__ = ["CHECKS", "Findings", "ValidateStage", "Violation", "validate_table"]

CHECKS = (
    "missing_column",
    "extra_column",
    "duplicate_column",
    "label_classes",
    "null",
    "type",
    "category",
    "range",
    "unique",
)
_TABLE_CHECKS = frozenset(CHECKS[:4])
_VALUE_CHARS = 60
_IN_MESSAGE = 5
_INT = r"[+-]?\d{1,18}"
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?"
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_TYPE_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "category": "a string",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, which check, the raw value and what was expected."""

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
        return (
            f"row {self.row}, column {self.column}: {self.check}: got {got},"
            f" expected {self.expected}"
        )


@dataclass
class Findings:
    """What :func:`validate_table` found; nothing here decides pass or fail."""

    typed: pd.DataFrame  # every input row, schema columns, typed; a bad cell is null
    bad: np.ndarray  # bool per row: the row broke at least one row-level check
    reasons: pd.Series  # per bad row (indexed by row position): every check it failed
    table_level: list[Violation]
    violations: list[Violation]  # table-level first, then by row and column; at most `limit`
    total: int  # every violation, listed or not
    counts: dict[str, int]  # per check
    by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)  # label values of the good rows


@dataclass
class _Mask:
    column: str
    check: str
    mask: np.ndarray
    expected: str


class ValidateStage:
    """Check ``ingest.<source>.table``; output the typed ``table``, ``report``, ``quarantine``."""

    version = "1"

    def __init__(self, source_name: str, data: DataConfig) -> None:
        self.source_name = source_name
        self.data = data
        self.name = f"validate.{source_name}"
        self.inputs: Mapping[str, str] = {"table": f"ingest.{source_name}.table"}
        self.outputs: Mapping[str, Kind] = {
            "table": "table",
            "report": "json",
            "quarantine": "table",
        }

    def fingerprint(self) -> Mapping[str, Any]:
        d = self.data
        return {
            "source": self.source_name,
            "schema": {k: v.model_dump(mode="json") for k, v in d.schema_.items()},
            "label": d.label.model_dump(mode="json"),
            "validation": d.validation.model_dump(mode="json"),
        }

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        table: pd.DataFrame = inputs["table"]
        policy, limit = self.data.validation.policy, self.data.validation.max_report
        found = validate_table(table, self.data, limit=limit)
        if found.total and (policy == "fail" or found.table_level):
            raise _gate_failed(self.name, found)
        good = ~found.bad
        out = found.typed.loc[good].reset_index(drop=True)
        out = out.astype(_final_dtypes(self.data.schema_, out))
        quarantine = _quarantine(table, found)
        report = {
            "source": self.source_name,
            "policy": policy,
            "rows_in": len(table),
            "rows_out": len(out),
            "quarantined": len(quarantine),
            "checks": found.counts,
            "by_column": found.by_column,
            "violations_total": found.total,
            "violations": [asdict(v) for v in found.violations],
            "label": {
                "column": self.data.label.column,
                "positive": self.data.label.positive,
                "classes": found.classes,
            },
        }
        ctx.summary[self.name] = {k: report[k] for k in ("rows_in", "rows_out", "quarantined")}
        return {"table": out, "report": report, "quarantine": quarantine}


def validate_table(table: pd.DataFrame, data: DataConfig, *, limit: int = 50) -> Findings:
    """Run every check of ``data.schema`` and ``data.label`` over ``table``."""
    n = len(table)
    schema, label = data.schema_, data.label
    names = [str(c) for c in table.columns]
    table_level: list[Violation] = []
    for col in sorted({c for c in names if names.count(c) > 1}):
        table_level.append(Violation(None, col, "duplicate_column", None, "each column name once"))
    table_level += [
        Violation(
            None, c, "missing_column", None, "declared in the schema but absent from the data"
        )
        for c in schema
        if c not in names
    ]
    table_level += [
        Violation(None, c, "extra_column", None, "not declared in the schema")
        for c in dict.fromkeys(names)
        if c not in schema
    ]
    columns = {str(c): table.iloc[:, i] for i, c in enumerate(table.columns)}

    typed: dict[str, pd.Series] = {}
    masks: list[_Mask] = []
    label_text: pd.Series | None = None
    for col, spec in schema.items():
        if col not in columns or col in {v.column for v in table_level}:
            typed[col] = pd.Series([pd.NA] * n, dtype="object")
            continue
        raw = columns[col]
        if col == label.column:
            raw = _mapped(_as_text(raw), label.map) if label.map else raw
            label_text = _as_text(raw)
        values, col_masks = _check_column(col, spec, raw)
        typed[col] = values
        masks += col_masks

    bad = np.zeros(n, dtype=bool)
    for m in masks:
        bad |= m.mask
    classes: dict[str, int] = {}
    if label_text is not None:
        counts = label_text[~bad].value_counts(dropna=True)
        classes = {str(k): int(v) for k, v in counts.sort_index().items()}
        if len(classes) != 2 or label.positive not in classes:
            shown = ", ".join(repr(c) for c in list(classes)[:5]) or "none"
            table_level.append(
                Violation(
                    None,
                    label.column,
                    "label_classes",
                    _clip(shown),
                    f"exactly two classes including {label.positive!r}",
                )
            )

    counts_by_check = dict.fromkeys(CHECKS, 0)
    by_column: dict[str, dict[str, int]] = {}
    for v in table_level:
        counts_by_check[v.check] += 1
        by_column.setdefault(v.column, {}).setdefault(v.check, 0)
        by_column[v.column][v.check] += 1
    for m in masks:
        k = int(m.mask.sum())
        if k:
            counts_by_check[m.check] += k
            by_column.setdefault(m.column, {})[m.check] = k
    total = sum(counts_by_check.values())
    listed = table_level[:limit] + _first_rows(columns, masks, limit - len(table_level))
    return Findings(
        typed=pd.DataFrame(typed, index=table.index),
        bad=bad,
        reasons=_reasons(bad, masks),
        table_level=table_level,
        violations=listed,
        total=total,
        counts=counts_by_check,
        by_column=by_column,
        classes=classes,
    )


# -- one column ----------------------------------------------------------------------------


def _check_column(col: str, spec: ColumnSpec, raw: pd.Series) -> tuple[pd.Series, list[_Mask]]:
    null = raw.isna().to_numpy(dtype=bool, copy=True)
    masks: list[_Mask] = []
    if not spec.nullable:
        masks.append(_Mask(col, "null", null, "a value (the column is not nullable)"))
    values, ok = _parse(spec.type, raw, null)
    masks.append(_Mask(col, "type", ~null & ~ok, _TYPE_EXPECTED[spec.type]))
    valid = ~null & ok
    if spec.type == "category" and spec.categories is not None:
        member = values.isin(spec.categories).to_numpy(dtype=bool, copy=True)
        masks.append(_Mask(col, "category", valid & ~member, _one_of(spec.categories)))
        valid &= member
    if spec.min is not None or spec.max is not None:
        num = values.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if spec.min is not None:
                masks.append(_Mask(col, "range", valid & (num < spec.min), f">= {_num(spec.min)}"))
            if spec.max is not None:
                masks.append(_Mask(col, "range", valid & (num > spec.max), f"<= {_num(spec.max)}"))
    if spec.unique:
        repeat = values.duplicated(keep="first").to_numpy(dtype=bool, copy=True)
        masks.append(_Mask(col, "unique", valid & repeat, "a value not in an earlier row"))
    return values.where(pd.Series(valid, index=values.index)), masks


def _parse(kind: str, raw: pd.Series, null: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Typed values and a per-row "parsed" mask (meaningless where the raw value is null)."""
    if kind in ("str", "category"):
        return _as_text(raw), np.ones(len(raw), dtype=bool)
    if ptypes.is_bool_dtype(raw.dtype):
        if kind == "bool":
            return raw.astype("boolean"), np.ones(len(raw), dtype=bool)
        return pd.Series(pd.NA, index=raw.index, dtype="object"), np.zeros(len(raw), dtype=bool)
    if ptypes.is_numeric_dtype(raw.dtype):
        num = raw.to_numpy(dtype="float64", na_value=np.nan)
        if kind == "float":
            return pd.Series(num, index=raw.index), np.isfinite(num)
        if kind == "int":
            if ptypes.is_integer_dtype(raw.dtype):
                return raw.astype("Int64"), np.ones(len(raw), dtype=bool)
            ok = np.isfinite(num) & (np.abs(num) < 2.0**63)
            ok[ok] &= num[ok] == np.trunc(num[ok])
            return pd.Series(np.where(ok, num, np.nan), index=raw.index).astype("Int64"), ok
        ok = np.isin(num, (0.0, 1.0))
        return pd.Series(np.where(ok, num == 1.0, None), index=raw.index).astype("boolean"), ok
    text = _as_text(raw).str.strip()
    if kind == "int":
        ok = text.str.fullmatch(_INT).to_numpy(dtype=bool, na_value=False, copy=True)
        digits = text.where(ok)
        if digits.str.startswith("+").any():
            digits = digits.str.removeprefix("+")
        return digits.astype("Int64"), ok
    if kind == "float":
        ok = text.str.fullmatch(_FLOAT).to_numpy(dtype=bool, na_value=False, copy=True)
        num = text.where(ok).astype("float64")
        ok &= np.isfinite(num.to_numpy(na_value=np.nan))
        return num.where(ok), ok
    flags = text.str.lower().map(_BOOLS)
    ok = flags.notna().to_numpy(dtype=bool, copy=True) & ~null
    return flags.astype("boolean"), ok


def _as_text(raw: pd.Series) -> pd.Series:
    return raw if isinstance(raw.dtype, pd.StringDtype) else raw.astype("str")


def _mapped(text: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    hit = text.isin(list(mapping))
    return text.where(~hit, text.map(dict(mapping)))


def _final_dtypes(schema: Mapping[str, ColumnSpec], out: pd.DataFrame) -> dict[str, Any]:
    dtypes: dict[str, Any] = {}
    for col, spec in schema.items():
        if spec.type == "int":
            dtypes[col] = "Int64" if spec.nullable else "int64"
        elif spec.type == "float":
            dtypes[col] = "float64"
        elif spec.type == "bool":
            dtypes[col] = "boolean" if spec.nullable else "bool"
        else:
            dtypes[col] = "str"
    return {c: t for c, t in dtypes.items() if c in out.columns}


# -- reporting -----------------------------------------------------------------------------


def _first_rows(
    columns: Mapping[str, pd.Series], masks: list[_Mask], limit: int
) -> list[Violation]:
    """The first ``limit`` row-level violations, by row, then schema column order."""
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
        cell = columns[m.column].iloc[int(row)]
        value = None if pd.isna(cell) else _clip(str(cell))
        found.append(Violation(int(row), m.column, m.check, value, m.expected))
    return found


def _reasons(bad: np.ndarray, masks: list[_Mask]) -> pd.Series:
    where = np.flatnonzero(bad)
    text = np.full(len(where), "", dtype=object)
    for m in masks:
        sub = m.mask[where]
        if sub.any():
            text[sub] = text[sub] + f"; {m.column}: {m.check} (expected {m.expected})"
    return pd.Series(text, index=where, dtype="str").str.removeprefix("; ")


def _quarantine(table: pd.DataFrame, found: Findings) -> pd.DataFrame:
    where = np.flatnonzero(found.bad)
    q = table.iloc[where].reset_index(drop=True)
    q = q.astype({c: "str" for c in q.columns if q[c].dtype == object})
    row_col = "row" if "row" not in q.columns else "_bastion_row"
    reason_col = "reason" if "reason" not in q.columns else "_bastion_reason"
    q[row_col] = where.astype("int64")
    q[reason_col] = found.reasons.to_numpy()
    return q


def _gate_failed(stage: str, found: Findings) -> DataError:
    failures = [v.describe() for v in found.violations]
    checks = ", ".join(f"{k} {v}" for k, v in found.counts.items() if v)
    shown = "; ".join(failures[:_IN_MESSAGE])
    more = f"; ... and {found.total - _IN_MESSAGE} more" if found.total > _IN_MESSAGE else ""
    return DataError(f"{stage}: {found.total} violation(s) ({checks}): {shown}{more}", failures)


def _one_of(categories: list[str]) -> str:
    shown = ", ".join(repr(c) for c in categories[:8])
    more = f", ... ({len(categories)} categories)" if len(categories) > 8 else ""
    return f"one of {shown}{more}"


def _num(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _clip(text: str) -> str:
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."
