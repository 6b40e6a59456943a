"""The compiled form of a fitted pipeline: predictions without pandas or scikit-learn.

One ``predict_proba`` of the scikit-learn pipeline on one row costs milliseconds, almost all
of it the per-call overhead of pandas and the ``ColumnTransformer``; the arithmetic is
microseconds. :func:`~bastion.spec.compiler.compile_model` turns the fitted
``Pipeline([("features", ColumnTransformer), ("model", estimator)])`` into plain arrays:

- the **encoder**: the numeric inputs as one float64 matrix, imputed (``fill``) and scaled
  with the fitted statistics in scikit-learn's own order of operations (``ops``); each
  categorical input as an integer code (a known category ``0..K-1``, ``K`` unknown,
  ``K+1`` missing) looked up in a table of the rows the fitted encoder itself produced;
- the **model**: a tree ensemble as flat node arrays (``feature``, ``threshold``, ``left``,
  ``right``, ``value``), evaluated for all trees and rows at once by
  :mod:`bastion.spec.trees` (QuickScorer bitmasks for small trees, a level walk otherwise);
  a linear model as a dot product; an MLP as its layers.

The form is JSON (stored as a ``json`` stage output, signed into the release as
``NAME:VERSION/compiled``; never pickle). :func:`load_compiled` validates every field before
anything runs: types, shapes, finite numbers, and every index (child, feature, code, output
slice) in range, so a hostile artifact raises :class:`~bastion.errors.IntegrityError`
instead of crashing or reading out of bounds. :func:`~bastion.spec.compiler.check_parity`
compares the compiled form with scikit-learn; the server uses the compiled form only when
the signed parity passed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from bastion._canonical import canonical_json
from bastion.errors import IntegrityError
from bastion.spec.trees import TreeEnsemble, ensemble, expit, predict_trees

__all__ = [
    "FORMAT",
    "CompiledModel",
    "load_compiled",
]

FORMAT = "bastion.compiled/1"
_MAX_DEPTH = 4096  # levels a tree may have (a loop bound for hostile input)
_BIG = np.finfo(np.float64).max  # +-inf thresholds are stored as +-this (JSON has no inf)


class CompiledModel:
    """A validated compiled pipeline (build with :func:`compile_model` or
    :func:`load_compiled`); :meth:`predict_proba` takes the decoded input arrays."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        _check(isinstance(doc, Mapping) and doc.get("format") == FORMAT, "format", FORMAT)
        self.doc = doc
        inputs = _get(doc, "inputs", Mapping)
        self.numeric = _names(inputs, "numeric")
        self.categorical = _names(inputs, "categorical")
        self.n_features = _int(doc, "n_features", 1, 1 << 20)
        num = _get(doc, "numeric", Mapping)
        self.fill = (
            _floats(num["fill"], "numeric.fill", len(self.numeric))
            if num.get("fill") is not None
            else None
        )
        self.ops: list[tuple[str, np.ndarray]] = []
        for i, op in enumerate(_get(num, "ops", list)):
            _check(
                isinstance(op, list) and len(op) == 2 and op[0] in ("sub", "div", "mul", "add"),
                f"numeric.ops[{i}]",
                "[sub|div|mul|add, numbers]",
            )
            self.ops.append((op[0], _floats(op[1], f"numeric.ops[{i}]", len(self.numeric))))
        self.num_slice = _slice(num, "out", len(self.numeric), self.n_features, "numeric.out")
        cats = _get(doc, "categories", list)
        _check(len(cats) == len(self.categorical), "categories", "one entry per categorical input")
        self.codes: list[dict[str, int]] = []
        self.tables: list[tuple[int, np.ndarray]] = []
        for j, entry in enumerate(cats):
            where = f"categories[{j}]"
            _check(isinstance(entry, Mapping), where, "an object")
            known = _get(entry, "known", list)
            distinct = len(set(known)) == len(known)
            _check(all(type(c) is str for c in known) and distinct, f"{where}.known", "strings")
            table = _matrix(entry.get("table"), f"{where}.table", len(known) + 2)
            start = _int(entry, "out", 0, self.n_features)
            _check(start + table.shape[1] <= self.n_features, f"{where}.out", "a slice inside")
            self.codes.append({c: i for i, c in enumerate(known)})
            self.tables.append((start, table))
        self.model = _get(doc, "model", Mapping)
        self.kind = self.model.get("kind")
        if self.kind == "trees":
            self._trees = _load_trees(self.model, self.n_features)
        elif self.kind == "linear":
            self._coef = _floats(self.model.get("coef"), "model.coef", self.n_features)
            self._intercept = _float(self.model.get("intercept"), "model.intercept")
        elif self.kind == "mlp":
            self._layers, self._activation = _load_mlp(self.model, self.n_features)
        else:
            raise IntegrityError("compiled artifact: model.kind: expected trees, linear or mlp")

    def to_bytes(self) -> bytes:
        """The stored form (canonical JSON)."""
        return canonical_json(self.doc)

    def encode(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The model's feature matrix from the numeric inputs (float64, NaN = missing) and
        the categorical codes (int, as :meth:`code_of` gives them)."""
        rows = numeric.shape[0] if self.numeric else codes.shape[0]
        out = np.zeros((rows, self.n_features))
        if self.numeric:
            x = numeric.astype(np.float64, copy=True)
            if self.fill is not None:
                x = np.where(np.isnan(x), self.fill, x)
            for op, arg in self.ops:
                if op == "sub":
                    x -= arg
                elif op == "div":
                    x /= arg
                elif op == "mul":
                    x *= arg
                else:
                    x += arg
            out[:, self.num_slice] = x
        for j, (start, table) in enumerate(self.tables):
            part = table[codes[:, j]]
            out[:, start : start + table.shape[1]] = part
        return out

    def code_of(self, j: int, value: Any) -> int:
        """The code of categorical input ``j`` for ``value`` (None/NaN: missing)."""
        table = self.codes[j]
        if value is None or (type(value) is float and value != value):
            return len(table) + 1
        return table.get(value if type(value) is str else str(value), len(table))

    def predict_proba(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(rows × 2) probabilities of classes 0 and 1."""
        x = self.encode(numeric, codes)
        if self.kind == "trees":
            p = predict_trees(self._trees, x)
        elif self.kind == "linear":
            p = expit(x @ self._coef + self._intercept)
        else:
            p = _eval_mlp(self._layers, self._activation, x)
        return np.column_stack((1.0 - p, p))

    def predict_frame(self, frame: Any) -> np.ndarray:
        """Probabilities for a DataFrame with the input columns (the parity check)."""
        numeric = frame[list(self.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
        codes = np.array(
            [
                [self.code_of(j, v) for j, v in enumerate(row)]
                for row in frame[list(self.categorical)].astype(object).itertuples(index=False)
            ],
            dtype=np.intp,
        ).reshape(len(frame), len(self.categorical))
        return self.predict_proba(numeric.reshape(len(frame), len(self.numeric)), codes)


def load_compiled(data: bytes) -> CompiledModel:
    """Parse and validate stored bytes; :class:`IntegrityError` names the bad field."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise IntegrityError("compiled artifact: does not parse as JSON") from None
    try:
        return CompiledModel(doc)
    except IntegrityError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, MemoryError) as exc:
        raise IntegrityError(f"compiled artifact: malformed ({type(exc).__name__})") from None


# -- evaluation -------------------------------------------------------------------------


def _eval_mlp(
    layers: list[tuple[np.ndarray, np.ndarray]], activation: str, x: np.ndarray
) -> np.ndarray:
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            if activation == "relu":
                np.maximum(x, 0, out=x)
            elif activation == "tanh":
                np.tanh(x, out=x)
            elif activation == "logistic":
                x = expit(x)
    return expit(x[:, 0])


# -- validation -------------------------------------------------------------------------


def _check(ok: bool, where: str, expected: str) -> None:
    if not ok:
        raise IntegrityError(f"compiled artifact: {where}: expected {expected}")


def _get(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key) if isinstance(doc, Mapping) else None
    _check(isinstance(value, kind), key, f"a {kind.__name__}")
    return value


def _int(doc: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    _check(type(value) is int and low <= value <= high, key, f"an integer in [{low}, {high}]")
    return int(value)  # type: ignore[arg-type]


def _float(value: Any, where: str) -> float:
    _check(type(value) in (int, float) and np.isfinite(value), where, "a finite number")
    return float(value)


def _names(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = _get(doc, key, list)
    _check(all(type(v) is str for v in value), key, "a list of column names")
    return tuple(value)


def _array(value: Any, where: str, kinds: str, dtype: Any, size: int | None) -> np.ndarray:
    _check(isinstance(value, list), where, "a list")
    arr = np.asarray(value) if value else np.zeros(0, dtype=dtype)
    _check(
        arr.ndim == 1 and (arr.size == 0 or arr.dtype.kind in kinds),
        where,
        f"a flat list of {'integers' if kinds == 'i' else 'numbers'}",
    )
    _check(size is None or arr.size == size, where, f"{size} values")
    out = arr.astype(dtype)
    if out.dtype.kind == "f":
        _check(bool(np.isfinite(out).all()), where, "finite numbers")
    return out


def _floats(value: Any, where: str, size: int | None) -> np.ndarray:
    return _array(value, where, "if", np.float64, size)


def _ints(value: Any, where: str, size: int | None, high: int) -> np.ndarray:
    arr = _array(value, where, "i", np.int64, size)
    _check(
        arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) < high),
        where,
        f"indices in [0, {high})",
    )
    return arr.astype(np.intp)


def _matrix(value: Any, where: str, rows: int) -> np.ndarray:
    _check(isinstance(value, list) and len(value) == rows, where, f"{rows} rows")
    width = len(value[0]) if value and isinstance(value[0], list) else -1
    _check(
        width >= 1 and all(isinstance(r, list) and len(r) == width for r in value),
        where,
        "rows of equal length",
    )
    return np.stack([_floats(r, where, width) for r in value])


def _slice(doc: Mapping[str, Any], key: str, width: int, n: int, where: str) -> slice:
    start = doc.get(key)
    _check(
        type(start) is int and start >= 0 and start + width <= n,
        where,
        "a slice inside the features",
    )
    return slice(start, start + width)  # type: ignore[operator]


def _load_trees(m: Mapping[str, Any], n_features: int) -> TreeEnsemble:
    n = len(m.get("feature") or [])
    _check(0 < n <= 1 << 26, "model.feature", "between 1 and 2**26 nodes")
    missing = m.get("missing_left")
    depth = _int(m, "depth", 0, _MAX_DEPTH)
    combine = m.get("combine")
    _check(combine in ("mean", "sum"), "model.combine", "mean or sum")
    _check(type(m.get("float32")) is bool, "model.float32", "true or false")
    ml = None
    if missing is not None:
        ml = _array(missing, "model.missing_left", "bi", np.int64, n).astype(bool)
    roots = _ints(m.get("roots"), "model.roots", None, n)
    _check(roots.size > 0, "model.roots", "at least one tree")
    return ensemble(
        _ints(m.get("feature"), "model.feature", n, n_features),
        np.clip(_floats(m.get("threshold"), "model.threshold", n), -_BIG, _BIG),
        _ints(m.get("left"), "model.left", n, n),
        _ints(m.get("right"), "model.right", n, n),
        _floats(m.get("value"), "model.value", n),
        ml,
        roots,
        depth,
        float32=bool(m["float32"]),
        combine=str(combine),
        base=_float(m.get("base", 0.0), "model.base"),
    )


def _load_mlp(
    m: Mapping[str, Any], n_features: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    activation = m.get("activation")
    _check(
        activation in ("relu", "tanh", "logistic", "identity"),
        "model.activation",
        "relu, tanh, logistic or identity",
    )
    raw = _get(m, "layers", list)
    _check(0 < len(raw) <= 64, "model.layers", "1 to 64 layers")
    layers = []
    width = n_features
    for i, layer in enumerate(raw):
        where = f"model.layers[{i}]"
        _check(isinstance(layer, Mapping), where, "an object")
        w = _matrix(layer.get("coef"), f"{where}.coef", width)
        b = _floats(layer.get("intercept"), f"{where}.intercept", w.shape[1])
        layers.append((w, b))
        width = w.shape[1]
    _check(width == 1, "model.layers", "one output unit (binary)")
    return layers, str(activation)
