"""``bastion run``, ``bastion schema`` and ``bastion models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

models_app = typer.Typer(
    help="Registered models: list and show. To verify one: bastion verify --model NAME:VERSION.",
    no_args_is_help=True,
)


def data_flow(chain: list[dict[str, Any]]) -> list[str]:
    """The stage names of a verified chain in data-flow order: every stage after the
    stages whose outputs it read (ingest first, the model's stage last). The registry
    walks the chain from the model back; this sorts it topologically by the statements'
    subjects and artifact materials, ties kept in the walk's reverse order."""
    nodes = list(reversed(chain))
    producer = {  # by name and digest: a pass-through stage's output shares its digest
        (s.get("name"), s["digest"]["sha256"]): i
        for i, st in enumerate(nodes)
        for s in st.get("subject", [])
    }
    order: list[int] = []
    state = [0] * len(nodes)  # 0 new, 1 on the path, 2 placed
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            i, expanded = stack.pop()
            if expanded:
                state[i] = 2
                order.append(i)
                continue
            if state[i]:
                continue
            state[i] = 1
            stack.append((i, True))
            for m in reversed(nodes[i]["predicate"].get("materials", [])):
                j = producer.get((m.get("name"), m.get("sha256", "")))
                if m.get("kind") == "artifact" and j is not None and state[j] == 0:
                    stack.append((j, False))
    return [nodes[i]["predicate"]["stage"] for i in order]


def flow_text(stages: list[str], sources: int) -> str:
    """``N pinned source(s) → ingest.train → ... → release``."""
    return " → ".join([f"{sources} pinned source(s)", *stages])


def run(
    pipeline: Annotated[Path, typer.Argument(help="The pipeline file (YAML).")],
    force: Annotated[bool, typer.Option(help="Rerun every stage, ignoring the cache.")] = False,
    override_gates: Annotated[
        str | None,
        typer.Option(
            "--override-gates",
            metavar="REASON",
            help="Release even if gates fail, for this reason (needs model:approve too;"
            " signed and audited).",
        ),
    ] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Run a pipeline end to end: every output encrypted, signed and audited."""
    from bastion import Pipeline

    pipe = Pipeline.from_yaml(pipeline)  # validate before asking for any secret
    if override_gates is not None:
        from bastion.workspace import check_override_reason

        check_override_reason(override_gates)
    # a terminal: Rich progress with the steps inside a stage; else one line per stage
    with c.workspace(home) as ws, c.StageProgress("stage") as shown:
        result = pipe.run(
            ws, progress=shown.stage, steps=shown.step, force=force, override_gates=override_gates
        )
    if json_out:
        c.emit(result.to_json())
    else:
        _summary(result)
    if result.status != "passed":
        raise typer.Exit(1)


def _summary(result: Any) -> None:
    from rich.table import Table

    out = c.console()
    stages = Table("stage", "status", "cached", "seconds", title=f"run {c.esc(result.run_id)}")
    for s in result.stages:
        stages.add_row(
            c.esc(s.name), c.esc(s.status), "yes" if s.cached else "", f"{s.seconds:.2f}"
        )
    out.print(stages)
    c.print_gates(out, result.gates)
    verdict = "[green]passed[/]" if result.status == "passed" else "[red]failed[/]"
    override = result.record.get("override")
    if override:
        verdict += f" (gates overridden by {c.esc(override['by'])}: {c.esc(override['reason'])})"
    out.print(f"status: {verdict}; model: {c.esc(result.model or 'not released')}")
    if result.report:
        out.print(f"report: {c.esc(str(Path(result.report).resolve()))}")


def schema(
    json_out: Annotated[
        bool, typer.Option("--json", hidden=True, help="Accepted; JSON is the only output.")
    ] = False,
    debug: c.Debug = False,
) -> None:
    """Print the JSON Schema of pipeline files (for editor completion); always JSON."""
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
            c.esc(r["model"]),
            c.esc(r["status"]),
            c.esc(r["estimator"]),
            c.esc(r["created"]),
            c.esc(r["run_id"]),
            c.esc(r["digest"][:16]) + "…",
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
    from bastion.cli.serve import print_inputs
    from bastion.serving.deployment import model_inputs
    from bastion.workspace import parse_model_ref

    parse_model_ref(ref)  # a malformed ref is bad usage before any secret is asked for
    with c.workspace(home) as ws:
        verified = ws.show_model(ref)  # authorized (model:read) and audited
        files = ws.runs.files(verified.record.run_id, model=verified.record.name)
        inputs = model_inputs(ws, verified.contract)  # from the signed pipeline file
        evaluation = ws.evaluations.current(verified.record)  # newest signed verdict
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
        "provenance": data_flow(verified.chain),  # data-flow order: ingest first
        "sources": verified.sources,
        **files.to_json(),  # report, report_json, model_card(_md): absolute paths or None
        "inputs": inputs,  # the fields of one predict instance: name, type, range/categories
        "evaluation": evaluation.to_json() if evaluation is not None else None,
    }
    if json_out:
        c.emit(data)
        return
    out = c.console()
    out.print(f"[bold]{c.esc(rec.ref)}[/] ({c.esc(rec.status)}) sha256:{c.esc(rec.digest)}")
    out.print("signature and provenance verified, in data-flow order:")
    for s in verified.sources:
        out.print(f"  pinned {c.esc(s['name'])}: sha256:{c.esc(s['sha256'])}")
    out.print(f"  {c.esc(flow_text(data['provenance'], len(verified.sources)))} → model")
    for k, v in (data["metrics"] or {}).items():
        out.print(f"  {c.esc(k)}: {c.esc(v)}")
    print_inputs(out, inputs)  # cli/serve.py: the input schema, escaped
    if evaluation is not None:
        verdict = "passed" if evaluation.passed else "FAILED"
        if evaluation.override:
            verdict += f", overridden by {evaluation.override.get('by')}"
        serve = "served" if evaluation.allows_serving else "REFUSED by the server"
        out.print(f"evaluation {c.esc(evaluation.statement[:12])}: {c.esc(verdict)} ({serve})")
        for line in evaluation.failed:
            out.print(f"  failed: {c.esc(line)}")
