"""Canonical JSON: the one encoder for every byte string Bastion hashes, MACs or signs.

Keys sorted, no whitespace (``separators=(",", ":")``), UTF-8. The default is strict:
non-ASCII text is written as itself (``ensure_ascii=False``), NaN and infinities are
refused (``allow_nan=False``) and an object JSON cannot encode raises ``TypeError``.

Formats fixed on disk before this module existed differ from the strict default in one
knob each; their bytes must never change, or stored signatures, MACs, digests and cache
keys stop matching. Each is named here so no caller picks its own options:

=============================  ==========  =========  =================================
format                         ``ascii``   ``nan``    ``default``
=============================  ==========  =========  =================================
signed statements (DSSE)       no          refused    none
keyring file MAC               yes         allowed    none
access-state MAC               no          allowed    none
audit leaf ``details``         no          refused    none
stored ``json`` stage outputs  no          refused    numpy scalars and arrays
release config digest          no          allowed    none
stage cache key, fingerprint   yes         allowed    ``str``
=============================  ==========  =========  =================================

(``nan`` and ``default`` only decide whether an odd value raises; they never change the
bytes of a value that encodes. ``ascii`` does: ``"é"`` is ``"\\u00e9"`` with it.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["canonical_json", "encoder"]

_ENCODERS: dict[tuple[bool, bool, Callable[[Any], Any] | None], json.JSONEncoder] = {}


def encoder(
    *,
    ascii: bool = False,
    allow_nan: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> json.JSONEncoder:
    """The shared canonical :class:`json.JSONEncoder` for these options (built once).

    For hot paths that encode many small documents: ``encoder().encode(doc)`` is
    :func:`canonical_json` without the final UTF-8 step.
    """
    key = (ascii, allow_nan, default)
    found = _ENCODERS.get(key)
    if found is None:
        found = json.JSONEncoder(
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=ascii,
            allow_nan=allow_nan,
            default=default,
        )
        _ENCODERS[key] = found
    return found


def canonical_json(
    obj: Any,
    *,
    ascii: bool = False,
    allow_nan: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> bytes:
    """``obj`` as canonical JSON bytes (see the module docstring for the options)."""
    return encoder(ascii=ascii, allow_nan=allow_nan, default=default).encode(obj).encode("utf-8")
