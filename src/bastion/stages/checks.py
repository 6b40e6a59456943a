"""The validate stage's checks: one table against ``data.schema``, ``data.label`` and
``data.checks``. :func:`validate_table` finds problems and returns
:class:`~bastion.stages.findings.Findings`; :class:`~bastion.stages.validate.ValidateStage`
applies the policy (checks return findings, policy decides).

How it works. Every check is a vectorised pandas/numpy mask over all rows — no Python loop
over rows; text is parsed with pyarrow compute (RE2 and casts); a unique integer id is
counted with ``bincount`` before any hashing; category membership and the label's classes
share one ``index_in`` pass; the typed view with bad cells nulled is made only when asked
for. Ten checks over a million typed rows take under 0.1 s on two cores
(``benchmarks/bench_checks.py``). :mod:`bastion.stages.file_check` runs the same checks over
a file chunk by chunk, in constant memory.

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
- Each :class:`~bastion.stages.findings.Violation` shows its value masked unless
  ``data.show_values`` lists the column (:mod:`bastion.stages.findings`); ``label_classes``
  shows the classes the config declares and masks any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bastion.defenses.pii import mask
from bastion.spec.expr import CompiledCheck, compile_check
from bastion.stages._column_checks import (
    Column,
    Mask,
    Repeats,
    any_failed,
    check_column,
    column_checks,
)
from bastion.stages._parse import as_text, mapped
from bastion.stages.findings import Findings, Violation, clip, first_violations, row_reasons

if TYPE_CHECKING:
    from bastion.spec.config import ColumnSpec, DataConfig

__all__ = [
    "CHECKS",
    "TABLE",
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
        found += [(col, c) for c in column_checks(spec)]
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
    repeats: Repeats | None = None,
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
    parsed: dict[str, Column] = {}
    masks: list[Mask] = []
    label_raw: pd.Series | None = None
    for col, spec in schema.items():
        if col in unusable:
            typed[col] = pd.Series([pd.NA] * n, dtype="object", index=table.index)
            why = "the column is missing" if col not in columns else "the column is repeated"
            skipped += [(col, c, why) for c in column_checks(spec)]
            continue
        raw = columns[col]
        if col == label.column:
            raw = mapped(as_text(raw), label.map) if label.map else raw
            label_raw = raw
        found = check_column(col, spec, raw, repeats)
        typed[col] = found.values
        cells[col] = any_failed(found.masks)
        parsed[col] = found
        masks += found.masks
        run += [(col, c) for c in column_checks(spec)]

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
        masks.append(Mask(where, check.check, fails, check.expected, check.columns))
        run.append((where, check.check))

    bad = any_failed(masks)
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
    listed = table_level[:limit] + first_violations(
        columns, masks, limit - len(table_level), set(data.show_values)
    )
    return Findings(
        parsed=pd.DataFrame(typed, index=table.index),
        bad=bad,
        reasons=row_reasons(bad, masks) if with_reasons else pd.Series([], dtype="str"),
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
            clip(shown),
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


def _classes(found: Column, raw: pd.Series, good: np.ndarray) -> dict[str, int]:
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
