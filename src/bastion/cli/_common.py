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


def print_gates(out: Any, gates: list[dict[str, Any]]) -> None:
    """The gates table: stage, gate, value (``-`` when not measured), threshold, result."""
    from rich.table import Table

    if not gates:
        return
    table = Table("stage", "gate", "value", "threshold", "result", title="gates")
    for g in gates:
        value = g.get("value")
        table.add_row(
            esc(g.get("stage", "")),
            esc(g.get("gate")),
            "-" if value is None else f"{value:.4f}",
            esc(g.get("threshold")),
            "[green]pass[/]" if g.get("passed") else "[red]FAIL[/]",
        )
    out.print(table)


class StageProgress:
    """What long commands show while they work, on stderr: a Rich progress display (the
    current stage, and the steps a stage reports inside it) when stderr is a terminal;
    otherwise one plain line per stage as it ends (``stage ingest.train: done in 1.23 s``,
    ``cached``, ``FAILED after 0.40 s``), so logs and CI show where a run is.

    ``stage(name, state, index, total)`` is the runner's ``progress`` callback,
    ``step(name, done, total, what)`` its ``steps`` one; for ``bastion verify``,
    ``check(name, done, total)`` reports each check (a line when it ends)."""

    def __init__(self, what: str = "stage") -> None:
        self.what = what
        self.bar = progress() if err_console().is_terminal else None
        self.started: dict[str, float] = {}
        self.current: str | None = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> StageProgress:
        if self.bar is not None:
            self.bar.__enter__()
            self.tasks["main"] = self.bar.add_task(self.what, total=None)
            self.tasks["step"] = self.bar.add_task("", total=None, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._end(self.current, "done")
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _line(self, name: str, state: str) -> None:
        import time

        took = time.perf_counter() - self.started.pop(name, time.perf_counter())
        text = {
            "done": f"done in {took:.2f} s",
            "cached": "cached",
            "failed": f"FAILED after {took:.2f} s",
        }[state]
        print(f"{self.what} {name}: {text}", file=sys.stderr, flush=True)

    def _end(self, name: str | None, state: str) -> None:
        if name is not None and self.bar is None and (name in self.started or state == "cached"):
            self._line(name, state)

    def stage(self, name: str, state: str, index: int, total: int) -> None:
        import time

        if state == "running":
            self.started[name] = time.perf_counter()
            self.current = name
        elif self.current == name:
            self.current = None
        if self.bar is None:
            if state != "running":
                self._end(name, state)
            return
        label = {"running": "running", "cached": "cached ", "done": "done   ", "failed": "FAILED "}
        done = index + (0 if state == "running" else 1)
        self.bar.update(
            self.tasks["main"],
            description=f"{label[state]} {esc(name)}",
            completed=done,
            total=total,
        )
        self.bar.update(self.tasks["step"], visible=False)

    def step(self, name: str, done: int, total: int, what: str) -> None:
        if self.bar is None:
            return
        self.bar.update(
            self.tasks["step"],
            description=f"  {esc(name)}: {esc(what)}",
            completed=done,
            total=total or None,
            visible=True,
        )

    def check(self, name: str, done: int, total: int) -> None:
        """A ``Workspace.verify`` step: a new name ends the one before it."""
        import time

        if name != self.current:
            self._end(self.current, "done")
            self.current = name
            self.started[name] = time.perf_counter()
        if self.bar is not None:
            self.bar.update(
                self.tasks["main"],
                description=f"verify {esc(name)}",
                completed=done,
                total=total or None,
            )
