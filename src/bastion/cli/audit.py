"""``bastion audit``: page through, verify, checkpoint and export the audit log."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def when(option: str, text: str | None) -> datetime | None:
    """``--since``/``--until``: ISO 8601 (a naive time is UTC) or relative to now, as
    ``30m``, ``1h``, ``2d`` or ``1w`` ago; ConfigError (exit 2) naming the option."""
    from bastion.errors import ConfigError

    if text is None:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        return datetime.now(UTC) - timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option}: expected an ISO 8601 time (2026-01-31T12:00:00Z) or an age like"
            f" 30m, 1h, 2d, 1w; got {text!r}"
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@audit_app.command("show")
def show(
    home: c.Home = None,
    start: Annotated[
        int | None,
        typer.Option(
            help="Where the page begins: the highest seq shown (newest first) or the lowest"
            " (with --oldest-first).",
            min=1,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Entries per page.", min=1, max=10000)] = 50,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. model.predict.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only from this time: ISO 8601, or an age like 1h, 2d.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only before this time: ISO 8601, or an age like 1h.")
    ] = None,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Page from the first entry forwards.")
    ] = False,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Show a page of entries, newest first (filtered in the database, read from the end)."""
    after, before = when("--since", since), when("--until", until)
    with c.workspace(home) as ws:
        rows = ws.audit_entries(
            start=start,
            limit=limit,
            actor=actor,
            action=action,
            since=after,
            until=before,
            newest_first=not oldest_first,
        )
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
    next_start = None
    if len(rows) == limit:
        next_start = rows[-1].seq + 1 if oldest_first else rows[-1].seq - 1
    if json_out:
        c.emit({"entries": items, "next_start": next_start or None})
        return
    kept = [("--actor", actor), ("--action", action), ("--since", since), ("--until", until)]
    again = "".join(f" {flag} {shlex.quote(value)}" for flag, value in kept if value)
    _table(items, next_start, again + (" --oldest-first" if oldest_first else ""))


def _table(items: list[dict[str, Any]], next_start: int | None, again: str) -> None:
    """Readable at 80 columns: one line per entry, long cells cut with an ellipsis (seq,
    time and outcome never); details only in --json."""
    from rich.table import Table

    out = c.console()
    rows = [
        (
            str(e["seq"]),
            str(e["ts"])[:19].replace("T", " "),
            str(e["actor"]),
            str(e["action"]),
            str(e["resource"]),
            str(e["outcome"]),
        )
        for e in items
    ]
    widths = _widths(rows, out.width)
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold underline")
    names = ("seq", "time (UTC)", "actor", "action", "subject", "outcome")
    for name, width in zip(names, widths, strict=True):
        table.add_column(
            name,
            width=width,
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if name == "seq" else "left",
        )
    for row in rows:
        table.add_row(*(c.esc(cell) for cell in row))
    out.print(table)
    if not items:
        out.print("no entries")
    if next_start:  # the same filters, from the next entry on
        out.print(f"more: bastion audit show{c.esc(again)} --start {next_start}")


def _widths(rows: Sequence[tuple[str, ...]], total: int) -> list[int]:
    """Column widths that fit ``total``: seq, time and outcome whole; actor and action as
    wide as their longest cell up to 30% and 40% of the rest; the subject what remains."""

    def longest(i: int, floor: int) -> int:
        return max([floor, *(len(r[i]) for r in rows)])

    seq, outcome = longest(0, 3), longest(5, 7)
    free = max(24, total - seq - 19 - outcome - 2 * 5)
    actor = max(5, min(longest(2, 5), free * 30 // 100))
    action = max(6, min(longest(3, 6), free * 40 // 100))
    return [seq, 19, actor, action, max(7, free - actor - action), outcome]


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
