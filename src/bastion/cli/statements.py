"""``bastion statements``: list the signed in-toto statements and export one as stored.

An exported envelope is the DSSE JSON exactly as Bastion signed and stored it, for checking
outside Bastion with the exported public keys (docs/verify-outside.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

statements_app = typer.Typer(
    help="Signed provenance statements (DSSE envelopes).", no_args_is_help=True
)


@statements_app.command("list")
def list_statements(home: c.Home = None, json_out: c.Json = False, debug: c.Debug = False) -> None:
    """List stored statements: id, payload type and signing key ids (payloads unread)."""
    rows: list[dict[str, Any]] = []
    with c.workspace(home) as ws:
        for sid, envelope in ws.list_statements():
            if isinstance(envelope, Exception):
                rows.append({"id": sid, "error": str(envelope)})
                continue
            rows.append(
                {
                    "id": sid,
                    "payload_type": envelope.get("payloadType"),
                    "keyids": [s.get("keyid") for s in envelope.get("signatures", [])],
                }
            )
    if json_out:
        c.emit({"statements": rows})
        return
    from rich.table import Table

    table = Table("id", "payload type", "key ids")
    for r in rows:
        table.add_row(
            c.esc(r["id"]),
            c.esc(r.get("payload_type") or r.get("error", "")),
            c.esc(", ".join(str(k) for k in r.get("keyids", []))),
        )
    c.console().print(table)


@statements_app.command("export")
def export(
    statement_id: Annotated[str, typer.Argument(help="The statement's id (64 hex digits).")],
    out: Annotated[
        Path | None, typer.Option(help="Write the envelope to this file, not stdout.")
    ] = None,
    home: c.Home = None,
    debug: c.Debug = False,
) -> None:
    """Print one statement's DSSE envelope as stored (JSON), for verification elsewhere."""
    with c.workspace(home) as ws:
        envelope = ws.get_statement(statement_id)
    text = json.dumps(envelope, indent=2, sort_keys=True) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
