"""The screen stage: the poisoning screen over a training source, and its policy.

Runs after ``pii.<source>`` on every source that trains the model (not on
``split.test_source``). :func:`~bastion.defenses.poisoning.screen_table` returns findings;
this stage applies ``data.screen``'s policies to them:

- ``flag``: the row stays; the finding is in the report and the ``findings`` table;
- ``quarantine``: the row is moved to the ``quarantine`` output (stored encrypted like
  every artifact) with its ``row`` number in the validated table and every ``reason`` —
  never dropped silently;
- ``fail``: the stage fails with :class:`~bastion.errors.GateFailed` (exit code 1)
  naming the detectors, reasons and first rows.

Findings, messages and reports name rows, columns and reasons; a data value in a detail or
a trigger is masked (:func:`bastion.defenses.pii.mask`) unless ``data.show_values`` lists
its column.

Outputs: ``table`` (rows kept), ``quarantine``, ``findings`` (one row per finding:
row, detector, reason, score, detail, column) and ``report`` (kind ``json``; counts,
examples, triggers, timings). Detectors in ``unsafe_skip`` are audited by the runner on
every run.

:class:`ShiftStage` (``shift.<source>``) runs the shift detector on the kept table. It
needs the profile of the last accepted version of the same source: the runner hands the
``profile`` output of this stage in the newest *passed* run of the same pipeline as the
``baseline`` input, and names it in the stage's provenance statement. The first run has
none and says so. Shift findings are about columns, not rows, so ``quarantine`` acts as
``flag``; ``fail`` stops the run. Its own stage, so that a new baseline re-runs only this
cheap comparison, never the screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.defenses.poisoning import PoisoningReport, screen_table
from bastion.defenses.shift import profile_table
from bastion.errors import GateFailed
from bastion.spec.stage import Stage
from bastion.stages._aside import set_aside

if TYPE_CHECKING:
    from bastion.spec.config import DataConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = ["ScreenStage", "ShiftStage", "findings_frame", "quarantine_frame"]

_IN_MESSAGE = 5


class ScreenStage(Stage):
    """Screen ``pii.<source>.table`` for poisoning; keep, quarantine or fail per policy."""

    version = "2"  # 2: values in details and triggers masked unless data.show_values

    def __init__(self, source_name: str, data: DataConfig) -> None:
        self.source_name = source_name
        self.data_report = (source_name, "screen")
        self.data = data
        self.name = f"screen.{source_name}"
        self.inputs: Mapping[str, str] = {"table": f"pii.{source_name}.table"}
        self.outputs: Mapping[str, Kind] = {
            "table": "table",
            "quarantine": "table",
            "findings": "table",
            "report": "json",
        }

    def fingerprint(self) -> Mapping[str, Any]:
        screen = self.data.screen.model_dump(mode="json")
        screen.pop("shift", None)  # the shift stage's business
        label = self.data.label.model_dump(mode="json")
        found: dict[str, Any] = {"screen": screen, "label": label}
        if self.data.show_values:
            found["show_values"] = sorted(self.data.show_values)
        return found

    def unsafe(self) -> list[str]:
        skip = [d for d in self.data.screen.unsafe_skip if d != "shift"]
        return [f"data.screen.unsafe_skip: {d}" for d in skip]

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        given: pd.DataFrame = inputs["table"]
        table = given.reset_index(drop=True)
        label = self.data.label
        result = screen_table(
            table,
            label=label.column,
            positive=label.positive_text,
            cfg=self.data.screen,
            seed=ctx.seed,
            shift=False,
            progress=lambda step: ctx.progress(0, 0, step),  # detector names; total unknown
            show_values=self.data.show_values,
            threads=getattr(ctx.config, "threads", None),
        )
        failing = result.failing()
        report = dict(result.to_json(), source=self.source_name)
        ctx.audit(
            "screen.result",
            "failed" if failing else "ok",
            counts=result.counts(),
            quarantined=report["rows_quarantined"],
            skipped=result.skipped,
        )
        if failing:
            raise _gate_failed(self.name, failing)
        out_rows = result.rows_for("quarantine")
        keep = np.setdiff1d(np.arange(len(table)), out_rows)
        kept = table.iloc[keep].reset_index(drop=True) if len(out_rows) else given
        ctx.summary[self.name] = {
            "rows_in": len(table),
            "rows_out": len(kept),
            "quarantined": len(out_rows),
            "flagged": report["rows_flagged"],
        }
        return {
            "table": kept,
            "quarantine": quarantine_frame(table, result),
            "findings": findings_frame(result),
            "report": report,
        }


class ShiftStage(Stage):
    """Compare ``screen.<source>.table`` with the last passed run's profile of it."""

    version = "2"  # 2: a new category is masked unless data.show_values
    baseline_output = "profile"  # the runner feeds the last passed run's profile as "baseline"

    def __init__(self, source_name: str, data: DataConfig) -> None:
        self.source_name = source_name
        self.data_report = (source_name, "shift")
        self.data = data
        self.name = f"shift.{source_name}"
        self.inputs: Mapping[str, str] = {"table": f"screen.{source_name}.table"}
        self.outputs: Mapping[str, Kind] = {"report": "json", "profile": "json"}

    def fingerprint(self) -> Mapping[str, Any]:
        return {
            "shift": self.data.screen.shift.model_dump(mode="json"),
            "skip": "shift" in self.data.screen.unsafe_skip,
            "label": self.data.label.model_dump(mode="json"),
            **({"show_values": sorted(self.data.show_values)} if self.data.show_values else {}),
        }

    def unsafe(self) -> list[str]:
        return ["data.screen.unsafe_skip: shift"] if "shift" in self.data.screen.unsafe_skip else []

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        from bastion.defenses.shift import compare

        table: pd.DataFrame = inputs["table"]
        label = self.data.label
        profile = profile_table(table, label=label.column, positive=label.positive_text)
        baseline = inputs.get("baseline")
        policy = self.data.screen.policy_of("shift")
        report: dict[str, Any] = {
            "source": self.source_name,
            "policy": policy,
            "baseline": "last passed run" if baseline is not None else None,
            "ran": False,
            "findings": [],
        }
        if baseline is not None and "shift" not in self.data.screen.unsafe_skip:
            found = compare(
                baseline,
                table,
                self.data.screen.shift,
                label=label.column,
                positive=label.positive_text,
                show=self.data.show_values,
            )
            report.update(found.to_json(), ran=True)
            report["findings"] = [f.to_json() for f in found.findings]
            ctx.audit(
                "shift.result",
                "failed" if found.findings and policy == "fail" else "ok",
                findings=len(found.findings),
            )
            if found.findings and policy == "fail":
                shown = "; ".join(f"{f.column}: {f.reason} ({f.detail})" for f in found.findings)
                raise GateFailed(
                    f"{self.name}: the data shifted since the last passed run: {shown}",
                    [f"{f.column}: {f.reason} {f.detail}" for f in found.findings],
                )
        ctx.summary[self.name] = {"ran": report["ran"], "findings": len(report["findings"])}
        return {"report": report, "profile": profile}


