"""``bastion keys``: list and rotate the keyring."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli import _common as c

keys_app = typer.Typer(help="Key-encryption, signing and pseudonym keys.", no_args_is_help=True)


@keys_app.command("list")
def list_keys(home: c.Home = None, json_out: c.Json = False, debug: c.Debug = False) -> None:
    """List keys (ids, kinds, states; never material)."""
    with c.authorized(home, "keys:read") as (ws, _who):
        keys = ws.keyring.keys()
        in_use = ws.store.key_ids_in_use()
    rows: list[dict[str, Any]] = [
        {
            "id": k.id,
            "kind": k.kind,
            "state": k.state,
            "created": k.created,
            "blobs": in_use.get(k.id, 0) if k.kind == "kek" else None,
        }
        for k in keys
    ]
    if json_out:
        c.emit({"keys": rows})
        return
    from rich.table import Table

    table = Table("id", "kind", "state", "created", "blobs")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["state"],
            r["created"],
            "" if r["blobs"] is None else str(r["blobs"]),
        )
    c.console().print(table)


@keys_app.command("rotate")
def rotate(
    home: c.Home = None,
    signing: Annotated[bool, typer.Option(help="Also rotate the signing key.")] = False,
    pseudonym: Annotated[
        bool,
        typer.Option(
            help="Also rotate the pseudonym key: new pseudonyms no longer match earlier ones."
        ),
    ] = False,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """New KEK; re-wrap every artifact's data key (no data re-encrypted); retire unused KEKs."""
    with c.authorized(home, "keys:rotate") as (ws, who), c.progress() as bar:
        task = bar.add_task("re-wrapping data keys", total=None)

        def step(name: str, done: int, total: int) -> None:
            if name == "rewrapped":
                bar.update(task, completed=done, total=total)

        report = ws.rotate_keys(
            actor=who.principal, signing=signing, pseudonym=pseudonym, progress=step
        )
    data = {
        "new_kek": report.new_kek,
        "rewrapped": report.rewrapped,
        "retired": report.retired,
        "new_signing_key": report.new_signing_key,
        "new_pseudonym_key": report.new_pseudonym_key,
    }
    if json_out:
        c.emit(data)
    else:
        c.console().print(
            f"new KEK {report.new_kek}; re-wrapped {report.rewrapped} data keys;"
            f" retired {', '.join(report.retired) or 'none'}"
            + (f"; new signing key {report.new_signing_key}" if report.new_signing_key else "")
            + (
                f"; new pseudonym key {report.new_pseudonym_key}"
                " (earlier pseudonyms no longer match)"
                if report.new_pseudonym_key
                else ""
            )
        )
