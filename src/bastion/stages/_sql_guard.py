"""The query a SQL source may run (see :mod:`bastion.stages.ingest`): ONE ``SELECT`` or
``WITH`` statement, checked under every combination of three quoting dialects
(:func:`check_read_only_query`), and handed to SQLAlchemy's ``text()`` literally, with no
``:name`` bind parameters (:func:`escape_binds`). Intent, not a sandbox: the database role
and the read-only connection do the rest."""

from __future__ import annotations

import re

from bastion.errors import ConfigError

__all__ = ["check_read_only_query", "escape_binds"]

_FORBIDDEN = frozenset(
    {
        "alter",
        "attach",
        "create",
        "delete",
        "detach",
        "drop",
        "grant",
        "insert",
        "into",
        "merge",
        "pragma",
        "revoke",
        "truncate",
        "update",
        "upsert",
        "vacuum",
    }
)


def check_read_only_query(query: str, *, source: str = "?") -> None:
    """Refuse anything but one ``SELECT``/``WITH`` statement (ConfigError).

    The query is tokenised under every combination of three dialect choices (backslash
    escapes and MySQL comment rules; ``$$`` strings; ``[bracketed]`` identifiers); any reading
    that sees a second statement, a data-changing keyword, an executable comment or an
    unterminated quote refuses it, so quoting tricks that hide a statement from one reading
    are caught by another.
    """
    for backslash in (False, True):
        for dollar in (False, True):
            for brackets in (False, True):
                problem = _lex_problem(query, backslash, dollar, brackets)
                if problem:
                    raise ConfigError(
                        f"source {source!r}: query refused: {problem}"
                        " (only a single SELECT or WITH statement is allowed)"
                    )


def _lex_problem(query: str, backslash: bool, dollar: bool, brackets: bool) -> str | None:
    single, double = (
        (r"'(?:[^'\\]|\\.|'')*'", r'"(?:[^"\\]|\\.|"")*"')
        if backslash
        else (r"'(?:[^']|'')*'", r'"(?:[^"]|"")*"')
    )
    dashes = r"--(?=\s)" if backslash else "--"  # MySQL: "--1" is minus minus one
    parts = [
        rf"(?P<skip>\s+|{dashes}[^\n]*(?:\n|$))",
        r"(?P<exec>/\*M?!)",
        r"(?P<skip2>/\*.*?\*/)",
        rf"(?P<str>{single}|{double}|`[^`]*`)",
    ]
    if dollar:
        parts.append(r"(?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)\$)")
    if brackets:
        parts.append(r"(?P<brk>\[[^\]]*\])")
    parts += [r"(?P<word>[A-Za-z_]\w*)", r"(?P<semi>;)", r"(?P<other>.)"]
    words: list[str] = []
    ended = False
    for m in re.finditer("|".join(parts), query, re.DOTALL):
        kind = m.lastgroup
        if kind in ("skip", "skip2"):
            continue
        if kind == "exec":
            return "MySQL executable comments (/*! */) are not allowed"
        if ended:
            return "more than one statement"
        if kind == "semi":
            ended = True
        elif kind == "word":
            words.append(m.group().lower())
        elif kind == "other" and m.group() in "'\"`":
            return "an unterminated quote"
    if not words or words[0] not in ("select", "with"):
        return "it does not start with SELECT or WITH"
    bad = sorted(_FORBIDDEN.intersection(words))
    return f"it contains {', '.join(w.upper() for w in bad)}" if bad else None


def escape_binds(query: str) -> str:
    """Make ``text()`` take the query literally: no ``:name`` bind parameters."""
    from sqlalchemy.sql.compiler import BIND_PARAMS, BIND_PARAMS_ESC

    query = BIND_PARAMS_ESC.sub(lambda m: "\\" + m.group(0), query)  # keep a literal \:x
    return BIND_PARAMS.sub(lambda m: "\\" + m.group(0), query)
