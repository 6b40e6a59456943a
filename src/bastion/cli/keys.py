"""``bastion keys``: list, rotate and export (public halves only) the keyring."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

keys_app = typer.Typer(help="Key-encryption, signing and pseudonym keys.", no_args_is_help=True)


@keys_app.command("list")
def list_keys(home: c.Home = None, json_out: c.Json = False, debug: c.Debug = False) -> None:
    """List keys (ids, kinds, states; never material)."""
    with c.workspace(home) as ws:
        keys, in_use = ws.list_keys()
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
            c.esc(r["id"]),
            c.esc(r["kind"]),
            c.esc(r["state"]),
            c.esc(r["created"]),
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
    with c.workspace(home) as ws, c.progress() as bar:
        task = bar.add_task("re-wrapping data keys", total=None)

        def step(name: str, done: int, total: int) -> None:
            if name == "rewrapped":
                bar.update(task, completed=done, total=total)

        report = ws.rotate_keys(signing=signing, pseudonym=pseudonym, progress=step)
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
            c.esc(
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
        )


@keys_app.command("export")
def export(
    public: Annotated[
        bool, typer.Option("--public", help="Export the public signing keys (required).")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="pem or jwk (a JWK set).")] = "pem",
    key: Annotated[str | None, typer.Option(help="Only this key id.")] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Print the signing keys' public halves, current and rotated, for verifying statements
    and checkpoints outside Bastion (docs/verify-outside.md). Private keys never leave."""
    from bastion.errors import ConfigError, NotFound

    if not public:
        raise ConfigError("--public: required; only public keys can be exported")
    if fmt not in ("pem", "jwk"):
        raise ConfigError(f"--format: expected pem or jwk, got {fmt!r}")
    with c.workspace(home) as ws:
        states, pems, jwks = ws.public_keys()
    if key is not None:
        if key not in states:
            raise NotFound(f"--key: no signing key {key!r} in the keyring")
        states = {key: states[key]}
    jwks = [j for j in jwks if j["kid"] in states]
    if json_out:
        c.emit(
            {
                "keys": [
                    {"kid": kid, "state": state, "pem": pems[kid]} for kid, state in states.items()
                ],
                "jwks": {"keys": jwks},
            }
        )
    elif fmt == "jwk":
        sys.stdout.write(json.dumps({"keys": jwks}, indent=2) + "\n")
    else:  # RFC 7468: text outside the BEGIN/END lines is ignored by PEM readers
        sys.stdout.write(
            "".join(f"# {kid} ({state})\n{pems[kid]}" for kid, state in states.items())
        )
