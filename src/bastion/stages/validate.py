"""Validate: check one ingested table against the declared schema; type it; apply the policy.

The checks are :mod:`bastion.stages.checks` (one column's: :mod:`bastion.stages._column_checks`)
and what they find is :mod:`bastion.stages.findings`; their public names are importable from
here too. :class:`ValidateStage` runs them and applies the policy (checks return findings,
policy decides).

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
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.errors import DataError
from bastion.spec.stage import Stage
from bastion.stages._aside import set_aside
from bastion.stages.checks import (
    CHECKS,
    TABLE,
    declared_checks,
    is_positive,
    label_violations,
    validate_frame,
    validate_table,
)
from bastion.stages.findings import Findings, Violation

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

_IN_MESSAGE = 5


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


def _quarantine(table: pd.DataFrame, found: Findings) -> pd.DataFrame:
    return set_aside(table, np.flatnonzero(found.bad), found.reasons.to_numpy().tolist())


def _gate_failed(stage: str, found: Findings) -> DataError:
    failures = [v.describe() for v in found.violations]
    checks = ", ".join(f"{k} {v}" for k, v in found.counts.items() if v)
    shown = "; ".join(failures[:_IN_MESSAGE])
    more = f"; ... and {found.total - _IN_MESSAGE} more" if found.total > _IN_MESSAGE else ""
    return DataError(f"{stage}: {found.total} violation(s) ({checks}): {shown}{more}", failures)
