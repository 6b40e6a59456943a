"""The evaluate stage: metrics, calibration, per-group numbers and release gates.

The model (the fitted pipeline from the train stage) scores the held-out test table. The
positive class is ``data.label.positive``; scores are ``predict_proba`` where the estimator
has it, else ``decision_function`` (then log loss, Brier score and calibration are
``null``: there is no probability to judge, and a gate on them fails).

The output ``metrics`` (json) holds:

- ``metrics``: each configured metric, plus every metric a gate names
  (``accuracy``, ``balanced_accuracy``, ``roc_auc``, ``f1``, ``precision``, ``recall``,
  ``log_loss``, ``brier``); ``null`` where undefined;
- ``confusion_matrix``: ``{"labels": [negative, positive], "matrix": [[tn, fp], [fn, tp]]}``;
- ``calibration``: ten uniform bins (``sklearn.calibration.calibration_curve``) with
  ``prob_true``, ``prob_pred``, ``counts`` of the non-empty bins and the expected
  calibration error ``ece``;
- ``roc_curve``: ``fpr`` and ``tpr``, downsampled to at most 200 points;
- ``groups``: for each sensitive attribute (kept out of the features, present in the test
  table), measured by :func:`bastion.audits.fairness.group_fairness`: per group
  ``count``, ``too_small`` and, for a group of at least ``evaluate.fairness.min_group_size``
  rows, ``accuracy``, ``selection_rate``, ``tpr``, ``fpr``, ``base_rate``; across the
  scored groups ``demographic_parity_difference``, ``disparate_impact_ratio`` and
  ``equalized_odds_difference``; ``binning`` (``method`` ``declared`` or ``quantile``,
  ``edges``) for a numeric attribute (an int or float column in the test table, binned by
  ``evaluate.fairness.bins`` or in quantiles), else ``null``; and ``warnings``;
- ``warnings``: every attribute's warnings (too many groups, too few groups to compare);
- ``gates``: one ``{gate, metric, threshold, value, passed}`` per ``min_<m>``/``max_<m>``,
  and ``passed``: all of them passed.

The stage never raises on a failed gate: checks return findings; the runner decides,
stores everything, and ends the run with exit code 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from bastion.audits.base import check_gates
from bastion.audits.fairness import group_fairness
from bastion.errors import ConfigError
from bastion.spec.config import EvaluateConfig, LabelConfig
from bastion.spec.stage import Kind, Stage, StageContext

__all__ = ["EvaluateStage", "check_gates"]

_ROC_POINTS = 200
_BINS = 10


class EvaluateStage(Stage):
    """Score the model on the test split and check the release gates."""

    name = "evaluate"
    version = "1"
    inputs: Mapping[str, str] = {"model": "train.model", "test": "split.test"}
    outputs: Mapping[str, Kind] = {"metrics": "json"}
    gates_output = "metrics"  # {"passed", "gates", "metrics"}: decides the release

    def __init__(self, evaluate: EvaluateConfig, label: LabelConfig, sensitive: list[str]) -> None:
        self.evaluate = evaluate
        self.label = label
        self.sensitive = list(sensitive)

    def fingerprint(self) -> Mapping[str, Any]:
        return {
            "evaluate": self.evaluate.model_dump(mode="json"),
            "label": {"column": self.label.column, "positive": self.label.positive},
            "sensitive": self.sensitive,
        }

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        model, test = inputs["model"], inputs["test"]
        column, positive = self.label.column, self.label.positive
        if column not in test.columns:
            raise ConfigError(f"data.label.column: {column!r} is not in the test table")
        if len(test) == 0:
            raise ConfigError("evaluate: the test table is empty")
        absent = [c for c in self.sensitive if c not in test.columns]
        if absent:
            raise ConfigError(f"data.sensitive: column(s) {absent} are not in the test table")
        y = (test[column] == positive).to_numpy(dtype="int64")
        features = getattr(model, "feature_names_in_", None)
        x = test[list(features)] if features is not None else test.drop(columns=[column])
        with ctx.limit_threads():
            y_pred, score, is_proba = _predict(model, x)
        names: list[str] = list(self.evaluate.metrics)
        gated = [g.partition("_")[2] for g in sorted(self.evaluate.gates)]
        names += [m for m in dict.fromkeys(gated) if m not in names]
        metrics: dict[str, float | None] = {
            m: _metric(m, y, y_pred, score if is_proba or m == "roc_auc" else None) for m in names
        }
        gates = check_gates(self.evaluate.gates, metrics)
        others = sorted({str(v) for v in test[column].dropna().unique()} - {str(positive)})
        negative = others[0] if len(others) == 1 else f"not {positive}"
        groups = {a: self._fairness(test[a], a, y, y_pred) for a in self.sensitive}
        return {
            "metrics": {
                "n_rows": len(y),
                "label": column,
                "positive_label": positive,
                "negative_label": negative,
                "score": "probability" if is_proba else "decision_function",
                "metrics": metrics,
                "confusion_matrix": _confusion(y, y_pred, negative, str(positive)),
                "calibration": _calibration(y, score) if is_proba else None,
                "roc_curve": _roc(y, score),
                "groups": groups,
                "warnings": [w for found in groups.values() for w in found["warnings"]],
                "gates": gates,
                "passed": all(g["passed"] for g in gates),
            }
        }

    def _fairness(
        self, column: Any, name: str, y: np.ndarray, y_pred: np.ndarray
    ) -> dict[str, Any]:
        """One attribute's groups; an int or float column is binned (declared or quantile)."""
        fairness = self.evaluate.fairness
        dtype = column.dtype
        numeric = is_numeric_dtype(dtype) and not is_bool_dtype(dtype)
        return group_fairness(
            column,
            y,
            y_pred,
            name=name,
            numeric=numeric,
            bins=fairness.bins.get(name),
            min_group_size=fairness.min_group_size,
            max_groups=fairness.max_groups,
        )


