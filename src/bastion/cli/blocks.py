"""``bastion blocks``: principals the server blocked, and lifting a block (``serve:admin``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli import _common as c

__all__ = ["blocks_app"]

blocks_app = typer.Typer(
    help="Principals the server blocked (extraction suspected): list and lift.",
    no_args_is_help=True,
)


def _detail(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(detail.items()))


@blocks_app.command("list")
def list_blocks(
    all_blocks: Annotated[
        bool, typer.Option("--all", help="Lifted blocks too, not only the active ones.")
    ] = False,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """List the active blocks (with --all, the lifted ones too), oldest first."""
    with c.workspace(home) as ws:
        rows = [b.as_dict() for b in ws.blocks.list(active_only=not all_blocks)]
    if json_out:
        c.emit({"blocks": rows})
        return
    if not rows:
        c.console().print("no blocks" if all_blocks else "no active blocks")
        return
    from rich.table import Table

    columns = ["id", "principal", "code", "created", "created_by", "detail", "lifted"]
    table = Table(*columns)
    for r in rows:
        lifted = f"{r['lifted']} by {r['lifted_by']}: {r['lift_reason']}" if r["lifted"] else "-"
        table.add_row(
            *(c.esc(r[k]) for k in columns[:5]), c.esc(_detail(r["detail"])), c.esc(lifted)
        )
    c.console().print(table)


@blocks_app.command("lift")
def lift(
    block_id: Annotated[
        str, typer.Argument(help="The block's id (the client's 403 names it as block_id).")
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the block is lifted (kept in the audit log).")
    ],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Lift a block: a running server lets the principal in again within seconds."""
    with c.workspace(home) as ws:
        lifted = ws.blocks.lift(block_id, reason=reason).as_dict()
    if json_out:
        c.emit({"lifted": lifted})
        return
    c.console().print(
        c.esc(f"lifted block {lifted['id']} of {lifted['principal']} ({lifted['code']})")
    )
