"""Compile a fitted scikit-learn pipeline into :class:`~bastion.spec.compiled.CompiledModel`.

Supported: the features ``ColumnTransformer`` of ``stages/features.py`` (numeric:
``SimpleImputer`` and a standard / min-max (no clip) / robust scaler, or passthrough;
categorical: any imputer and encoder, whose output per category is recorded by running the
fitted pipeline itself) and, for a binary label, RandomForest, ExtraTrees,
GradientBoosting (log loss), HistGradientBoosting (log loss, numeric splits),
LogisticRegression, SGDClassifier (log loss) and MLPClassifier. Anything else raises
:class:`Unsupported` naming it.

:func:`check_parity` compares the compiled form with the scikit-learn pipeline on a table
(probabilities within :data:`TOLERANCE`, labels identical): the release's parity record.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bastion._canonical import canonical_json
from bastion.spec.compiled import FORMAT, CompiledModel

__all__ = ["TOLERANCE", "Unsupported", "check_parity", "compile_model", "compile_pipeline"]

TOLERANCE = 1e-6  # largest |probability difference| that parity allows

_UNKNOWN = "\x00bastion: an unknown category\x00"
_BIG = float(np.finfo(np.float64).max)


class Unsupported(Exception):
    """The compiler does not support this pipeline (names the part); parity "unsupported"."""


def compile_model(model: Any) -> CompiledModel:
    """Compile a fitted Bastion pipeline, validated as a stored one would be."""
    return CompiledModel(json.loads(canonical_json(compile_pipeline(model))))


def check_parity(
    model: Any, compiled: CompiledModel | None, frame: Any, reason: str = ""
) -> dict[str, Any]:
    """The parity record: ``status`` passed / failed / unsupported, rows, the largest
    probability difference and label mismatches on ``frame`` (the held-out table);
    ``compiled`` None is "unsupported" for ``reason``."""
    if compiled is None:
        return {"status": "unsupported", "reason": reason, "tolerance": TOLERANCE}
    if not len(frame):
        return {"status": "failed", "reason": "no rows to compare", "tolerance": TOLERANCE}
    columns = [*compiled.numeric, *compiled.categorical]
    ref = np.asarray(model.predict_proba(frame[columns]), dtype=np.float64)
    got = compiled.predict_frame(frame)
    labels = np.asarray(model.predict(frame[columns]))
    classes = np.asarray(model.classes_)
    mismatches = int(np.sum(classes[np.argmax(got, axis=1)] != labels))
    diff = float(np.max(np.abs(ref - got)))
    passed = diff <= TOLERANCE and mismatches == 0
    return {
        "status": "passed" if passed else "failed",
        "rows": len(frame),
        "max_abs_diff": diff,
        "label_mismatches": mismatches,
        "tolerance": TOLERANCE,
        "reason": "" if passed else "predictions differ",
    }


def compile_pipeline(model: Any) -> dict[str, Any]:
    """The compiled document of ``Pipeline([("features", ct), ("model", estimator)])``."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2:
        raise Unsupported("expected Pipeline([features, model])")
    ct, est = steps[0][1], steps[1][1]
    classes = list(getattr(est, "classes_", []))
    if len(classes) != 2 or [int(c) for c in classes] != [0, 1]:
        raise Unsupported("only a binary label (classes 0 and 1) is compiled")
    doc = _encoder(ct)
    width = _n_features(est)
    if width != doc["n_features"]:
        raise Unsupported(
            f"the transformer makes {doc['n_features']} features, the model takes {width}"
        )
    doc["model"] = _estimator(est)
    doc["format"] = FORMAT
    return doc


def _n_features(est: Any) -> int:
    return int(getattr(est, "n_features_in_", -1))


def _encoder(ct: Any) -> dict[str, Any]:
    if type(ct).__name__ != "ColumnTransformer":
        raise Unsupported(f"features: {type(ct).__name__} is not a ColumnTransformer")
    numeric: list[str] = []
    categorical: list[str] = []
    num: dict[str, Any] = {"fill": None, "ops": [], "out": 0}
    cats: list[dict[str, Any]] = []
    at = 0
    for name, trans, cols in ct.transformers_:
        if trans == "drop" or (name == "remainder" and trans == "drop"):
            continue
        cols = [str(c) for c in cols]
        if name == "numeric":
            if numeric:
                raise Unsupported("features: two numeric blocks")
            numeric = cols
            num = _numeric(trans, len(cols))
            num["out"] = at
            at += len(cols)
        elif name == "categorical":
            if categorical:
                raise Unsupported("features: two categorical blocks")
            categorical = cols
            for entry in _categorical(trans, cols):
                entry["out"] = at
                at += len(entry["table"][0])
                cats.append(entry)
        else:
            raise Unsupported(f"features: transformer {name!r}")
    return {
        "inputs": {"numeric": numeric, "categorical": categorical},
        "numeric": num,
        "categories": cats,
        "n_features": at,
    }


