"""``bastion run``, ``bastion schema`` and ``bastion models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

models_app = typer.Typer(help="Registered models: list, show, verify.", no_args_is_help=True)


def run(
    pipeline: Annotated[Path, typer.Argument(help="The pipeline file (YAML).")],
    force: Annotated[bool, typer.Option(help="Rerun every stage, ignoring the cache.")] = False,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Run a pipeline end to end: every output encrypted, signed and audited."""
    from bastion import Pipeline

    pipe = Pipeline.from_yaml(pipeline)  # validate before asking for any secret
    with c.workspace(home) as ws, c.progress() as bar:
        task = bar.add_task("pipeline", total=None)

        def step(stage: str, state: str, index: int, total: int) -> None:
            label = {
                "running": "running",
                "cached": "cached ",
                "done": "done   ",
                "failed": "FAILED ",
            }[state]
            done = index + (0 if state == "running" else 1)
            bar.update(task, description=f"{label} {stage}", completed=done, total=total)

        result = pipe.run(ws, progress=step, force=force)  # authorized: pipeline:run
    if json_out:
        c.emit(result.to_json())
    else:
        _summary(result)
    if result.status != "passed":
        raise typer.Exit(1)


def _summary(result: Any) -> None:
    from rich.table import Table

    out = c.console()
    stages = Table("stage", "status", "cached", "seconds", title=f"run {result.run_id}")
    for s in result.stages:
        stages.add_row(s.name, s.status, "yes" if s.cached else "", f"{s.seconds:.2f}")
    out.print(stages)
    if result.gates:
        gates = Table("gate", "value", "threshold", "result", title="gates")
        for g in result.gates:
            ok = g.get("passed")
            gates.add_row(
                str(g.get("gate")),
                f"{g.get('value'):.4f}",
                str(g.get("threshold")),
                "[green]pass[/]" if ok else "[red]FAIL[/]",
            )
        out.print(gates)
    verdict = "[green]passed[/]" if result.status == "passed" else "[red]failed[/]"
    out.print(f"status: {verdict}; model: {result.model or 'not released'}")
    if result.report:
        out.print(f"report: {result.report}")


def schema(json_out: c.Json = True, debug: c.Debug = False) -> None:
    """Print the JSON Schema of pipeline files (for editor completion)."""
    from bastion import pipeline_schema

    c.emit(pipeline_schema())


@models_app.command("list")
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """List registered model versions."""
    with c.workspace(home) as ws:
        records = ws.models.list(name)  # authorized: model:read
    rows: list[dict[str, Any]] = [
        {
            "model": r.ref,
            "digest": r.digest,
            "status": r.status,
            "created": r.created,
            "run_id": r.run_id,
            "estimator": r.record.get("estimator"),
        }
        for r in records
    ]
    if json_out:
        c.emit({"models": rows})
        return
    from rich.table import Table

    table = Table("model", "status", "estimator", "created", "run", "digest")
    for r in rows:
        table.add_row(
            r["model"],
            r["status"],
            str(r["estimator"]),
            r["created"],
            r["run_id"],
            r["digest"][:16] + "…",
        )
    c.console().print(table)


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION (or NAME for the latest).")],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Show a model after verifying its signature and provenance chain."""
    from bastion.workspace import parse_model_ref

    parse_model_ref(ref)  # a malformed ref is bad usage before any secret is asked for
    with c.workspace(home) as ws:
        verified = ws.show_model(ref)  # authorized (model:read) and audited
    rec = verified.record
    data: dict[str, Any] = {
        "model": rec.ref,
        "digest": rec.digest,
        "status": rec.status,
        "run_id": rec.run_id,
        "created": rec.created,
        "metrics": verified.contract.metrics,  # from the signed release, not the row
        "gates": verified.contract.gates,
        "verified": True,
        "provenance": [s["predicate"]["stage"] for s in verified.chain],
        "sources": verified.sources,
    }
    if json_out:
        c.emit(data)
        return
    out = c.console()
    out.print(f"[bold]{rec.ref}[/] ({rec.status}) sha256:{rec.digest}")
    out.print(f"signature and provenance verified: {' ← '.join(data['provenance'])}")
    for s in verified.sources:
        out.print(f"  source {s['name']}: sha256:{s['sha256']}")
    for k, v in (data["metrics"] or {}).items():
        out.print(f"  {k}: {v}")
