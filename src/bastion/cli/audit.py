"""``bastion audit``: page through, verify, checkpoint and export the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("show")
def show(
    home: c.Home = None,
    start: Annotated[int, typer.Option(help="First sequence number.", min=1)] = 1,
    limit: Annotated[int, typer.Option(help="Entries per page.", min=1, max=10000)] = 50,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Show a page of entries, oldest first, from --start."""
    with c.workspace(home) as ws:
        rows = ws.audit_entries(start=start, limit=limit, actor=actor, action=action)
    items: list[dict[str, Any]] = [
        {
            "seq": e.seq,
            "ts": e.ts,
            "actor": e.actor,
            "action": e.action,
            "resource": e.resource,
            "outcome": e.outcome,
            "details": e.details,
        }
        for e in rows
    ]
    next_start = rows[-1].seq + 1 if len(rows) == limit else None
    if json_out:
        c.emit({"entries": items, "next_start": next_start})
        return
    from rich.table import Table

    table = Table("seq", "time", "actor", "action", "resource", "outcome", "details")
    for e in items:
        table.add_row(
            str(e["seq"]),
            e["ts"],
            e["actor"],
            e["action"],
            e["resource"],
            e["outcome"],
            str(e["details"]),
        )
    out = c.console()
    out.print(table)
    if next_start:
        out.print(f"more: bastion audit show --start {next_start}")


@audit_app.command("verify")
def verify(
    home: c.Home = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint exported earlier; detects truncation and forks."),
    ] = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Check the hash chain, every signed checkpoint, the home's sealed anchor (deleted
    checkpoints, truncation, a rewritten history) and, if given, an exported checkpoint."""
    from bastion.errors import AuditChainError

    with c.workspace(home) as ws:
        try:
            report = ws.verify_audit(checkpoint=checkpoint)
        except AuditChainError as exc:
            problems = [str(p) for p in exc.problems] or [str(exc)]
            if json_out:
                c.emit({"ok": False, "problems": problems})
            else:
                out = c.console()
                for p in problems:
                    out.print(f"[red]FAIL[/] {c.esc(p)}")
            raise typer.Exit(1) from None
    if json_out:
        c.emit(
            {
                "ok": True,
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "root": report.root,
                "anchored": report.anchored_tree_size,
            }
        )
    else:
        anchored = report.anchored_tree_size
        c.console().print(
            f"[green]audit log verified[/]: {report.entries} entries,"
            f" {report.checkpoints} signed checkpoints, root {c.esc(report.root)}"
            + (f"; anchored at {anchored} entries" if anchored is not None else "")
        )


@audit_app.command("checkpoint")
def checkpoint(
    home: c.Home = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write the checkpoint to this file (keep it elsewhere)."),
    ] = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Sign a checkpoint (Merkle tree head) of the log now, and seal it as the home's anchor;
    refused when the log does not extend the anchor. Optionally export it."""
    with c.workspace(home) as ws:
        cp = ws.checkpoint(export=export)
    data = {
        "tree_size": cp.tree_size,
        "root": cp.root.hex(),
        "ts": cp.ts,
        "key_id": cp.key_id,
        "exported": str(export) if export else None,
    }
    if json_out:
        c.emit(data)
    else:
        c.console().print(
            f"checkpoint at {cp.tree_size} entries, root {data['root']}"
            + (f", exported to {c.esc(export)}" if export else "")
        )