def _numeric(trans: Any, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"fill": None, "ops": []}
    if trans == "passthrough":
        return out
    for _, step in getattr(trans, "steps", []):
        kind = type(step).__name__
        if kind == "SimpleImputer":
            fill = np.asarray(step.statistics_, dtype=np.float64)
            if fill.shape != (n,) or not np.isfinite(fill).all() or step.add_indicator:
                raise Unsupported("numeric imputer: a column with no statistic, or indicators")
            out["fill"] = fill.tolist()
        elif kind == "StandardScaler":
            if step.mean_ is not None:
                out["ops"].append(["sub", _vec(step.mean_, n)])
            if step.scale_ is not None:
                out["ops"].append(["div", _vec(step.scale_, n)])
        elif kind == "RobustScaler":
            if step.center_ is not None:
                out["ops"].append(["sub", _vec(step.center_, n)])
            if step.scale_ is not None:
                out["ops"].append(["div", _vec(step.scale_, n)])
        elif kind == "MinMaxScaler" and not step.clip:
            out["ops"].append(["mul", _vec(step.scale_, n)])
            out["ops"].append(["add", _vec(step.min_, n)])
        else:
            raise Unsupported(f"numeric step {kind}")
    return out


def _vec(values: Any, n: int) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise Unsupported("numeric statistics: not finite")
    return [float(v) for v in arr]


def _categorical(trans: Any, cols: list[str]) -> list[dict[str, Any]]:
    """Per column: its known categories and the encoder's output for each, unknown, missing."""
    import pandas as pd

    steps = getattr(trans, "steps", None)
    if not steps:
        raise Unsupported("categorical block: expected a Pipeline")
    enc = steps[-1][1]
    known_all = [[c for c in cats] for cats in getattr(enc, "categories_", [])]
    if len(known_all) != len(cols):
        raise Unsupported("categorical encoder: categories do not match the columns")
    if type(enc).__name__ == "OneHotEncoder":
        widths = [int(w) for w in enc._n_features_outs]
    elif type(enc).__name__ == "OrdinalEncoder":
        widths = [1] * len(cols)
    else:
        raise Unsupported(f"categorical encoder {type(enc).__name__}")
    fixed = [next((c for c in k if isinstance(c, str)), _UNKNOWN) for k in known_all]
    entries = []
    at = 0
    for j, col in enumerate(cols):
        known = [str(c) for c in known_all[j] if isinstance(c, str)]
        values = [*known, _UNKNOWN, np.nan]
        frame = pd.DataFrame(
            {c: [fixed[i]] * len(values) for i, c in enumerate(cols)}, dtype=object
        )
        frame[col] = pd.Series(values, dtype=object)
        out = np.asarray(trans.transform(frame), dtype=np.float64)
        table = out[:, at : at + widths[j]]
        if not np.isfinite(table).all():
            raise Unsupported(f"categorical column {col!r}: a non-finite encoding")
        entries.append({"column": col, "known": known, "table": table.tolist()})
        at += widths[j]
    return entries


def _estimator(est: Any) -> dict[str, Any]:
    kind = type(est).__name__
    if kind in ("RandomForestClassifier", "ExtraTreesClassifier"):
        return _forest(est)
    if kind == "GradientBoostingClassifier":
        return _gradient_boosting(est)
    if kind == "HistGradientBoostingClassifier":
        return _hist_gradient_boosting(est)
    if kind == "LogisticRegression" or (kind == "SGDClassifier" and est.loss == "log_loss"):
        coef = np.asarray(est.coef_, dtype=np.float64)
        return {"kind": "linear", "coef": coef[0].tolist(), "intercept": float(est.intercept_[0])}
    if kind == "MLPClassifier" and est.out_activation_ == "logistic":
        layers = [
            {
                "coef": np.asarray(w, dtype=np.float64).tolist(),
                "intercept": np.asarray(b, dtype=np.float64).tolist(),
            }
            for w, b in zip(est.coefs_, est.intercepts_, strict=True)
        ]
        return {"kind": "mlp", "activation": str(est.activation), "layers": layers}
    raise Unsupported(
        f"estimator {kind}" + (f" with loss {est.loss!r}" if hasattr(est, "loss") else "")
    )


