"""The command tree: ``init`` and ``verify`` here, the groups in their own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli import _common as c
from bastion.cli.artifacts import artifact_app
from bastion.cli.audit import audit_app
from bastion.cli.blocks import blocks_app
from bastion.cli.data import data_app
from bastion.cli.evaluate import evaluate as evaluate_command
from bastion.cli.keys import keys_app
from bastion.cli.pipeline import data_flow, flow_text, models_app
from bastion.cli.pipeline import run as run_command
from bastion.cli.pipeline import schema as schema_command
from bastion.cli.runs import runs_app
from bastion.cli.serve import serve as serve_command
from bastion.cli.statements import statements_app
from bastion.cli.tokens import principal_app, token_app

app = typer.Typer(
    name="bastion",
    help="Bastion: a secure-by-default ML pipeline framework."
    " Every control runs, and proves it ran.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(artifact_app, name="artifact")
app.add_typer(audit_app, name="audit")
app.add_typer(blocks_app, name="blocks")
app.add_typer(data_app, name="data")
app.command("evaluate")(evaluate_command)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.command("run")(run_command)
app.command("schema")(schema_command)
app.command("serve")(serve_command)
app.add_typer(principal_app, name="principal")
app.add_typer(runs_app, name="runs")
app.add_typer(statements_app, name="statements")
app.add_typer(token_app, name="token")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("bastion-ml")  # the distribution's name (pyproject.toml)
        except PackageNotFoundError:  # run from a source tree without an install
            found = "unknown"
        typer.echo(f"bastion {found}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bastion: a secure-by-default ML pipeline framework. Every control runs, and proves
    it ran."""


@app.command()
def init(
    home: c.Home = None,
    admin: Annotated[str, typer.Option(help="Name of the first admin principal.")] = "admin",
    scrypt_log_n: Annotated[
        int, typer.Option(help="scrypt cost as log2(N); 17 = 128 MiB per unlock.", min=14, max=22)
    ] = 17,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Create a home: keyring, database, artifact store, audit log, and an admin token."""
    from bastion.workspace import Workspace

    ws, issued = Workspace.init(
        home, c.passphrase(confirm=True), admin=admin, scrypt_log_n=scrypt_log_n
    )
    try:
        where = str(ws.home.resolve())
    finally:
        ws.close()
    if json_out:
        c.emit(
            {
                "home": where,
                "admin": admin,
                "token": issued.token,
                "token_id": issued.id,
                "expires": issued.expires,
            }
        )
        return
    out = c.console()
    out.print(f"Initialised Bastion home at [bold]{c.esc(where)}[/] (mode 0700).")
    out.print(f"Admin principal [bold]{c.esc(admin)}[/]; its token, shown only this once:")
    out.print(issued.token, markup=False, highlight=False)
    out.print(
        f"Keep it safe (it expires {issued.expires}); export BASTION_TOKEN=<token> to use it."
    )


@app.command()
def verify(
    home: c.Home = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="An exported audit checkpoint to check against.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Verify one model (NAME:VERSION): signature and provenance chain."),
    ] = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Re-check every artifact, signed statement and the audit log; exit 1 on any failure."""
    if model is not None:
        _verify_model(home, model, json_out)
        return
    # a terminal: Rich progress; else one line per check on stderr as it ends
    with c.workspace(home) as ws, c.StageProgress("verify") as shown:
        report = ws.verify(checkpoint=checkpoint, progress=shown.check)  # authorized, audited
    if json_out:
        c.emit(
            {
                "ok": report.ok,
                "artifacts": report.artifacts,
                "statements": report.statements,
                "models": report.models,
                "audit_entries": report.audit_entries,
                "audit_checkpoints": report.audit_checkpoints,
                "problems": [
                    {"kind": p.kind, "subject": p.subject, "message": p.message}
                    for p in report.problems
                ],
            }
        )
    else:
        out = c.console()
        out.print(
            f"checked {report.artifacts} artifacts, {report.statements} statements,"
            f" {report.models} models,"
            f" {report.audit_entries} audit entries, {report.audit_checkpoints} checkpoints"
        )
        for p in report.problems:
            out.print(f"[red]FAIL[/] {c.esc(p.kind)} {c.esc(p.subject)}: {c.esc(p.message)}")
        if report.ok:
            out.print("[green]all verified[/]")
    if not report.ok:
        raise typer.Exit(1)


def _verify_model(home: Path | None, ref: str, json_out: bool) -> None:
    from bastion.errors import IntegrityError

    with c.workspace(home) as ws:
        try:
            verified = ws.verify_model(ref)  # authorized and audited, a failure too
        except IntegrityError as exc:
            if json_out:
                c.emit({"ok": False, "model": ref, "problems": [str(exc)]})
            else:
                c.console().print(f"[red]FAIL[/] {c.esc(exc)}")
            raise typer.Exit(1) from None
    stages = data_flow(verified.chain)
    if json_out:
        c.emit(
            {
                "ok": True,
                "model": verified.record.ref,
                "digest": verified.record.digest,
                "provenance": stages,
                "sources": verified.sources,
            }
        )
    else:
        c.console().print(
            f"[green]{c.esc(verified.record.ref)} verified[/]: signature, artifacts and"
            f" provenance {c.esc(flow_text(stages, len(verified.sources)))}"
        )
