"""Which environment variables a pipeline file may read: ``${NAME}`` in a SQL source URL.

A pipeline file is written by a pipeline author, who is not trusted with Bastion's own
secrets. So ``${NAME}`` expands only a variable the person running Bastion lists in
:data:`ALLOW_ENV` (comma-separated names, e.g. ``BASTION_ALLOW_ENV=PGUSER,PGPASSWORD``), and
never a ``BASTION_*`` variable (the passphrase, the token, the home), listed or not.
:func:`refusal` says why a name may not be used; the loader refuses such a reference when
the pipeline file loads (naming file, line and column) and ingest refuses it again before
connecting, for pipelines built without the loader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["ALLOW_ENV", "REFERENCE", "allowed", "refusal"]

#: The variable that lists the names a pipeline file may use in ``${NAME}``.
ALLOW_ENV = "BASTION_ALLOW_ENV"
#: A ``${NAME}`` reference.
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def allowed(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The names listed in ``BASTION_ALLOW_ENV`` (``BASTION_*`` names never count)."""
    env = os.environ if environ is None else environ
    names = (n.strip() for n in env.get(ALLOW_ENV, "").split(","))
    return frozenset(n for n in names if n and not n.upper().startswith("BASTION_"))


def refusal(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``${name}`` may not be expanded (one sentence, no value), or None if it may."""
    if name.upper().startswith("BASTION_"):
        return (
            f"environment variable {name} may not be used: BASTION_* variables hold Bastion's"
            " own secrets and are never expanded in a pipeline file, even if listed in"
            f" {ALLOW_ENV}; use another name"
        )
    if name not in allowed(environ):
        return (
            f"environment variable {name} is not allowed; to let pipeline files use it, add"
            f" it to {ALLOW_ENV} (comma-separated names), e.g. {ALLOW_ENV}={name}"
        )
    return None