def _pack(trees: list[dict[str, np.ndarray]], **extra: Any) -> dict[str, Any]:
    """Flatten per-tree node arrays (local indices) into one set (global indices)."""
    keys = ("feature", "threshold", "left", "right", "value", "missing_left")
    parts: dict[str, list[Any]] = {k: [] for k in keys}
    roots, depth, at = [], 0, 0
    for t in trees:
        n = len(t["feature"])
        leaf = t["leaf"]
        own = np.arange(n)
        left = np.where(leaf, own, t["left"]) + at
        right = np.where(leaf, own, t["right"]) + at
        parts["feature"].append(np.where(leaf, 0, t["feature"]))
        parts["threshold"].append(np.clip(np.where(leaf, 0.0, t["threshold"]), -_BIG, _BIG))
        parts["left"].append(left)
        parts["right"].append(right)
        parts["value"].append(np.where(leaf, t["value"], 0.0))
        parts["missing_left"].append(t["missing_left"].astype(np.int64))
        roots.append(at)
        depth = max(depth, _depth(t["left"], t["right"], leaf))
        at += n
    doc: dict[str, Any] = {"kind": "trees", "roots": roots, "depth": depth, **extra}
    for k in keys:
        arr = np.concatenate(parts[k])
        doc[k] = arr.astype(np.float64 if k in ("threshold", "value") else np.int64).tolist()
    return doc


def _depth(left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    depth, level = 0, [0]
    while True:
        level = [c for n in level if not leaf[n] for c in (int(left[n]), int(right[n]))]
        if not level:
            return depth
        depth += 1


def _sk_tree(tree: Any, value: np.ndarray) -> dict[str, np.ndarray]:
    t = tree.tree_
    leaf = t.children_left == -1
    missing = getattr(t, "missing_go_to_left", None)
    return {
        "feature": t.feature,
        "threshold": t.threshold,
        "left": t.children_left,
        "right": t.children_right,
        "leaf": leaf,
        "value": value,
        "missing_left": np.asarray(missing if missing is not None else np.zeros(len(leaf))),
    }


def _forest(est: Any) -> dict[str, Any]:
    trees = []
    for tree in est.estimators_:
        v = np.asarray(tree.tree_.value, dtype=np.float64)[:, 0, :]
        total = v.sum(axis=1)
        p1 = np.divide(v[:, 1], total, out=np.zeros(len(v)), where=total > 0)
        trees.append(_sk_tree(tree, p1))
    return _pack(trees, float32=True, combine="mean", base=0.0)


def _gradient_boosting(est: Any) -> dict[str, Any]:
    if est.loss != "log_loss" or est.init not in (None, "zero"):
        raise Unsupported("GradientBoostingClassifier: only log loss with the default init")
    base = float(np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_))))[0, 0])
    lr = float(est.learning_rate)
    trees = []
    for stage in est.estimators_[:, 0]:
        v = np.asarray(stage.tree_.value, dtype=np.float64)[:, 0, 0] * lr
        trees.append(_sk_tree(stage, v))
    return _pack(trees, float32=True, combine="sum", base=base)


def _hist_gradient_boosting(est: Any) -> dict[str, Any]:
    if getattr(est, "_preprocessor", None) is not None or est.n_trees_per_iteration_ != 1:
        raise Unsupported("HistGradientBoostingClassifier: categorical features or multiclass")
    if type(est._loss).__name__ != "HalfBinomialLoss":
        raise Unsupported("HistGradientBoostingClassifier: only log loss")
    trees = []
    for (predictor,) in est._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise Unsupported("HistGradientBoostingClassifier: a categorical split")
        trees.append(
            {
                "feature": nodes["feature_idx"].astype(np.int64),
                "threshold": nodes["num_threshold"].astype(np.float64),
                "left": nodes["left"].astype(np.int64),
                "right": nodes["right"].astype(np.int64),
                "leaf": nodes["is_leaf"].astype(bool),
                "value": nodes["value"].astype(np.float64),
                "missing_left": nodes["missing_go_to_left"].astype(bool),
            }
        )
    base = float(np.asarray(est._baseline_prediction).ravel()[0])
    return _pack(trees, float32=False, combine="sum", base=base)
