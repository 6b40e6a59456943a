# Over 400 lines, because one stage; each column check sits beside the message it writes.
"""Validate: check one ingested table against the declared schema; type it; apply the policy.

How it works. :func:`validate_table` finds problems; :class:`ValidateStage` applies the
policy (checks return findings, policy decides). Every check is a vectorised pandas/numpy
mask over all rows — no Python loop over rows; text is parsed with pyarrow compute (RE2 and
casts); a unique integer id is counted with ``bincount`` before any hashing; category
membership and the label's classes share one ``index_in`` pass; the typed view with bad cells
nulled is made only when asked for. Ten checks over a million typed rows take under 0.1 s
on two cores (``benchmarks/bench_checks.py``). :mod:`bastion.stages.file_check` runs the same
checks over a file chunk by chunk, in constant memory.

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
  its type is checked no further. Int and float text is ASCII digits (``[0-9]``).
- Custom checks (``data.checks``): each row rule (see :mod:`bastion.spec.expr` for the
  language and its null rule: a row fails only when the expression is false) runs as check
  ``custom:<name>`` over the rows whose referenced columns parsed (a cell that failed its
  type is already a violation); its ``column`` is the referenced columns joined by ``, ``,
  its ``value`` shows each of them (``a=1, b=null``) and ``expected`` is the check's
  ``message`` (or its expression). A failing row is a row-level violation (quarantinable).
- Nothing is skipped silently: :attr:`Findings.checks_run` lists every ``(column, check)``
  that ran — ``("*", "duplicate_column")``, ``("*", "missing_column")``,
  ``("*", "extra_column")``, then per schema column ``null`` (not nullable), ``type``,
  ``category`` (categories declared), ``range`` (``min`` or ``max``), ``unique``, then
  ``label_classes`` for the label, then each custom check — and
  :attr:`Findings.checks_skipped` every declared one that could not run, with the reason
  (its column is missing or repeated: a table-level violation already). ``counts`` has
  every check of :data:`CHECKS` and every ``custom:<name>``, zero or not.
- A :class:`Violation` is ``row`` (0-based data row; the header is not a row), ``column``,
  ``check``, ``value`` and ``expected``; ``row`` is None for table-level ones. The value is
  masked by :func:`bastion.defenses.pii.mask` (``***-**-6789``, ``j***@e***.com``) — it
  goes into messages, the audit log, run records and reports, which must never hold a data
  value — unless ``data.show_values`` lists the column; then it is the raw value, at most
  60 characters. A custom check masks each cell by its own column; ``label_classes`` shows
  the classes the config declares and masks any other.

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

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.defenses.pii import mask
from bastion.errors import DataError
from bastion.spec.expr import CompiledCheck, compile_check
from bastion.spec.stage import Stage
from bastion.stages._aside import set_aside
from bastion.stages._parse import as_text, codes_in, mapped, nulled, numbers, parse
from bastion.stages._parse import repeats as earlier_repeats

if TYPE_CHECKING:
    from bastion.spec.config import ColumnSpec, DataConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = [
    "CHECKS",
    "TABLE",
    "Findings",
    "ValidateStage",
    "Violation",
    "declared_checks",
    "is_positive",
    "label_violations",
    "validate_frame",
    "validate_table",
]

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
TABLE = "*"  # the column of table-level checks in ``checks_run``
_VALUE_CHARS = 60
_IN_MESSAGE = 5
_TYPE_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "category": "a string",
}


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
    """What :func:`validate_table` found; nothing here decides pass or fail."""

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


@dataclass
class _Mask:
    column: str
    check: str
    mask: np.ndarray
    expected: str
    cells: tuple[str, ...] = ()  # raw columns shown as the value; () means (column,)


_Repeats = Callable[[str, pd.Series], np.ndarray]
"""``repeats(column, values)``: bool per row, a non-null value seen in an earlier row."""


class ValidateStage(Stage):
    """Check ``ingest.<source>.table``; output the typed ``table``, ``report``, ``quarantine``."""

    version = "3"  # 2: custom checks, checks_run/_skipped; 3: values masked unless shown

    def __init__(self, source_name: str, data: DataConfig) -> None:
        self.source_name = source_name
        self.data_report = (source_name, "")
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
        found: dict[str, Any] = {
            "source": self.source_name,
            "schema": {k: v.model_dump(mode="json") for k, v in d.schema_.items()},
            "label": d.label.model_dump(mode="json"),
            "validation": d.validation.model_dump(mode="json"),
        }
        if d.checks:
            found["checks"] = [c.model_dump(mode="json") for c in d.checks]
        if d.show_values:
            found["show_values"] = sorted(d.show_values)
        return found

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        table: pd.DataFrame = inputs["table"]
        policy, limit = self.data.validation.policy, self.data.validation.max_report
        found = validate_table(table, self.data, limit=limit)
        if found.total and (policy == "fail" or found.table_level):
            raise _gate_failed(self.name, found)
        good = ~found.bad
        out = found.parsed.loc[good].reset_index(drop=True)
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
            "checks_run": [list(c) for c in found.checks_run],
            "checks_skipped": [list(c) for c in found.checks_skipped],
            "label": {
                "column": self.data.label.column,
                "positive": self.data.label.positive,
                "classes": found.classes,
            },
        }
        ctx.summary[self.name] = {k: report[k] for k in ("rows_in", "rows_out", "quarantined")}
        return {"table": out, "report": report, "quarantine": quarantine}


def validate_table(table: pd.DataFrame, data: DataConfig, *, limit: int = 50) -> Findings:
    """Run every check of ``data.schema``, ``data.label`` and ``data.checks`` over ``table``.

    A custom check that does not compile is a :class:`~bastion.errors.ConfigError`.
    """
    checks = [compile_check(c, data.schema_) for c in data.checks]
    return validate_frame(table, data, checks, limit=limit)


def declared_checks(data: DataConfig) -> list[tuple[str, str]]:
    """Every ``(column, check)`` that ``data`` declares, in :attr:`Findings.checks_run` order."""
    found = [(TABLE, "duplicate_column"), (TABLE, "missing_column"), (TABLE, "extra_column")]
    for col, spec in data.schema_.items():
        found += [(col, c) for c in _column_checks(spec)]
    found.append((data.label.column, "label_classes"))
    for check in data.checks:
        compiled = compile_check(check, data.schema_)
        found.append((", ".join(compiled.columns), compiled.check))
    return found


def validate_frame(
    table: pd.DataFrame,
    data: DataConfig,
    checks: list[CompiledCheck],
    *,
    limit: int,
    repeats: _Repeats | None = None,
    judge_label: bool = True,
    with_reasons: bool = True,
) -> Findings:
    """:func:`validate_table` with compiled checks, a cross-chunk ``repeats`` for ``unique``
    and, with ``judge_label=False``, the label's classes counted but not judged;
    ``with_reasons=False`` leaves ``reasons`` empty (no quarantine to explain)."""
    n = len(table)
    schema, label = data.schema_, data.label
    names = [str(c) for c in table.columns]
    table_level = _table_level(names, schema)
    unusable = {v.column for v in table_level if v.check != "extra_column"}
    columns = {str(c): table.iloc[:, i] for i, c in enumerate(table.columns)}
    run = [(TABLE, "duplicate_column"), (TABLE, "missing_column"), (TABLE, "extra_column")]
    skipped: list[tuple[str, str, str]] = []

    typed: dict[str, pd.Series] = {}
    cells: dict[str, np.ndarray] = {}
    parsed: dict[str, _Column] = {}
    masks: list[_Mask] = []
    label_raw: pd.Series | None = None
    for col, spec in schema.items():
        if col in unusable:
            typed[col] = pd.Series([pd.NA] * n, dtype="object", index=table.index)
            why = "the column is missing" if col not in columns else "the column is repeated"
            skipped += [(col, c, why) for c in _column_checks(spec)]
            continue
        raw = columns[col]
        if col == label.column:
            raw = mapped(as_text(raw), label.map) if label.map else raw
            label_raw = raw
        found = _check_column(col, spec, raw, repeats)
        typed[col] = found.values
        cells[col] = _any(found.masks)
        parsed[col] = found
        masks += found.masks
        run += [(col, c) for c in _column_checks(spec)]

    label_at = len(run)
    for check in checks:
        where = ", ".join(check.columns)
        absent = [c for c in check.columns if c not in parsed]
        if absent:
            skipped.append((where, check.check, f"column {absent[0]!r} is missing or repeated"))
            continue
        fails = check.failures({c: parsed[c].values for c in check.columns}, n)
        for c in check.columns:
            fails &= ~parsed[c].failed
        masks.append(_Mask(where, check.check, fails, check.expected, check.columns))
        run.append((where, check.check))

    bad = _any(masks)
    classes: dict[str, int] = {}
    if label_raw is not None:
        run.insert(label_at, (label.column, "label_classes"))
        classes = _classes(parsed[label.column], label_raw, ~bad)
        if judge_label:
            table_level += label_violations(classes, data)
    elif label.column in unusable:
        skipped.append((label.column, "label_classes", "the column is missing or repeated"))

    counts_by_check = dict.fromkeys(CHECKS, 0) | {c.check: 0 for c in checks}
    by_column: dict[str, dict[str, int]] = {}
    for v in table_level:
        counts_by_check[v.check] += 1
        by_column.setdefault(v.column, {}).setdefault(v.check, 0)
        by_column[v.column][v.check] += 1
    for m in masks:
        k = int(np.count_nonzero(m.mask))
        if k:
            counts_by_check[m.check] += k
            col_counts = by_column.setdefault(m.column, {})
            col_counts[m.check] = col_counts.get(m.check, 0) + k
    total = sum(counts_by_check.values())
    listed = table_level[:limit] + _first_rows(
        columns, masks, limit - len(table_level), set(data.show_values)
    )
    return Findings(
        parsed=pd.DataFrame(typed, index=table.index),
        bad=bad,
        reasons=_reasons(bad, masks) if with_reasons else pd.Series([], dtype="str"),
        table_level=table_level,
        violations=listed,
        total=total,
        counts=counts_by_check,
        by_column=by_column,
        classes=classes,
        checks_run=run,
        checks_skipped=skipped,
        cells=cells,
    )


def label_violations(classes: Mapping[str, int], data: DataConfig) -> list[Violation]:
    """``label_classes`` when ``classes`` (of the good rows) are not two including positive."""
    label = data.label
    if len(classes) == 2 and any(is_positive(c, label.positive) for c in classes):
        return []
    declared = {str(label.positive), *label.map.values()}
    spec = data.schema_.get(label.column)
    declared |= set(spec.categories or []) if spec is not None else set()
    visible = label.column in data.show_values
    shown = (
        ", ".join(repr(c if c in declared or visible else mask(c)) for c in sorted(classes)[:5])
        or "none"
    )
    return [
        Violation(
            None,
            label.column,
            "label_classes",
            _clip(shown),
            f"exactly two classes including {label.positive!r}",
        )
    ]


def is_positive(text: str, positive: bool | float | str) -> bool:
    """Whether a label value, as text, is ``label.positive`` (typed as its column)."""
    if isinstance(positive, str):
        return text == positive
    if isinstance(positive, bool):
        return text.strip().lower() == str(positive).lower()
    try:
        return float(text) == positive
    except ValueError:
        return False


def _table_level(names: list[str], schema: Mapping[str, ColumnSpec]) -> list[Violation]:
    found = [
        Violation(None, col, "duplicate_column", None, "each column name once")
        for col in sorted({c for c in names if names.count(c) > 1})
    ]
    found += [
        Violation(
            None, c, "missing_column", None, "declared in the schema but absent from the data"
        )
        for c in schema
        if c not in names
    ]
    found += [
        Violation(None, c, "extra_column", None, "not declared in the schema")
        for c in dict.fromkeys(names)
        if c not in schema
    ]
    return found


def _column_checks(spec: ColumnSpec) -> list[str]:
    found = [] if spec.nullable else ["null"]
    found.append("type")
    if spec.type == "category" and spec.categories is not None:
        found.append("category")
    if spec.min is not None or spec.max is not None:
        found.append("range")
    if spec.unique:
        found.append("unique")
    return found


def _classes(found: _Column, raw: pd.Series, good: np.ndarray) -> dict[str, int]:
    """The label's values (text) over the good rows, by name."""
    if found.codes is not None and found.categories is not None:
        counts = np.bincount(
            found.codes[good & (found.codes >= 0)], minlength=len(found.categories)
        )
        by_name: dict[str, int] = {}
        for name, k in zip(found.categories, counts.tolist(), strict=True):
            if k:
                by_name[name] = by_name.get(name, 0) + k
        return dict(sorted(by_name.items()))
    values = found.values if isinstance(found.values.dtype, pd.StringDtype) else as_text(raw)
    counts_s = values[good].value_counts(dropna=True)
    return dict(sorted((str(k), int(v)) for k, v in counts_s.items() if v))


