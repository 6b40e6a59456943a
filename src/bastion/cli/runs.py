"""``bastion runs list`` and ``bastion runs show RUN``: find a run, its stages and gates,
and the whole paths of its report and model card."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli import _common as c

__all__ = ["runs_app"]

runs_app = typer.Typer(
    help="Pipeline runs: list them, show one (stages, gates, report paths).",
    no_args_is_help=True,
)

_FILES = (
    ("report", "report (HTML)"),
    ("report_json", "report (JSON)"),
    ("model_card", "model card (HTML)"),
    ("model_card_md", "model card (Markdown)"),
)


@runs_app.command("list")
def list_runs(
    limit: Annotated[
        int, typer.Option(help="Show at most this many runs, newest first.", min=1)
    ] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's runs.")] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """List runs, newest first (``--json`` adds stages, gates and report paths)."""
    with c.workspace(home) as ws:
        records = ws.runs.list(limit=limit, pipeline=pipeline)  # authorized: model:read
    rows = [r.to_json() for r in records]
    if json_out:
        c.emit({"runs": rows})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("run", "pipeline", "status", "started (UTC)", "model")
    for column in table.columns:  # names are shown whole, never cut with "…"
        column.overflow = "fold"
    table.columns[0].no_wrap = True
    for r in rows:
        started = str(r["started"])[:19].replace("T", " ")
        table.add_row(
            *(escape(str(v)) for v in (r["run_id"], r["pipeline"], r["status"], started)),
            escape(r["model"] or "-"),
        )
    c.console().print(table)
    if not rows:
        c.console().print("no runs yet (`bastion run PIPELINE.yaml` makes one)")


@runs_app.command("show")
def show(
    run: Annotated[str, typer.Argument(help="A run id, or its start if only one run has it.")],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Show one run: its stages, gates, model and the paths of its report and model card."""
    with c.workspace(home) as ws:
        record = ws.runs.show(run)  # authorized (model:read) and audited
    data = record.to_json()
    if json_out:
        c.emit(data)
        return
    _print_run(data)


def _print_run(data: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = c.console()
    out.print(
        f"run {data['run_id']} of {data['pipeline']}: {data['status']}"
        f" (started {data['started']}, finished {data['finished'] or '-'}, by {data['actor']})",
        markup=False,
        highlight=False,
    )
    stages = Table("stage", "status", "cached", "seconds", title="stages")
    for s in data["stages"]:
        stages.add_row(
            escape(s["name"]),
            escape(s["status"]),
            "yes" if s["cached"] else "",
            f"{s['seconds']:.2f}",
        )
    out.print(stages)
    c.print_gates(out, data["gates"])
    lines = [f"model: {data['model'] or 'not released'}"]
    if data["error"]:
        lines.append(f"error: {data['error']}")
    lines += [f"{label}: {data[key] or '(none)'}" for key, label in _FILES]
    for line in lines:  # whole lines, never cut or wrapped mid-path by Rich
        out.print(line, markup=False, highlight=False, soft_wrap=True)
