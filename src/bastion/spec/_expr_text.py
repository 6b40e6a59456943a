"""The text of a custom check's expression (see :mod:`bastion.spec.expr`) around parsing:
backticked column names swapped for placeholder identifiers with each character's original
position kept (:func:`substitute`), how a refused node or operator is named in messages
(:func:`describe`, :func:`op_text`), and the constants the compiler folds (:func:`is_none`,
:func:`fold_constant`)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import NoReturn

__all__ = ["describe", "fold_constant", "is_none", "op_text", "substitute"]


def substitute(
    expr: str, fail: Callable[[str, int], NoReturn]
) -> tuple[str, list[int], dict[str, str]]:
    """Replace each ```name``` by a placeholder identifier (outside string literals).

    Returns the text to parse, the original index of each of its characters, and the
    placeholders. Newlines and tabs outside strings become spaces; leading spaces go.
    """
    prefix = "_bq"
    while prefix in expr:
        prefix += "_"
    out: list[str] = []
    origin: list[int] = []
    quoted: dict[str, str] = {}
    names: dict[str, str] = {}
    i, quote = 0, ""
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            origin.append(i)
            if ch == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                origin.append(i + 1)
                i += 2
                continue
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "`":
            end = expr.find("`", i + 1)
            if end < 0:
                fail("a backtick is not closed", i + 1)
            name = expr[i + 1 : end]
            if not name:
                fail("empty backticks", i + 1)
            if name not in names:
                names[name] = f"{prefix}{len(names)}"
                quoted[names[name]] = name
            piece = f" {names[name]} "
            out.extend(piece)
            origin.extend([i] * len(piece))
            i = end + 1
            continue
        elif ch in "\n\r\t\f\v":
            ch = " "
        out.append(ch)
        origin.append(i)
        i += 1
    text = "".join(out)
    lead = len(text) - len(text.lstrip(" "))
    origin = origin[lead:] or [0]
    return text[lead:], origin, quoted


def describe(node: ast.AST) -> str:
    names = {
        "Attribute": "attribute access (a.b)",
        "Subscript": "indexing (a[...])",
        "Lambda": "lambda",
        "IfExp": "if/else",
        "NamedExpr": "assignment (:=)",
        "JoinedStr": "an f-string",
        "FormattedValue": "an f-string",
        "Starred": "*",
        "Dict": "a dict",
        "Set": "a set",
        "List": "a list (only after in/not in)",
        "Tuple": "a tuple (only after in/not in)",
        "ListComp": "a comprehension",
        "SetComp": "a comprehension",
        "DictComp": "a comprehension",
        "GeneratorExp": "a generator",
        "Await": "await",
        "Yield": "yield",
        "YieldFrom": "yield",
        "Slice": "a slice",
        "Constant": "this constant",
    }
    kind = type(node).__name__
    return names.get(kind, kind)


def op_text(op: ast.AST) -> str:
    return {
        "FloorDiv": "//",
        "MatMult": "@",
        "LShift": "<<",
        "RShift": ">>",
        "BitOr": "|",
        "BitXor": "^",
        "BitAnd": "&",
        "Is": "is",
        "IsNot": "is not",
    }.get(type(op).__name__, type(op).__name__)


def is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def fold_constant(node: ast.expr) -> ast.Constant | None:
    """A constant, or a negated/plus number constant folded into one."""
    if isinstance(node, ast.Constant):
        return node
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        value = node.operand.value
        folded = ast.Constant(-value if isinstance(node.op, ast.USub) else value)
        return ast.copy_location(folded, node)
    return None
