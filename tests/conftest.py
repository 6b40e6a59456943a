"""Fixtures shared by the whole suite: a real home on disk, a real PostgreSQL database,
and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.required import required

if TYPE_CHECKING:
    from bastion import Workspace

PASSPHRASE = "correct horse battery staple, for tests"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Home:
    """A real home for tests: the workspace, its admin token, and the env for the CLI."""

    path: Path
    token: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(
            BASTION_HOME=str(self.path), BASTION_MASTER_KEY=PASSPHRASE, BASTION_TOKEN=self.token
        )
        env.update(extra)
        return env

    def open(self, token: str | None = None) -> Workspace:
        """The home through the Python API, as this home's admin (or as ``token``)."""
        from bastion import Workspace

        return Workspace.open(self.path, PASSPHRASE, token=token or self.token)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def run_cli(
    args: list[str],
    env: dict[str, str],
    *,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> Result:
    """Run the real ``bastion`` command in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator:
    """An initialised workspace (cheap scrypt cost) and its admin token."""
    from bastion import Workspace

    ws, issued = Workspace.init(tmp_path / "home", PASSPHRASE, scrypt_log_n=14)
    ws.admin_token = issued.token  # type: ignore[attr-defined]
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A home made through the CLI's Python API, closed, ready for CLI subprocesses."""
    from bastion import Workspace

    ws, issued = Workspace.init(tmp_path / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    return Home(tmp_path / "home", issued.token)


def _postgres_server_url() -> str:
    return os.environ.get("BASTION_TEST_POSTGRES_URL", DEFAULT_PG)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on loopback, dropped afterwards.

    Skips with a reason when no server answers, unless BASTION_REQUIRE_POSTGRES=1 (CI),
    where a missing server is a failure.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    server = make_url(_postgres_server_url())
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"bastion_t_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if required("POSTGRES"):
            pytest.fail(f"PostgreSQL required but unreachable at {server.host}: {exc}")
        pytest.skip(f"PostgreSQL not reachable on loopback ({server.host}:{server.port})")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: SQLite in tmp_path, and a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return request.getfixturevalue("postgres_url")


@dataclass
class AdultRun:
    """The session's one run of the Adult example: its home, ``--json`` output and stderr."""

    home: Home
    result: dict
    stderr: str  # the run's progress lines


@pytest.fixture(scope="session")
def adult_run(tmp_path_factory: pytest.TempPathFactory) -> AdultRun:
    """ONE home where the Adult example ran once through the real CLI (adult-income:1),
    shared by the whole session, with what that run printed. Never change the home: tests
    that tamper work on a copy (``copy_home``)."""
    from bastion import Workspace
    from tests.helpers.adult import EXAMPLE

    root = tmp_path_factory.mktemp("adult-home")
    ws, issued = Workspace.init(root / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    home = Home(root / "home", issued.token)
    res = run_cli(["run", str(EXAMPLE), "--json"], home.env(), timeout=600)
    assert res.code == 0, res.err
    return AdultRun(home, res.json(), res.err)


@pytest.fixture(scope="session")
def adult_home(adult_run: AdultRun) -> Home:
    """The session's Adult home (see ``adult_run``). Never change it: tests that tamper
    work on a copy (``copy_home``)."""
    return adult_run.home


def copy_home(home: Home, dest: Path) -> Home:
    """A copy of ``home`` at ``dest`` (same passphrase and token), for a test to tamper with."""
    import shutil

    shutil.copytree(home.path, dest, ignore=shutil.ignore_patterns("tls"))
    return Home(dest, home.token)
