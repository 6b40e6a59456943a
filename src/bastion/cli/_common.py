"""Options, output and workspace helpers shared by the commands.

Output rule: the consoles below are made with ``emoji=False`` and ``highlight=False``,
and every user- or data-supplied string (a model, stage, principal or file name, an audit
field) goes through :func:`esc` before Rich sees it, so ``:train:`` stays ``:train:`` and
``[red]x[/]`` is printed as typed, never as markup.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bastion.workspace import Identity, Workspace

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="BASTION_HOME", help="The home folder [default: ./.bastion]."),
]


def emit(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def esc(value: object) -> str:
    """``value`` as text that Rich prints literally (markup escaped)."""
    from rich.markup import escape

    return escape("" if value is None else str(value))


def console() -> Any:
    from rich.console import Console

    return Console(emoji=False, highlight=False)


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, emoji=False, highlight=False)


def passphrase(*, confirm: bool = False) -> str:
    """From ``BASTION_MASTER_KEY``, else an interactive prompt; never a default."""
    from bastion.errors import ConfigError, StateError

    value = os.environ.get("BASTION_MASTER_KEY")
    if value:
        return value
    if not sys.stdin.isatty():
        raise StateError("no passphrase: set BASTION_MASTER_KEY or run in a terminal")
    value = getpass.getpass("Bastion passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != value:
        raise ConfigError("passphrase: the two entries differ")
    return value


def token() -> str:
    """The caller's API token (``BASTION_TOKEN`` or ``BASTION_TOKEN_FILE``), read by the
    library's :func:`bastion.workspace.token_from_env`."""
    from bastion.workspace import token_from_env

    return token_from_env()


@contextlib.contextmanager
def workspace(home: Path | None) -> Iterator[Workspace]:
    """Open the home as the caller (passphrase and token); always close it (flushing the
    audit log). The token is read before the passphrase is asked for."""
    from bastion.workspace import Workspace

    caller = token()
    ws = Workspace.open(home, passphrase(), token=caller)
    try:
        yield ws
    finally:
        ws.close()


@contextlib.contextmanager
def authorized(
    home: Path | None,
    permission: str,
    *,
    resource_type: str | None = None,
    resource: str | None = None,
) -> Iterator[tuple[Workspace, Identity]]:
    """Open the home as the caller and check ``permission`` with
    :meth:`bastion.workspace.Workspace.authorize` (the API's and the server's path too;
    a refusal is audited there)."""
    with workspace(home) as ws:
        yield ws, ws.authorize(permission, resource_type=resource_type, resource=resource)


def progress() -> Any:
    """A Rich progress bar on stderr, for long work."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console(),
        transient=True,
    )
