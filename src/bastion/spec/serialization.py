"""Models to bytes and back with skops — never pickle — behind an explicit list of types.

:func:`dump_model` writes a skops archive (a zip of ``schema.json`` plus ``.npy`` arrays)
and refuses to write one that :func:`load_model` would refuse to read, so a model that
trains but cannot be loaded back fails at once, not weeks later in the server. The archive
is canonical: skops names arrays and shared objects by ``id()`` and stamps the zip entries
with the time, so the same model dumped twice gave two digests; :func:`dump_model` renumbers
both in the schema's order and writes every entry with a fixed time, so equal models give
equal bytes (and the same digest, the same cache hit, the same signature).

:func:`load_model` trusts nothing the archive says about itself. In order:

1. the bytes must be a zip holding a ``schema.json`` that parses, within a size bound;
2. every type the schema names — each node's ``__module__.__class__``, including the ones
   skops trusts by default, such as *every* scikit-learn estimator — must be on
   :data:`TRUSTED_TYPES` (or on the caller's ``extra_trusted``). This is stricter than
   skops: a fitted ``KNeighborsClassifier`` is a valid skops file, but not a Bastion model;
3. ``skops.io.get_untrusted_types`` is asked too, and each type it names must also be on the
   list (two independent readers of the same schema must both agree);
4. only then ``skops.io.loads(data, trusted=<exactly those types>)`` builds the object;
5. the built object is checked for structure skops cannot see: a decision tree's or a
   histogram-boosting predictor's node arrays hold raw child and feature indices that
   scikit-learn follows without bounds checks, so each inner node must point forward to a
   node that exists and at a feature the model has (no cycles, no out-of-bounds reads).

Any failure raises :class:`~bastion.errors.IntegrityError` naming the first offending types;
nothing from the archive is imported or called before step 4.

:data:`TRUSTED_TYPES` lists only fully-qualified names seen when dumping each allow-listed
estimator (see :data:`bastion.stages.train.ESTIMATORS`) fitted behind the features
``ColumnTransformer`` on the Adult data, across its documented parameter choices. No
prefixes, no wildcards; extend it only after reading what a new type does on load.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import skops.io as sio

from bastion.errors import ConfigError, IntegrityError

__all__ = ["TRUSTED_TYPES", "dump_model", "load_model", "referenced_types"]

TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.random._generator.Generator",
    "numpy.random.mtrand.RandomState",
    "numpy.uint64",
    "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyHuberLoss",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.dummy.DummyClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.SquaredHinge",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
)

_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_MAX_UNPACKED = 4 * 1024**3  # declared uncompressed bytes in one archive (zip-bomb bound)
_SHOWN = 5  # offending type names quoted in an error


def dump_model(estimator: Any) -> bytes:
    """Serialise a fitted estimator or pipeline to skops bytes.

    Raises :class:`~bastion.errors.ConfigError` when the object cannot be stored safely:
    skops cannot represent it, or it needs a type that is not on :data:`TRUSTED_TYPES`
    (usually a parameter choice, such as a custom ``scoring`` callable).
    """
    try:
        data: bytes = sio.dumps(estimator, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    except (RecursionError, TypeError, ValueError, AttributeError) as exc:
        kind = type(estimator).__name__
        raise ConfigError(f"model: a {kind} cannot be stored with skops ({exc})") from exc
    data = _canonical(data)
    outside = sorted(set(referenced_types(data)) - set(TRUSTED_TYPES))
    if outside:
        raise ConfigError(
            "model: it needs types that are not on the trusted list and could never be"
            f" loaded back: {_show(outside)}; choose parameters that avoid them"
        )
    return data


_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def _canonical(data: bytes) -> bytes:
    """The same archive with ``__id__`` values and array file names renumbered in the
    order the schema first mentions them, entries sorted, and a fixed time on each."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        names = set(src.namelist())
        schema = json.loads(src.read("schema.json"))
        ids: dict[Any, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, list):
                return [walk(v) for v in node]
            if not isinstance(node, dict):
                return node
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    value = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in names:
                    ext = value[value.rfind(".") :] if "." in value else ""
                    value = files.setdefault(value, f"{len(files) + 1}{ext}")
                else:
                    value = walk(value)
                out[key] = value
            return out

        schema = walk(schema)
        entries = {new: _zero_padding(new, src.read(old)) for old, new in files.items()}
        left = names - set(files) - {"schema.json"}
        entries.update({name: src.read(name) for name in left})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        items = [("schema.json", json.dumps(schema).encode()), *sorted(entries.items())]
        for name, payload in items:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            dst.writestr(info, payload, compresslevel=6)
    return buf.getvalue()


def _zero_padding(name: str, payload: bytes) -> bytes:
    """A structured array (a tree's ``nodes``) has padding between its fields that numpy
    leaves uninitialised: whatever was in memory went into the archive. Rewritten with
    the padding zeroed, field by field; any other array is kept byte for byte."""
    if not name.endswith(".npy"):
        return payload
    try:
        array = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError:  # not a plain array: kept as skops wrote it
        return payload
    if array.dtype.fields is None:
        return payload
    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    clean = np.zeros(array.shape, dtype=array.dtype, order="F" if fortran else "C")
    for field in array.dtype.names or ():
        clean[field] = array[field]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def load_model(data: bytes, *, extra_trusted: Sequence[str] = ()) -> Any:
    """Rebuild a model from skops bytes, refusing any type not on :data:`TRUSTED_TYPES`.

    ``extra_trusted`` adds fully-qualified type names (reviewed by the caller) for this call
    only; prefixes and wildcards are refused. Raises :class:`~bastion.errors.IntegrityError`
    when the bytes are not a skops archive, name a type outside the list, or build an object
    whose internal indices are inconsistent.
    """
    allowed = set(TRUSTED_TYPES) | _checked_extra(extra_trusted)
    _refuse_outside(referenced_types(data), allowed)
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise IntegrityError("model archive is not a well-formed skops archive") from exc
    _refuse_outside(untrusted, allowed)
    try:
        model = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise IntegrityError("model archive could not be rebuilt") from exc
    try:
        _check_structure(model)
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError("model archive holds a malformed model") from exc
    return model


