"""Custom row checks: a small, safe expression language compiled to numpy.

:func:`compile_check` turns a :class:`~bastion.spec.config.CustomCheck` expression into
a :class:`CompiledCheck` whose :meth:`~CompiledCheck.failures` is one vectorised pass over
typed columns. Nothing is evaluated by Python: the text is parsed with :mod:`ast` (column
names in backticks are first replaced by placeholder identifiers) and every node is checked
against a short allow-list, then compiled to closures over numpy/pandas operations. No
``eval``, ``exec``, ``compile`` of code objects or ``pandas.eval``.

The language:

- a column: a bare identifier (``age``) or any name in backticks (```capital-gain```);
  it must be in the schema;
- constants: integers, floats, strings, ``True``, ``False``; ``None`` only as
  ``col == None`` / ``col != None`` (the same as ``is_null(col)`` / ``not_null(col)``);
- comparisons ``== != < <= > >=`` (chained too: ``0 <= a < b``), ``in`` / ``not in`` a
  list or tuple of constants;
- ``and``, ``or``, ``not``; ``+ - * / % **`` and unary ``-``/``+`` on numbers;
- ``is_null(col)`` and ``not_null(col)``.

Types are checked when the expression is compiled, against the schema: numbers (int and
float columns) compare with numbers, strings (str and category columns) with strings,
booleans with booleans; arithmetic needs numbers; ``and``/``or``/``not`` need conditions;
the whole expression must be a condition. Arithmetic is float64 (so ``1 / 0`` is ``inf`` and
``0 / 0`` is NaN, which compares false); comparisons of integers are exact.

Nulls follow SQL ``CHECK`` constraints: a comparison or arithmetic with a null operand is
*unknown*; ``and``/``or``/``not`` use three-valued logic (``false and unknown`` is false,
``true or unknown`` is true); a row **fails only when the expression is false**, so a row
whose operands are null passes. Use ``not_null(col)`` to require a value, e.g.
``not_null(`end`) and `end` >= `start```.

Every refusal is a :class:`~bastion.errors.ConfigError` naming the check, the column
(1-based character position) in the expression and what is allowed.

This module parses, type-checks and compiles; the text around parsing (backticks, positions,
how refused nodes are named) is :mod:`bastion.spec._expr_text`, and the numpy evaluation with
null masks and three-valued logic is :mod:`bastion.spec._expr_eval`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd

from bastion.errors import ConfigError
from bastion.spec._expr_eval import (
    Env,
    Fn,
    Val,
    arith,
    column_value,
    compare,
    isin,
    kleene_and,
    kleene_not,
    kleene_or,
    known_false,
)
from bastion.spec._expr_text import describe, fold_constant, is_none, op_text, substitute

if TYPE_CHECKING:
    from bastion.spec.config import ColumnSpec, CustomCheck

__all__ = ["ALLOWED", "CompiledCheck", "compile_check"]

ALLOWED = (
    "allowed: column names (in `backticks` when not identifiers), numbers, strings,"
    " True/False/None, == != < <= > >=, in/not in [constants], and/or/not,"
    " + - * / % **, is_null(col)/not_null(col)"
)
_MAX_DEPTH = 64
_MAX_SHOWN_COLUMNS = 20
_KIND = {"int": "num", "float": "num", "bool": "bool", "str": "str", "category": "str"}
_WHAT = {"num": "a number", "str": "a string", "bool": "a condition", "none": "None"}
_FUNCS = ("is_null", "not_null")
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Mod: np.remainder,
    ast.Pow: np.power,
}


@dataclass(frozen=True)
class CompiledCheck:
    """A compiled custom check; ``columns`` are the ones it reads, in order of first use."""

    name: str
    expr: str
    message: str
    columns: tuple[str, ...]
    uses_nulls: bool  # is_null / not_null (or == None) appears
    _fn: Fn = field(repr=False, compare=False)

    @property
    def check(self) -> str:
        """The check name in reports: ``custom:<name>``."""
        return f"custom:{self.name}"

    @property
    def expected(self) -> str:
        """What a failing row was expected to satisfy: the message, else the expression."""
        return self.message or self.expr

    def failures(self, typed: Mapping[str, pd.Series], n: int) -> np.ndarray:
        """Bool per row: the expression is false there (known false; unknown passes).

        ``typed`` maps each of :attr:`columns` to its typed values (int ``Int64``, float
        ``float64``, bool ``boolean``, str/category text), null where there is no value.
        """
        env = {c: column_value(typed[c]) for c in self.columns}
        with np.errstate(all="ignore"):
            out = self._fn(env)
        fails = known_false(out)
        return np.broadcast_to(fails, (n,)).copy() if np.ndim(fails) == 0 else fails


def compile_check(check: CustomCheck, schema: Mapping[str, ColumnSpec]) -> CompiledCheck:
    """Compile ``check.expr`` against ``schema``; ConfigError when it is not allowed."""
    return _Compiler(check.name, check.expr, {c: _KIND[s.type] for c, s in schema.items()}).run(
        check.message
    )


# -- parsing -------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, name: str, expr: str, kinds: Mapping[str, str]) -> None:
        self.name, self.expr, self.kinds = name, expr, kinds
        self.columns: dict[str, None] = {}
        self.uses_nulls = False
        self.text, self.origin, self.quoted = substitute(expr, self._fail)

    def run(self, message: str) -> CompiledCheck:
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            reason = (exc.msg or "invalid syntax").split(" (")[0]
            if not exc.offset or exc.lineno not in (None, 1):
                self._fail(f"not a valid expression ({reason}: it ends early)", len(self.expr) + 1)
            self._fail(f"not a valid expression ({reason})", self._at_char(exc.offset - 1))
        except (ValueError, RecursionError, MemoryError):
            self._fail("not a valid expression (too complex)", 1)
        self._limits(tree)
        kind, fn = self._node(tree.body)
        if not self.columns:
            self._fail("the expression uses no column", 1)
        if kind != "bool":
            self._fail(f"the expression is {_WHAT[kind]}, not a condition", 1)
        return CompiledCheck(
            self.name, self.expr, message, tuple(self.columns), self.uses_nulls, fn
        )

    # errors and positions

    def _fail(self, problem: str, column: int) -> NoReturn:
        raise ConfigError(
            f"check {self.name!r}: {problem} (column {column} of the expression); {ALLOWED}"
        )

    def _at_char(self, index: int) -> int:
        index = min(max(index, 0), len(self.origin) - 1)
        return self.origin[index] + 1

    def _pos(self, node: ast.AST) -> int:
        offset = getattr(node, "col_offset", 0)
        chars = len(self.text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
        return self._at_char(chars)

    def _limits(self, tree: ast.AST) -> None:
        stack: list[tuple[ast.AST, int]] = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > _MAX_DEPTH:
                self._fail(
                    f"the expression is too complex (more than {_MAX_DEPTH} levels)",
                    self._pos(node),
                )
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    # nodes

    def _node(self, node: ast.expr) -> tuple[str, Fn]:
        if isinstance(node, ast.Name):
            return self._column(node)
        if isinstance(node, ast.Constant):
            kind, value = self._constant(node)
            if kind == "none":
                self._fail(
                    "None is only allowed as `col == None` or `col != None`", self._pos(node)
                )
            return kind, lambda env: Val(kind, value)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        return self._fail(f"{describe(node)} is not allowed", self._pos(node))

    def _column_name(self, node: ast.Name) -> str:
        col = self.quoted.get(node.id, node.id)
        if col not in self.kinds:
            known = list(self.kinds)
            shown = ", ".join(known[:_MAX_SHOWN_COLUMNS])
            more = f", ... ({len(known)} columns)" if len(known) > _MAX_SHOWN_COLUMNS else ""
            raise ConfigError(
                f"check {self.name!r}: unknown column {col!r} (column {self._pos(node)} of the"
                f" expression); known columns: {shown}{more}"
            )
        self.columns.setdefault(col, None)
        return col

    def _column(self, node: ast.Name) -> tuple[str, Fn]:
        col = self._column_name(node)
        return self.kinds[col], lambda env: env[col]

    def _constant(self, node: ast.Constant) -> tuple[str, Any]:
        value = node.value
        if value is None:
            return "none", None
        if isinstance(value, bool):
            return "bool", np.bool_(value)
        if isinstance(value, int):
            if -(2**63) <= value < 2**63:
                return "num", np.int64(value)
            try:
                return "num", np.float64(float(value))
            except OverflowError:
                return self._fail("the number is too large", self._pos(node))
        if isinstance(value, float):
            return "num", np.float64(value)
        if isinstance(value, str):
            return "str", value
        return self._fail(f"{describe(node)} is not allowed", self._pos(node))

    def _unary(self, node: ast.UnaryOp) -> tuple[str, Fn]:
        op = node.op
        if isinstance(op, ast.Not):
            fn = self._expect(node.operand, "bool", "not")
            return "bool", lambda env: kleene_not(fn(env))
        if isinstance(op, ast.USub | ast.UAdd):
            if isinstance(node.operand, ast.Constant):
                kind, value = self._constant(node.operand)
                if kind == "num":
                    folded = -value if isinstance(op, ast.USub) else value
                    return "num", lambda env: Val("num", folded)
            fn = self._expect(node.operand, "num", "unary - and +")
            if isinstance(op, ast.UAdd):
                return "num", fn
            return "num", lambda env: arith(np.subtract, Val("num", np.int64(0)), fn(env))
        return self._fail("~ is not allowed", self._pos(node))

    def _binop(self, node: ast.BinOp) -> tuple[str, Fn]:
        ufunc = _ARITH.get(type(node.op))
        if ufunc is None:
            return self._fail(f"the operator {op_text(node.op)} is not allowed", self._pos(node))
        left = self._expect(node.left, "num", "arithmetic")
        right = self._expect(node.right, "num", "arithmetic")
        return "num", lambda env: arith(ufunc, left(env), right(env))

    def _boolop(self, node: ast.BoolOp) -> tuple[str, Fn]:
        parts = [self._expect(v, "bool", "and/or") for v in node.values]
        if isinstance(node.op, ast.And):
            return "bool", lambda env: kleene_and([p(env) for p in parts])
        return "bool", lambda env: kleene_or([p(env) for p in parts])

    def _compare(self, node: ast.Compare) -> tuple[str, Fn]:
        steps: list[Fn] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            steps.append(self._comparison(left, op, right, node))
            left = right
        if len(steps) == 1:
            return "bool", steps[0]
        return "bool", lambda env: kleene_and([s(env) for s in steps])

    def _comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr, at: ast.AST) -> Fn:
        if isinstance(op, ast.In | ast.NotIn):
            return self._membership(left, right, isinstance(op, ast.NotIn))
        cmp = _COMPARE.get(type(op))
        if cmp is None:
            return self._fail(
                f"the comparison {op_text(op)} is not allowed (use == or !=)", self._pos(at)
            )
        none_side = is_none(left) + 2 * is_none(right)
        if none_side:
            return self._none_compare(left, op, right, none_side, at)
        lkind, lfn = self._node(left)
        rkind, rfn = self._node(right)
        if lkind != rkind:
            return self._fail(f"compares {_WHAT[lkind]} with {_WHAT[rkind]}", self._pos(at))
        if lkind == "bool" and cmp not in (operator.eq, operator.ne):
            return self._fail("conditions compare only with == and !=", self._pos(at))
        return lambda env: compare(cmp, lfn(env), rfn(env))

    def _none_compare(
        self, left: ast.expr, op: ast.cmpop, right: ast.expr, side: int, at: ast.AST
    ) -> Fn:
        other = right if side == 1 else left
        if side == 3 or not isinstance(other, ast.Name) or not isinstance(op, ast.Eq | ast.NotEq):
            return self._fail(
                "None is only allowed as `col == None` or `col != None`", self._pos(at)
            )
        return self._null_test(other, want_null=isinstance(op, ast.Eq))

    def _membership(self, left: ast.expr, right: ast.expr, negate: bool) -> Fn:
        if not isinstance(right, ast.List | ast.Tuple):
            return self._fail(
                "in/not in needs a list of constants, e.g. `x` in ['a', 'b']", self._pos(right)
            )
        lkind, lfn = self._node(left)
        values: list[Any] = []
        for elt in right.elts:
            value = fold_constant(elt)
            if value is None:
                return self._fail("in/not in needs a list of constants", self._pos(elt))
            kind, const = self._constant(value)
            if kind != lkind:
                return self._fail(
                    f"the list holds {_WHAT[kind]} but is tested against {_WHAT[lkind]}",
                    self._pos(elt),
                )
            values.append(const)
        return lambda env: isin(lfn(env), values, negate)

    def _call(self, node: ast.Call) -> tuple[str, Fn]:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in _FUNCS:
            return self._fail(
                "calls are not allowed, except is_null(col) and not_null(col)", self._pos(node)
            )
        if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
            return self._fail(f"{func.id}() takes one column name", self._pos(node))
        return "bool", self._null_test(node.args[0], want_null=func.id == "is_null")

    def _null_test(self, node: ast.Name, *, want_null: bool) -> Fn:
        col = self._column_name(node)
        self.uses_nulls = True

        def test(env: Env) -> Val:
            null = env[col].null
            mask = np.zeros((), dtype=bool) if null is None else null
            return Val("bool", mask if want_null else ~mask)

        return test

    def _expect(self, node: ast.expr, kind: str, where: str) -> Fn:
        got, fn = self._node(node)
        if got != kind:
            self._fail(f"{where} needs {_WHAT[kind]}, got {_WHAT[got]}", self._pos(node))
        return fn
