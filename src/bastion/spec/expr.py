# Over 400 lines, because it is one language: parser, type checker and numpy compiler.
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
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd

from bastion.errors import ConfigError

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


@dataclass
class _Val:
    """A value during evaluation: ``data`` (array, Series or scalar) and its null mask."""

    kind: str  # num | str | bool
    data: Any
    null: np.ndarray | None = None  # None: never null


_Env = Mapping[str, _Val]
_Fn = Callable[[_Env], _Val]


@dataclass(frozen=True)
class CompiledCheck:
    """A compiled custom check; ``columns`` are the ones it reads, in order of first use."""

    name: str
    expr: str
    message: str
    columns: tuple[str, ...]
    uses_nulls: bool  # is_null / not_null (or == None) appears
    _fn: _Fn = field(repr=False, compare=False)

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
        env = {c: _column_value(typed[c]) for c in self.columns}
        with np.errstate(all="ignore"):
            out = self._fn(env)
        fails = _known_false(out)
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
        self.text, self.origin, self.quoted = _substitute(expr, self._fail)

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

    def _node(self, node: ast.expr) -> tuple[str, _Fn]:
        if isinstance(node, ast.Name):
            return self._column(node)
        if isinstance(node, ast.Constant):
            kind, value = self._constant(node)
            if kind == "none":
                self._fail(
                    "None is only allowed as `col == None` or `col != None`", self._pos(node)
                )
            return kind, lambda env: _Val(kind, value)
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
        return self._fail(f"{_describe(node)} is not allowed", self._pos(node))

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

    def _column(self, node: ast.Name) -> tuple[str, _Fn]:
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
        return self._fail(f"{_describe(node)} is not allowed", self._pos(node))

    def _unary(self, node: ast.UnaryOp) -> tuple[str, _Fn]:
        op = node.op
        if isinstance(op, ast.Not):
            fn = self._expect(node.operand, "bool", "not")
            return "bool", lambda env: _not(fn(env))
        if isinstance(op, ast.USub | ast.UAdd):
            if isinstance(node.operand, ast.Constant):
                kind, value = self._constant(node.operand)
                if kind == "num":
                    folded = -value if isinstance(op, ast.USub) else value
                    return "num", lambda env: _Val("num", folded)
            fn = self._expect(node.operand, "num", "unary - and +")
            if isinstance(op, ast.UAdd):
                return "num", fn
            return "num", lambda env: _arith(np.subtract, _Val("num", np.int64(0)), fn(env))
        return self._fail("~ is not allowed", self._pos(node))

    def _binop(self, node: ast.BinOp) -> tuple[str, _Fn]:
        ufunc = _ARITH.get(type(node.op))
        if ufunc is None:
            return self._fail(f"the operator {_op_text(node.op)} is not allowed", self._pos(node))
        left = self._expect(node.left, "num", "arithmetic")
        right = self._expect(node.right, "num", "arithmetic")
        return "num", lambda env: _arith(ufunc, left(env), right(env))

    def _boolop(self, node: ast.BoolOp) -> tuple[str, _Fn]:
        parts = [self._expect(v, "bool", "and/or") for v in node.values]
        if isinstance(node.op, ast.And):
            return "bool", lambda env: _and([p(env) for p in parts])
        return "bool", lambda env: _or([p(env) for p in parts])

    def _compare(self, node: ast.Compare) -> tuple[str, _Fn]:
        steps: list[_Fn] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            steps.append(self._comparison(left, op, right, node))
            left = right
        if len(steps) == 1:
            return "bool", steps[0]
        return "bool", lambda env: _and([s(env) for s in steps])

    def _comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr, at: ast.AST) -> _Fn:
        if isinstance(op, ast.In | ast.NotIn):
            return self._membership(left, right, isinstance(op, ast.NotIn))
        cmp = _COMPARE.get(type(op))
        if cmp is None:
            return self._fail(
                f"the comparison {_op_text(op)} is not allowed (use == or !=)", self._pos(at)
            )
        none_side = _is_none(left) + 2 * _is_none(right)
        if none_side:
            return self._none_compare(left, op, right, none_side, at)
        lkind, lfn = self._node(left)
        rkind, rfn = self._node(right)
        if lkind != rkind:
            return self._fail(f"compares {_WHAT[lkind]} with {_WHAT[rkind]}", self._pos(at))
        if lkind == "bool" and cmp not in (operator.eq, operator.ne):
            return self._fail("conditions compare only with == and !=", self._pos(at))
        return lambda env: _cmp(cmp, lfn(env), rfn(env))

    def _none_compare(
        self, left: ast.expr, op: ast.cmpop, right: ast.expr, side: int, at: ast.AST
    ) -> _Fn:
        other = right if side == 1 else left
        if side == 3 or not isinstance(other, ast.Name) or not isinstance(op, ast.Eq | ast.NotEq):
            return self._fail(
                "None is only allowed as `col == None` or `col != None`", self._pos(at)
            )
        return self._null_test(other, want_null=isinstance(op, ast.Eq))

    def _membership(self, left: ast.expr, right: ast.expr, negate: bool) -> _Fn:
        if not isinstance(right, ast.List | ast.Tuple):
            return self._fail(
                "in/not in needs a list of constants, e.g. `x` in ['a', 'b']", self._pos(right)
            )
        lkind, lfn = self._node(left)
        values: list[Any] = []
        for elt in right.elts:
            value = _fold_constant(elt)
            if value is None:
                return self._fail("in/not in needs a list of constants", self._pos(elt))
            kind, const = self._constant(value)
            if kind != lkind:
                return self._fail(
                    f"the list holds {_WHAT[kind]} but is tested against {_WHAT[lkind]}",
                    self._pos(elt),
                )
            values.append(const)
        return lambda env: _isin(lfn(env), values, negate)

    def _call(self, node: ast.Call) -> tuple[str, _Fn]:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in _FUNCS:
            return self._fail(
                "calls are not allowed, except is_null(col) and not_null(col)", self._pos(node)
            )
        if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
            return self._fail(f"{func.id}() takes one column name", self._pos(node))
        return "bool", self._null_test(node.args[0], want_null=func.id == "is_null")

    def _null_test(self, node: ast.Name, *, want_null: bool) -> _Fn:
        col = self._column_name(node)
        self.uses_nulls = True

        def test(env: _Env) -> _Val:
            null = env[col].null
            mask = np.zeros((), dtype=bool) if null is None else null
            return _Val("bool", mask if want_null else ~mask)

        return test

    def _expect(self, node: ast.expr, kind: str, where: str) -> _Fn:
        got, fn = self._node(node)
        if got != kind:
            self._fail(f"{where} needs {_WHAT[kind]}, got {_WHAT[got]}", self._pos(node))
        return fn