def referenced_types(data: bytes) -> list[str]:
    """Every type name a skops archive refers to, sorted, read without building anything.

    For a bound method the name is ``module.Class.method``. Raises
    :class:`~bastion.errors.IntegrityError` when ``data`` is not a skops archive.
    """
    found: set[str] = set()
    for node in _nodes(_read_schema(data)):
        module, cls = node.get("__module__"), node.get("__class__")
        if not isinstance(module, str) or not isinstance(cls, str):
            raise IntegrityError("model archive has a malformed node")
        found.add(f"{module}.{cls}")
        if node.get("__loader__") == "MethodNode":
            content = node.get("content")
            func = content.get("func") if isinstance(content, dict) else None
            found.add(f"{module}.{cls}.{func}")
    return sorted(found)


def _read_schema(data: bytes) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            if sum(info.file_size for info in archive.infolist()) > _MAX_UNPACKED:
                raise IntegrityError("model archive unpacks to more than the size bound")
            raw = archive.read("schema.json")
        schema = json.loads(raw)
    except IntegrityError:
        raise
    except Exception:  # untrusted bytes: any parser failure (zlib, CRC, encoding, depth)
        raise IntegrityError("not a skops model archive") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("protocol"), int):
        raise IntegrityError("not a skops model archive")
    return schema


def _nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every dict in the schema that names a type (iteratively: no recursion limit)."""
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__class__" in item or "__module__" in item or "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _checked_extra(extra: Sequence[str]) -> set[str]:
    if isinstance(extra, str | bytes):
        raise TypeError("extra_trusted must be a sequence of type names, not one string")
    for name in extra:
        if not isinstance(name, str) or not _QUALIFIED.match(name):
            raise ConfigError(
                f"extra_trusted: {name!r} is not a fully-qualified type name"
                " (module.Class; no prefixes or wildcards)"
            )
    return set(extra)


def _refuse_outside(names: Sequence[str], allowed: set[str]) -> None:
    outside = sorted(set(names) - allowed)
    if outside:
        raise IntegrityError(
            f"model archive names types outside the trusted list: {_show(outside)}"
        )


def _show(names: Sequence[str]) -> str:
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _check_structure(model: Any) -> None:
    """Walk the rebuilt object graph and check every tree's node indices."""
    from sklearn.base import BaseEstimator

    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, BaseEstimator):
            if hasattr(obj, "tree_"):
                _check_tree(obj)
            if type(obj).__name__ == "HistGradientBoostingClassifier":
                _check_predictors(obj)
            stack.extend(vars(obj).values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            stack.extend(obj.ravel().tolist())


def _check_tree(estimator: Any) -> None:
    tree = estimator.tree_
    try:
        n = int(tree.node_count)
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        feature, n_values = np.asarray(tree.feature), int(tree.value.shape[0])
        n_features = int(tree.n_features)
    except (AttributeError, TypeError, ValueError) as exc:
        raise IntegrityError("model archive holds a malformed decision tree") from exc
    if n < 1 or not len(left) == len(right) == len(feature) == n_values == n:
        raise IntegrityError("model archive holds a decision tree of inconsistent size")
    if n_features != getattr(estimator, "n_features_in_", n_features):
        raise IntegrityError("model archive holds a decision tree of the wrong width")
    leaf = left == -1
    _check_nodes(n, ~leaf, left, right, feature, n_features, leaf_mismatch=leaf != (right == -1))


def _check_predictors(estimator: Any) -> None:
    predictors = getattr(estimator, "_predictors", None)
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(predictors, list) or not isinstance(n_features, int | np.integer):
        raise IntegrityError("model archive holds a malformed gradient-boosting model")
    for iteration in predictors:
        if not isinstance(iteration, list):
            raise IntegrityError("model archive holds a malformed gradient-boosting model")
        for predictor in iteration:
            try:
                nodes = predictor.nodes
                inner = nodes["is_leaf"] == 0
                left, right = nodes["left"], nodes["right"]
                feature, categorical = nodes["feature_idx"], nodes["is_categorical"]
            except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise IntegrityError(
                    "model archive holds a malformed gradient-boosting tree"
                ) from exc
            if np.any(categorical[inner]):
                raise IntegrityError("model archive holds categorical splits, never used here")
            zeros = np.zeros(len(nodes), dtype=bool)
            _check_nodes(
                len(nodes), inner, left, right, feature, int(n_features), leaf_mismatch=zeros
            )


def _check_nodes(
    n: int,
    inner: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    n_features: int,
    *,
    leaf_mismatch: np.ndarray,
) -> None:
    """Inner nodes point strictly forward (no cycles) to existing nodes and real features."""
    if n < 1:
        raise IntegrityError("model archive holds an empty tree")
    index = np.arange(n)
    children_ok = all(
        np.all((child[inner] > index[inner]) & (child[inner] < n)) for child in (left, right)
    )
    features_ok = np.all((feature[inner] >= 0) & (feature[inner] < n_features))
    if np.any(leaf_mismatch) or not children_ok or not features_ok:
        raise IntegrityError("model archive holds a tree whose node indices are out of bounds")
