"""``bastion token`` and ``bastion principal``: who may do what."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

token_app = typer.Typer(help="API tokens: shown once, stored only as hashes.", no_args_is_help=True)
principal_app = typer.Typer(
    help="People and services, and their role grants.", no_args_is_help=True
)

Role = Annotated[
    str,
    typer.Option(
        "--role",
        help="admin, data-steward, ml-engineer, approver, auditor or consumer.",
    ),
]
Deployment = Annotated[str | None, typer.Option(help="Limit to this deployment.")]
Model = Annotated[str | None, typer.Option(help="Limit to this model.")]
Dataset = Annotated[str | None, typer.Option(help="Limit to this dataset.")]

_DURATION = re.compile(r"^(\d+)([dhm])$")


def _duration(text: str) -> timedelta:
    from bastion.errors import ConfigError

    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"--expires-in: expected a duration like 90d, 12h or 30m, got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


def _scope(deployment: str | None, model: str | None, dataset: str | None) -> tuple[str, str]:
    from bastion.errors import ConfigError

    given = [
        (t, v) for t, v in (("deployment", deployment), ("model", model), ("dataset", dataset)) if v
    ]
    if len(given) > 1:
        raise ConfigError("scope: give at most one of --deployment, --model, --dataset")
    return given[0] if given else ("*", "*")


@token_app.command("create")
def create(
    role: Role,
    principal: Annotated[
        str | None,
        typer.Option(help="Owner of the token; a new service principal if omitted."),
    ] = None,
    deployment: Deployment = None,
    model: Model = None,
    dataset: Dataset = None,
    expires_in: Annotated[str, typer.Option(help="Lifetime, e.g. 90d, 12h, 30m.")] = "90d",
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Create a token for a role on a scope; the token is printed once."""
    ttl = _duration(expires_in)
    rtype, resource = _scope(deployment, model, dataset)
    with c.workspace(home) as ws:
        issued = ws.create_token(
            role,
            principal=principal,
            resource_type=rtype,
            resource=resource,
            expires_in=ttl,
            description=description,
        )
    if json_out:
        c.emit(
            {
                "token": issued.token,
                "id": issued.id,
                "principal": issued.principal,
                "role": issued.role,
                "resource_type": issued.resource_type,
                "resource": issued.resource,
                "expires": issued.expires,
            }
        )
        return
    out = c.console()
    out.print(
        c.esc(
            f"token {issued.id} for {issued.principal} ({issued.role} on"
            f" {issued.resource_type}:{issued.resource}), expires {issued.expires}; shown once:"
        )
    )
    out.print(issued.token, markup=False, highlight=False)


@token_app.command("list")
def list_tokens(
    principal: Annotated[str | None, typer.Option(help="Only this principal's.")] = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """List tokens (never their secrets)."""
    with c.workspace(home) as ws:
        rows = [_asdict(t) for t in ws.list_tokens(principal)]
    if json_out:
        c.emit({"tokens": rows})
        return
    from rich.table import Table

    if not rows:
        c.console().print("no tokens")
        return
    table = Table(*rows[0].keys())
    for r in rows:
        table.add_row(*(c.esc(v) for v in r.values()))
    c.console().print(table)


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `bastion token list`).")],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Revoke a token at once."""
    with c.workspace(home) as ws:
        ws.revoke_token(token_id)
    if json_out:
        c.emit({"revoked": token_id})
    else:
        c.console().print(f"revoked {c.esc(token_id)}")


@principal_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Principal name, e.g. alice or svc-scoring.")],
    kind: Annotated[str, typer.Option(help="person or service.")] = "person",
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Add a person or service."""
    with c.workspace(home) as ws:
        ws.add_principal(name, kind)
    c.emit({"added": name, "kind": kind}) if json_out else c.console().print(f"added {c.esc(name)}")


@principal_app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="Principal name.")],
    role: Role,
    deployment: Deployment = None,
    model: Model = None,
    dataset: Dataset = None,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Grant a role to a principal, on everything or on one deployment, model or dataset."""
    rtype, resource = _scope(deployment, model, dataset)
    with c.workspace(home) as ws:
        ws.grant(name, role, resource_type=rtype, resource=resource)
    data = {"principal": name, "role": role, "resource_type": rtype, "resource": resource}
    c.emit(data) if json_out else c.console().print(
        c.esc(f"granted {role} on {rtype}:{resource} to {name}")
    )


@principal_app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="Principal name.")],
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Disable a principal: all of its tokens stop working at once."""
    with c.workspace(home) as ws:
        ws.disable_principal(name)
    c.emit({"disabled": name}) if json_out else c.console().print(f"disabled {c.esc(name)}")


@principal_app.command("list")
def list_principals(home: c.Home = None, json_out: c.Json = False, debug: c.Debug = False) -> None:
    """List principals and their grants."""
    with c.workspace(home) as ws:
        found, granted = ws.principals()
    people = [_asdict(p) for p in found]
    grants = [_asdict(g) for g in granted]
    if json_out:
        c.emit({"principals": people, "grants": grants})
        return
    from rich.table import Table

    table = Table("principal", "kind", "disabled", "grants")
    for p in people:
        mine = [
            f"{g['role']}@{g['resource_type']}:{g['resource']}"
            for g in grants
            if g["principal"] == p["name"]
        ]
        table.add_row(
            c.esc(p["name"]), c.esc(p["kind"]), c.esc(p["disabled"]), c.esc(", ".join(mine))
        )
    c.console().print(table)