def _substitute(
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


def _describe(node: ast.AST) -> str:
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


def _op_text(op: ast.AST) -> str:
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


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _fold_constant(node: ast.expr) -> ast.Constant | None:
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


# -- evaluation ----------------------------------------------------------------------------


def _column_value(values: pd.Series) -> _Val:
    null = values.isna().to_numpy(dtype=bool)
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _Val("bool", values.to_numpy(dtype=bool, na_value=False), null)
    if pd.api.types.is_integer_dtype(dtype):
        return _Val("num", values.to_numpy(dtype="int64", na_value=0), null)
    if pd.api.types.is_numeric_dtype(dtype):
        return _Val("num", values.to_numpy(dtype="float64", na_value=np.nan), null)
    if not isinstance(dtype, pd.StringDtype):
        values = values.astype("str")
    return _Val("str", values, null)


def _either(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b


def _as_bool(data: Any) -> Any:
    if isinstance(data, pd.Series):
        return data.to_numpy(dtype=bool, na_value=False)
    return np.asarray(data, dtype=bool) if isinstance(data, np.ndarray) else np.bool_(data)


def _cmp(cmp: Callable[[Any, Any], Any], a: _Val, b: _Val) -> _Val:
    return _Val("bool", _as_bool(cmp(a.data, b.data)), _either(a.null, b.null))


def _arith(ufunc: Callable[[Any, Any], Any], a: _Val, b: _Val) -> _Val:
    x = np.asarray(a.data, dtype="float64")
    y = np.asarray(b.data, dtype="float64")
    return _Val("num", ufunc(x, y), _either(a.null, b.null))


def _isin(a: _Val, values: Sequence[Any], negate: bool) -> _Val:
    if isinstance(a.data, pd.Series):
        hit = a.data.isin(list(values)).to_numpy(dtype=bool, na_value=False)
    else:
        hit = np.isin(a.data, np.asarray(values)) if values else np.zeros_like(a.data, bool)
    return _Val("bool", ~hit if negate else hit, a.null)


def _not(a: _Val) -> _Val:
    return _Val("bool", np.logical_not(a.data), a.null)


def _and(parts: list[_Val]) -> _Val:
    known_false: Any = np.bool_(False)
    any_null: Any = np.bool_(False)
    for p in parts:
        null = np.bool_(False) if p.null is None else p.null
        known_false = known_false | (~p.data & ~null)
        any_null = any_null | null
    return _Val("bool", ~known_false, ~known_false & any_null)


def _or(parts: list[_Val]) -> _Val:
    known_true: Any = np.bool_(False)
    any_null: Any = np.bool_(False)
    for p in parts:
        null = np.bool_(False) if p.null is None else p.null
        known_true = known_true | (p.data & ~null)
        any_null = any_null | null
    return _Val("bool", known_true, ~known_true & any_null)


def _known_false(v: _Val) -> Any:
    fails = np.logical_not(v.data)
    return fails if v.null is None else fails & ~v.null
