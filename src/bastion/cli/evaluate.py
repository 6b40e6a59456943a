"""``bastion evaluate NAME[:VERSION]`` (attack and measure a registered model again, sign a
new evaluation) and ``bastion models approve NAME:VERSION --reason ...`` (an approver's
override of a failed evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c
from bastion.cli.pipeline import models_app

__all__ = ["evaluate"]


def evaluate(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION (or NAME for the latest).")],
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline",
            help="A pipeline file whose evaluate gates and audits to run instead of the"
            " model's own (same label; the model's own data).",
        ),
    ] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Evaluate a registered model again: its gates and audits, signed as a new evaluation
    that decides whether the server serves it (exit 1 when a gate fails)."""
    from bastion.workspace import parse_model_ref

    parse_model_ref(ref)  # a malformed ref is bad usage before any secret is asked for
    if pipeline is not None:
        from bastion import Pipeline

        Pipeline.from_yaml(pipeline)  # a bad file is bad usage, before any secret
    with c.workspace(home) as ws, c.StageProgress("stage") as shown:
        report = ws.evaluations.run(
            ref, pipeline_file=pipeline, progress=shown.stage, steps=shown.step
        )
    data = report.to_json()
    if json_out:
        c.emit(data)
    else:
        _print(data)
    if not report.passed:
        raise typer.Exit(1)


def _print(data: dict[str, Any]) -> None:
    out = c.console()
    c.print_gates(out, data["gates"])
    verdict = "[green]passed[/]" if data["passed"] else "[red]FAILED[/]"
    out.print(f"evaluation of {c.esc(data['model'])}: {verdict}")
    out.print(f"signed evaluation statement: {c.esc(data['statement'])}")
    if data["report"]:
        out.print(f"report: {c.esc(str(Path(data['report']).resolve()))}")
    if not data["passed"]:
        out.print(
            "the server will refuse this model until an approver runs:"
            f" bastion models approve {c.esc(data['model'])} --reason '...'"
        )


@models_app.command("approve")
def approve(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION whose failed evaluation to override.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the failed gates are acceptable (audited).")
    ],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Override a model's failed evaluation (needs model:approve): signed and audited, and
    the server serves the model again."""
    from bastion.workspace import check_override_reason, parse_model_ref

    parse_model_ref(ref)
    check_override_reason(reason)
    with c.workspace(home) as ws:
        statement = ws.evaluations.approve(ref, reason)
    if json_out:
        c.emit({"model": ref, "override": statement})
        return
    c.console().print(f"override of {c.esc(ref)} signed: {c.esc(statement)}")
