"""The ``bastion`` command in-process: ``bastion.cli.main`` with argv, its exit code and
what it printed (faster than a subprocess; the subprocess runs stay in ``run_cli``)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import Result

__all__ = ["invoke"]


def invoke(
    args: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Result:
    """Run ``bastion ARGS`` in this process with exactly the ``BASTION_*`` variables of
    ``env`` (others removed) and ``COLUMNS`` from it; 0 when it returned normally."""
    from bastion.cli import main

    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("BASTION_") or key == "COLUMNS":
            monkeypatch.setenv(key, value)
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return Result(code, out, err)
