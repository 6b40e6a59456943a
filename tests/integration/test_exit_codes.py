"""Every command keeps the exit-code classes of the README: 0 ok, 1 a check, gate or access
failed, 2 bad usage or input.

The command tree is walked, so a new command without its cases fails
:func:`test_every_command_has_its_cases`. Each command gets one case of bad usage or input
(2), one of a failed check or refused access (1) where it can fail one, and a success (0)
where that is cheap. Most run in-process (``bastion.cli.main``) on one copy of the shared
Adult home; ``serve`` runs in a subprocess, since it would bind a port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import PASSPHRASE, Home, copy_home, run_cli
from tests.helpers.adult import DATA, EXAMPLE
from tests.helpers.cli import invoke

BAD_TOKEN = "bst_0123456789abcdef_" + "A" * 43  # well formed, never issued: refused (1)


@dataclass
class Ctx:
    home: Home
    tmp: Path

    def file(self, name: str) -> str:
        return str(self.tmp / name)


Argv = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    argv: Argv
    env: str = "admin"  # admin | bad-token | new-home
    subprocess: bool = False


def _same(argv: list[str]) -> Argv:
    return lambda _ctx: argv


def _denied(argv: list[str]) -> Case:
    """A well-formed command with a token that was never issued: access failed."""
    return Case(_same(argv), env="bad-token")


def _unknown_option(path: tuple[str, ...]) -> Case:
    return Case(_same([*path, "--no-such-option"]))


# command path → {expected exit code: case}
CASES: dict[tuple[str, ...], dict[int, Case]] = {
    ("init",): {
        2: Case(_same(["init", "--scrypt-log-n", "14"])),  # the home already exists
        0: Case(_same(["init", "--scrypt-log-n", "14", "--json"]), env="new-home"),
    },
    ("verify",): {
        2: Case(_same(["verify", "--model", "Not A Ref!"])),
        1: _denied(["verify"]),
        0: Case(_same(["verify", "--model", "adult-income:1"])),
    },
    ("run",): {
        2: Case(_same(["run", "/no/such/pipeline.yaml"])),
        1: _denied(["run", str(EXAMPLE)]),
    },
    ("schema",): {2: _unknown_option(("schema",)), 0: Case(_same(["schema"]))},
    ("serve",): {
        2: Case(_same(["serve", "adult-income"]), subprocess=True),  # no TLS choice made
        1: Case(
            _same(["serve", "adult-income", "--unsafe-no-tls", "--port", "0"]),
            env="bad-token",
            subprocess=True,
        ),
    },
    ("artifact", "put"): {
        2: Case(_same(["artifact", "put", "/no/such/file"])),
        1: Case(lambda ctx: ["artifact", "put", ctx.file("blob.bin")], env="bad-token"),
        0: Case(lambda ctx: ["artifact", "put", ctx.file("blob.bin"), "--json"]),
    },
    ("artifact", "get"): {
        2: Case(lambda ctx: ["artifact", "get", "not-a-digest", "-o", ctx.file("out")]),
        1: Case(lambda ctx: ["artifact", "get", "0" * 64, "-o", ctx.file("o")], "bad-token"),
    },
    ("artifact", "list"): {
        2: _unknown_option(("artifact", "list")),
        1: _denied(["artifact", "list"]),
        0: Case(_same(["artifact", "list", "--json"])),
    },
    ("audit", "show"): {
        2: Case(_same(["audit", "show", "--since", "yesterday"])),
        1: _denied(["audit", "show"]),
        0: Case(_same(["audit", "show", "--limit", "3", "--json"])),
    },
    ("audit", "verify"): {
        2: _unknown_option(("audit", "verify")),
        1: _denied(["audit", "verify"]),
        0: Case(_same(["audit", "verify", "--json"])),
    },
    ("audit", "checkpoint"): {
        2: _unknown_option(("audit", "checkpoint")),
        1: _denied(["audit", "checkpoint"]),
    },
    ("blocks", "list"): {2: _unknown_option(("blocks", "list")), 1: _denied(["blocks", "list"])},
    ("blocks", "lift"): {
        2: Case(_same(["blocks", "lift", "no-such-block"])),  # no --reason
        1: _denied(["blocks", "lift", "no-such-block", "--reason", "a test"]),
    },
    ("data", "screen"): {
        2: Case(lambda ctx: ["data", "screen", ctx.file("people.csv")]),  # no --label
        1: Case(  # personal data found, with --strict: the check fails
            lambda ctx: ["data", "screen", ctx.file("people.csv"), "--label", "y", "--strict"]
        ),
    },
    ("data", "check"): {
        2: Case(lambda ctx: ["data", "check", ctx.file("adult.csv")]),  # no --pipeline
        1: Case(  # age 500 breaks the declared schema
            lambda ctx: [
                "data",
                "check",
                ctx.file("adult.csv"),
                "--pipeline",
                str(EXAMPLE),
                "--source",
                "train",
            ]
        ),
    },
    ("keys", "list"): {
        2: _unknown_option(("keys", "list")),
        1: _denied(["keys", "list"]),
        0: Case(_same(["keys", "list", "--json"])),
    },
    ("keys", "rotate"): {2: _unknown_option(("keys", "rotate")), 1: _denied(["keys", "rotate"])},
    ("keys", "export"): {
        2: Case(_same(["keys", "export"])),  # --public is required
        1: _denied(["keys", "export", "--public"]),
        0: Case(_same(["keys", "export", "--public"])),
    },
    ("models", "list"): {
        2: _unknown_option(("models", "list")),
        1: _denied(["models", "list"]),
        0: Case(_same(["models", "list", "--json"])),
    },
    ("evaluate",): {
        2: Case(_same(["evaluate", "Not A Ref!"])),
        1: _denied(["evaluate", "adult-income:1"]),
    },
    ("models", "approve"): {
        2: Case(_same(["models", "approve", "adult-income:1", "--reason", "short"])),
        1: _denied(["models", "approve", "adult-income:1", "--reason", "accepted by the board"]),
    },
    ("models", "show"): {
        2: Case(_same(["models", "show", "Not A Ref!"])),
        1: _denied(["models", "show", "adult-income:1"]),
    },
    ("principal", "add"): {
        2: Case(_same(["principal", "add", "Not A Name!"])),
        1: _denied(["principal", "add", "bob"]),
        0: Case(_same(["principal", "add", "exit-codes-alice"])),
    },
    ("principal", "grant"): {
        2: Case(_same(["principal", "grant", "admin", "--role", "no-such-role"])),
        1: _denied(["principal", "grant", "admin", "--role", "auditor"]),
    },
    ("principal", "disable"): {
        2: Case(_same(["principal", "disable", "no-such-principal"])),
        1: _denied(["principal", "disable", "admin"]),
    },
    ("principal", "list"): {
        2: _unknown_option(("principal", "list")),
        1: _denied(["principal", "list"]),
    },
    ("runs", "list"): {2: _unknown_option(("runs", "list")), 1: _denied(["runs", "list"])},
    ("runs", "show"): {
        2: Case(_same(["runs", "show", "no-such-run"])),
        1: _denied(["runs", "show", "no-such-run"]),
    },
    ("statements", "list"): {
        2: _unknown_option(("statements", "list")),
        1: _denied(["statements", "list"]),
    },
    ("statements", "export"): {
        2: Case(_same(["statements", "export", "f" * 64])),  # no such statement
        1: _denied(["statements", "export", "f" * 64]),
    },
    ("token", "create"): {
        2: Case(_same(["token", "create", "--role", "consumer", "--expires-in", "0d"])),
        1: _denied(["token", "create", "--role", "consumer"]),
    },
    ("token", "list"): {2: _unknown_option(("token", "list")), 1: _denied(["token", "list"])},
    ("token", "revoke"): {
        2: Case(_same(["token", "revoke", "bst0000"])),
        1: _denied(["token", "revoke", "0123456789abcdef"]),
    },
}


def _commands() -> set[tuple[str, ...]]:
    """Every runnable command of the real tree, as its path of names."""
    import typer

    from bastion.cli.app import app

    found: set[tuple[str, ...]] = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (Typer carries its own click)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.add(path)

    walk(typer.main.get_command(app), ())
    return found


def test_every_command_has_its_cases() -> None:
    commands = _commands()
    assert commands - set(CASES) == set(), "commands without exit-code cases"
    assert set(CASES) - commands == set(), "cases for commands that do not exist"
    for path, cases in CASES.items():
        assert 2 in cases, f"{' '.join(path)}: no bad-usage case"


@pytest.fixture(scope="module")
def ctx(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    """One copy of the shared Adult home (the cases change it), and the input files."""
    tmp = tmp_path_factory.mktemp("exit-codes")
    home = copy_home(adult_home, tmp / "home")
    (tmp / "blob.bin").write_bytes(b"exit codes\n" * 10)
    adult = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values="?").head(5)
    adult.loc[2, "age"] = 500
    adult.to_csv(tmp / "adult.csv", index=False, na_rep="?")
    people = pd.DataFrame(
        {
            "x": range(60),
            "email": [f"person{i}@example.org" for i in range(60)],
            "y": ["a", "b"] * 30,
        }
    )
    people.to_csv(tmp / "people.csv", index=False)
    return Ctx(home, tmp)


def _env(ctx: Ctx, kind: str) -> dict[str, str]:
    if kind == "bad-token":
        return ctx.home.env(BASTION_TOKEN=BAD_TOKEN)
    if kind == "new-home":
        env = ctx.home.env(BASTION_HOME=str(ctx.tmp / "new-home"))
        del env["BASTION_TOKEN"]
        return env
    return ctx.home.env()


_PARAMS = [
    pytest.param(path, code, id=f"{'-'.join(path)}-exit{code}")
    for path, cases in CASES.items()
    for code in sorted(cases, reverse=True)
]


@pytest.mark.parametrize(("path", "code"), _PARAMS)
def test_exit_code_class(
    path: tuple[str, ...],
    code: int,
    ctx: Ctx,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[path][code]
    argv, env = case.argv(ctx), _env(ctx, case.env)
    if case.subprocess:
        res = run_cli(argv, env, timeout=120)
    else:
        res = invoke(argv, env, monkeypatch, capsys)
    assert res.code == code, (argv, res.code, res.out[-2000:], res.err[-2000:])
    assert "Traceback" not in res.err
    if code:
        assert (res.out + res.err).strip(), "a failure says why"
        assert PASSPHRASE not in res.out + res.err and BAD_TOKEN not in res.out + res.err