def _any(masks: list[_Mask]) -> np.ndarray:
    n = len(masks[0].mask) if masks else 0
    bad = np.zeros(n, dtype=bool)
    for m in masks:
        bad |= m.mask
    return bad


# -- one column ----------------------------------------------------------------------------


@dataclass
class _Column:
    values: pd.Series  # parsed values (null where null or unparsed)
    masks: list[_Mask]
    failed: np.ndarray  # failed its type
    codes: np.ndarray | None = None  # category: index into `categories`, -1 if not one
    categories: list[str] | None = None


def _check_column(col: str, spec: ColumnSpec, raw: pd.Series, repeats: _Repeats | None) -> _Column:
    """Every check of one column, and its parsed values."""
    null = raw.isna().to_numpy(dtype=bool, copy=True)
    masks: list[_Mask] = []
    if not spec.nullable:
        masks.append(_Mask(col, "null", null, "a value (the column is not nullable)"))
    values, ok = parse(spec.type, raw, null)
    failed = ~null & ~ok
    masks.append(_Mask(col, "type", failed, _TYPE_EXPECTED[spec.type]))
    valid = ~null & ok
    found = _Column(values, masks, failed)
    if spec.type == "category" and spec.categories is not None:
        found.codes = codes_in(values, spec.categories)
        found.categories = list(spec.categories)
        member = found.codes >= 0
        masks.append(_Mask(col, "category", valid & ~member, _one_of(spec.categories)))
        valid &= member
    if spec.min is not None or spec.max is not None:
        num = numbers(values)
        with np.errstate(invalid="ignore"):
            if spec.min is not None:
                below = valid & (num < spec.min)
                masks.append(_Mask(col, "range", below, f">= {_num(spec.min)}"))
            if spec.max is not None:
                above = valid & (num > spec.max)
                masks.append(_Mask(col, "range", above, f"<= {_num(spec.max)}"))
    if spec.unique:
        repeat = earlier_repeats(values) if repeats is None else repeats(col, values)
        masks.append(_Mask(col, "unique", valid & repeat, "a value not in an earlier row"))
    return found


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
    columns: Mapping[str, pd.Series], masks: list[_Mask], limit: int, show: Collection[str]
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
            value: str | None = _clip(", ".join(shown))
        else:
            value = _cell(m.column, columns[m.column].iloc[int(row)], show)
        found.append(Violation(int(row), m.column, m.check, value, m.expected))
    return found


def _cell(column: str, cell: Any, show: Collection[str]) -> str | None:
    if pd.isna(cell):
        return None
    return _clip(str(cell)) if column in show else _clip(mask(str(cell)))


def _reasons(bad: np.ndarray, masks: list[_Mask]) -> pd.Series:
    where = np.flatnonzero(bad)
    text = np.full(len(where), "", dtype=object)
    for m in masks:
        sub = m.mask[where]
        if sub.any():
            text[sub] = text[sub] + f"; {m.column}: {m.check} (expected {m.expected})"
    return pd.Series(text, index=where, dtype="str").str.removeprefix("; ")


def _quarantine(table: pd.DataFrame, found: Findings) -> pd.DataFrame:
    return set_aside(table, np.flatnonzero(found.bad), found.reasons.to_numpy().tolist())


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