def _predict(model: Any, x: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    classes = [int(c) for c in model.classes_]
    if sorted(classes) != [0, 1]:
        raise ConfigError(f"evaluate: expected a binary 0/1 model, got classes {classes}")
    if hasattr(model, "predict_proba"):
        # one pass over the model: the label is the most probable class, as predict() does
        proba = np.asarray(model.predict_proba(x))
        y_pred = np.asarray(classes, dtype="int64")[proba.argmax(axis=1)]
        return y_pred, proba[:, classes.index(1)], True
    y_pred = np.asarray(model.predict(x)).astype("int64")
    score = np.asarray(model.decision_function(x), dtype="float64")
    return y_pred, score if classes[1] == 1 else -score, False


def _metric(name: str, y: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None) -> float | None:
    from sklearn import metrics as m

    by_label = {
        "accuracy": lambda: m.accuracy_score(y, y_pred),
        "balanced_accuracy": lambda: m.balanced_accuracy_score(y, y_pred),
        "f1": lambda: m.f1_score(y, y_pred, zero_division=0),
        "precision": lambda: m.precision_score(y, y_pred, zero_division=0),
        "recall": lambda: m.recall_score(y, y_pred, zero_division=0),
    }
    by_score = {
        "roc_auc": lambda s: m.roc_auc_score(y, s),
        "log_loss": lambda s: m.log_loss(y, s, labels=[0, 1]),
        "brier": lambda s: m.brier_score_loss(y, s, pos_label=1),
    }
    if name not in by_label and name not in by_score:
        raise ConfigError(f"evaluate.metrics: unknown metric {name!r}")
    if name in by_score and score is None:
        return None
    try:
        value = by_label[name]() if name in by_label else by_score[name](score)
    except ValueError:  # e.g. ROC AUC on a test set holding one class
        return None
    return _num(value)


def _confusion(y: np.ndarray, y_pred: np.ndarray, negative: str, positive: str) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y, y_pred, labels=[0, 1])
    return {"labels": [negative, positive], "matrix": [[int(v) for v in row] for row in matrix]}


def _calibration(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    from sklearn.calibration import calibration_curve

    prob_true, prob_pred = calibration_curve(y, proba, n_bins=_BINS, strategy="uniform")
    edges = np.linspace(0.0, 1.0, _BINS + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], proba), minlength=_BINS)
    counts = counts[counts > 0]
    ece = float(np.sum(counts / len(y) * np.abs(prob_true - prob_pred)))
    return {
        "n_bins": _BINS,
        "strategy": "uniform",
        "prob_true": _floats(prob_true),
        "prob_pred": _floats(prob_pred),
        "counts": [int(c) for c in counts],
        "ece": _num(ece),
    }


def _roc(y: np.ndarray, score: np.ndarray) -> dict[str, Any] | None:
    from sklearn.metrics import roc_curve

    if y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, score)
    if len(fpr) > _ROC_POINTS:
        keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, _ROC_POINTS)).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": _floats(fpr), "tpr": _floats(tpr)}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _floats(values: np.ndarray) -> list[float | None]:
    """Curve points for plots, rounded to keep the JSON small."""
    return [None if (v := _num(x)) is None else round(v, 6) for x in values]
