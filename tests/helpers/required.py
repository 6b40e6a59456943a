"""Whether a test that needs an outside component (a browser, PostgreSQL, mkdocs) must fail
instead of skipping when it is missing: with its ``BASTION_REQUIRE_<NAME>=1``, and always
on a CI machine (``CI`` set to anything but empty, ``0`` or ``false``), so CI never skips a
control because someone forgot a switch."""

from __future__ import annotations

import os

__all__ = ["required"]


def required(name: str) -> bool:
    """``BASTION_REQUIRE_<NAME>=1``, or ``CI`` is set (``name``: BROWSER, POSTGRES, DOCS)."""
    if os.environ.get(f"BASTION_REQUIRE_{name}") == "1":
        return True
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
