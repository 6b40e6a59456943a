"""Masking: how a data value may appear in a message, finding or report.

:func:`mask` stars out most of a value (never the value itself); :func:`shown` is what
every message uses: the value when its column is in ``data.show_values``, else its mask.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from bastion.defenses.pii._shapes import IPV4, ISO_DATE

__all__ = ["mask", "shown"]

_MASK_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@((?:[A-Za-z0-9\-]+\.)+)([A-Za-z]{2,24})")
_MASK_IPV4 = re.compile(IPV4)
_MASK_ISO_DATE = re.compile(ISO_DATE)


def shown(column: str, value: object, show: Collection[str] = ()) -> str:
    """A data value as a message, finding or report may hold it: ``repr`` of the value when
    ``column`` is in ``show`` (the pipeline's ``data.show_values``), else ``repr`` of its
    :func:`mask`; ``null`` for a missing one."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return repr(value) if column in show else repr(mask(str(value)))


def mask(value: str) -> str:
    """``value`` with most of it starred out, for messages: never the value itself.

    Emails keep the first letter of the user and of the domain, and the top-level domain
    (``j***@e***.com``); dates keep the year (``1987-**-**``); IPv4 addresses the first
    number; words the first letter of each word of two letters or more (``J*** S****``);
    other values the last 4 of 8-11 letters and digits, the first one and the last 4 of 12
    or more (``4***********1111``), the last 2 of 5-7. Nothing is kept of a value with 4
    letters and digits or fewer. Punctuation stays; a value with no letter or digit
    becomes ``***``.
    """
    text = str(value)
    email = _MASK_EMAIL.fullmatch(text)
    if email:
        return f"{email[1][0]}***@{email[2][0]}***.{email[3]}"
    where = [i for i, ch in enumerate(text) if ch.isalnum()]
    if not where:
        return "***"
    if len(where) <= 4:
        keep: set[int] = set()
    elif _MASK_IPV4.fullmatch(text):
        keep = set(range(text.index(".")))
    elif _MASK_ISO_DATE.fullmatch(text):
        keep = set(where[:4])
    elif not any(ch.isdigit() for ch in text):
        keep = {
            i
            for i in where
            if (i == 0 or not text[i - 1].isalnum()) and i + 1 < len(text) and text[i + 1].isalnum()
        }
    else:
        n = len(where)
        tail = 4 if n >= 8 else 2 if n >= 5 else 0
        keep = set(where[n - tail :]) | set(where[: 1 if n >= 12 else 0])
    return "".join(ch if i in keep or not ch.isalnum() else "*" for i, ch in enumerate(text))
