"""``bastion artifact``: put files into the encrypted store and get them back, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

artifact_app = typer.Typer(
    help="The encrypted, content-addressed artifact store.", no_args_is_help=True
)


@artifact_app.command("put")
def put(
    path: Annotated[Path, typer.Argument(help="File to store.")],
    media_type: Annotated[str, typer.Option(help="Media type.")] = "application/octet-stream",
    name: Annotated[str | None, typer.Option(help="A name to show in listings.")] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Encrypt a file into the store; prints its SHA-256 digest (its address)."""
    from bastion.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with c.workspace(home) as ws:
        ref, statement = ws.put_artifact(path, media_type=media_type, name=name)
    data = {
        "digest": ref.digest,
        "size": ref.size,
        "media_type": ref.media_type,
        "name": ref.name,
        "statement": statement,
    }
    c.emit(data) if json_out else c.console().print(
        f"stored {c.esc(ref.name)}: sha256:{c.esc(ref.digest)}"
    )


@artifact_app.command("get")
def get(
    digest: Annotated[str, typer.Argument(help="The artifact's SHA-256 (hex).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it.")],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Decrypt and verify an artifact into a file (written only if it verifies)."""
    digest = digest.removeprefix("sha256:")
    with c.workspace(home) as ws:
        ws.get_artifact(digest, output)
    c.emit({"digest": digest, "output": str(output)}) if json_out else c.console().print(
        f"wrote {c.esc(output)}"
    )


@artifact_app.command("list")
def list_artifacts(home: c.Home = None, json_out: c.Json = False, debug: c.Debug = False) -> None:
    """List stored artifacts."""
    with c.workspace(home) as ws:
        refs = ws.list_artifacts()
    rows: list[dict[str, Any]] = [
        {
            "digest": r.digest,
            "size": r.size,
            "media_type": r.media_type,
            "name": r.name,
            "created": r.created,
            "created_by": r.created_by,
        }
        for r in refs
    ]
    if json_out:
        c.emit({"artifacts": rows})
        return
    from rich.table import Table

    table = Table("digest", "size", "media type", "name", "created", "by")
    for r in rows:
        table.add_row(
            c.esc(r["digest"][:16]) + "…",
            str(r["size"]),
            c.esc(r["media_type"]),
            c.esc(r["name"]),
            c.esc(r["created"]),
            c.esc(r["created_by"]),
        )
    c.console().print(table)
