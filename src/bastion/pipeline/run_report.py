"""A run's report: what the stages produced, gathered and rendered beside their files.

:func:`write_report` gathers, in run order, each source's data report and its sections
(``Stage.data_report``), each audit's result (``Stage.audit_result``) and the run's record,
writes each stage's report files (``Stage.report_files``, e.g. the model card) into
``reports/<run id>/`` of the home, and renders the run report there
(:func:`bastion.compliance.report.render_run_report`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion._fs import atomic_write, private_dir
from bastion.pipeline.run_state import RunState

__all__ = ["write_report"]


def write_report(
    run: RunState,
    record: dict[str, Any],
    metrics: Mapping[str, Any],
    status: str,
    model_ref: str | None,
    gates: list[dict[str, Any]],
) -> Path | None:
    """Write the report of ``run`` (``status``, ``model_ref``, ``gates``; ``metrics``: the
    first gating stage's whole output) and its stages' report files; the report's path."""
    from bastion.compliance.report import render_run_report

    validation: dict[str, Any] = {}  # per source: its base report + the other sections
    audits: dict[str, Any] = {}  # audit name → its result
    for stage in run.stages:  # in run order: the base report of a source comes first
        if (
            stage.audit_result is not None
            and f"{stage.name}.{stage.audit_result[1]}" in run.produced
        ):
            audits[stage.audit_result[0]] = run.value(f"{stage.name}.{stage.audit_result[1]}")
        key = f"{stage.name}.report"
        if stage.data_report is None or key not in run.produced:
            continue
        source, section = stage.data_report
        if section:
            validation.setdefault(source, {})[section] = run.value(key)
        else:
            validation[source] = dict(run.value(key))
    shown = dict(
        record,
        evaluation=run.evaluation,
        override=run.override,
        status=status,
        model=model_ref,
        gates=gates,
        stages=[r.to_json() for r in run.records],
    )
    out_dir = run.ws.home / "reports" / run.run_id
    private_dir(out_dir)
    for stage in run.stages:  # e.g. the model card beside the report
        for output, filename in stage.report_files.items():
            if f"{stage.name}.{output}" in run.produced:
                atomic_write(out_dir / filename, run.value(f"{stage.name}.{output}").encode())
    return render_run_report(
        shown,
        metrics,
        validation,
        out_dir,
        plot_cache=run.ws.home / "reports" / ".plots",
        audits=audits,
    )
