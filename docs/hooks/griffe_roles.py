"""Griffe extension: Sphinx roles in Bastion's docstrings become inline code.

Bastion's docstrings are reStructuredText (``double backticks``, ``:class:`X```). The
mkdocstrings ``sphinx`` style parses their fields but leaves the roles as text, so this
extension rewrites ``:role:`~a.b.C``` to ```C``` and ``:role:`a.b``` to ```a.b```, and
``literal`` to `literal`, and ``holds::`` (before a literal block) to ``holds:``, before the
docstring is rendered.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["SphinxRoles", "plain_markdown"]

_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+?)``")
_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)  # "holds::" then an indented block


def plain_markdown(text: str) -> str:
    """The docstring with its Sphinx roles and double-backtick literals as Markdown code."""

    def role(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        if short:
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return _BLOCK.sub(r"\1:", _LITERAL.sub(r"`\1`", _ROLE.sub(role, text)))


class SphinxRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`plain_markdown`."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_markdown(obj.docstring.value)
