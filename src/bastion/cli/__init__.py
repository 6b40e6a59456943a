"""The ``bastion`` command: a thin shell over the Python API.

Commands parse, call :mod:`bastion`, and print. Errors are caught once, in :func:`main`:
a :class:`bastion.errors.Error` becomes a one-line message and its exit code (0 ok, 1 a
check failed, 2 bad usage or input); a traceback is shown only with ``--debug`` (or
``BASTION_DEBUG=1``). Heavy modules are imported inside the commands so that
``bastion --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bastion`` console script."""
    import typer

    from bastion.cli.app import app
    from bastion.errors import Error

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("BASTION_DEBUG") == "1"
    command = typer.main.get_command(app)
    try:
        # standalone mode: usage errors print click's message and exit 2 by themselves
        command.main(args=args, prog_name="bastion", standalone_mode=True)
    except Error as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        sys.exit(1)