def findings_frame(result: PoisoningReport) -> pd.DataFrame:
    """One row per finding, typed for Parquet."""
    return pd.DataFrame(
        {
            "row": pd.array([f.row for f in result.findings], dtype="Int64"),
            "detector": pd.array([f.detector for f in result.findings], dtype="str"),
            "reason": pd.array([f.reason for f in result.findings], dtype="str"),
            "score": np.array([f.score for f in result.findings], dtype="float64"),
            "detail": pd.array([f.detail for f in result.findings], dtype="str"),
            "column": pd.array([f.column for f in result.findings], dtype="str"),
        }
    )


def quarantine_frame(table: pd.DataFrame, result: PoisoningReport) -> pd.DataFrame:
    """The quarantined rows as they were, with their row number and every reason."""
    rows = result.rows_for("quarantine")
    reasons = result.reasons()
    return set_aside(table, rows, [reasons[int(r)] for r in rows])


def _gate_failed(stage: str, failing: list[Any]) -> GateFailed:
    kinds = sorted({f"{f.detector}:{f.reason}" for f in failing})
    rows = [f for f in failing if f.row is not None][:_IN_MESSAGE]
    shown = "; ".join(f"row {f.row}: {f.detector}:{f.reason} ({f.detail})" for f in rows)
    return GateFailed(
        f"{stage}: the poisoning screen failed the run: {len(failing)} finding(s)"
        f" ({', '.join(kinds)}){': ' + shown if shown else ''}",
        [f"{f.detector}:{f.reason} row={f.row} {f.detail}" for f in failing[:200]],
    )
