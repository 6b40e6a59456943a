"""Attribute inference: how much a model's outputs help an attacker infer a sensitive attribute.

:func:`attribute_inference` measures, for one sensitive attribute, how much better an
attacker (gradient boosting, 5-fold cross-validated predictions) predicts it from the other
features plus the model's output scores than from the other features alone: the accuracy
difference, with a paired bootstrap interval. Re-exported by :mod:`bastion.audits.membership`.

Measurements, not decisions: gates decide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bastion.audits.roc_metrics import CHUNK_CELLS

__all__ = ["AttributeInferenceResult", "attribute_inference"]


@dataclass(frozen=True)
class AttributeInferenceResult:
    """Attacker accuracy without and with the model's outputs, and the difference."""

    attribute: str
    rows: int
    majority_accuracy: float
    accuracy_without_model: float
    accuracy_with_model: float
    advantage: float
    advantage_ci: list[float]
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _features(X: Any) -> np.ndarray:
    if hasattr(X, "columns"):
        import pandas as pd

        return np.asarray(pd.get_dummies(X, dummy_na=True), dtype=np.float64)
    return np.asarray(X, dtype=np.float64)


def _cv_correct(X: np.ndarray, s: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    attacker = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    return np.asarray(cross_val_predict(attacker, X, s, cv=folds) == s)


def attribute_inference(
    other_features: Any,
    attribute: Any,
    model_outputs: np.ndarray,
    *,
    name: str = "attribute",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributeInferenceResult:
    """How much the model's outputs help an attacker infer one sensitive attribute.

    ``other_features`` are the held-out rows without the attribute (a DataFrame, one-hot
    encoded here, or a numeric array), ``attribute`` its values on those rows,
    ``model_outputs`` the model's scores on them (``predict_proba``). The attacker (gradient
    boosting, 5-fold cross-validated predictions) is trained twice; ``advantage`` is
    accuracy with the outputs minus accuracy without, with a paired bootstrap interval.
    """
    s = np.asarray(attribute).astype(str)
    base = _features(other_features)
    outputs = np.asarray(model_outputs, dtype=np.float64).reshape(len(s), -1)
    if len(base) != len(s):
        raise ValueError(f"{name}: {len(base)} feature rows but {len(s)} attribute values")
    without = _cv_correct(base, s, seed)
    with_model = _cv_correct(np.hstack([base, outputs]), s, seed)
    diff = with_model.astype(np.float64) - without.astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // len(s))
    means: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        means.append(diff[rng.integers(0, len(s), size=(rows, len(s)))].mean(axis=1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha]) if means else (0.0, 0.0)
    _, counts = np.unique(s, return_counts=True)
    return AttributeInferenceResult(
        attribute=name,
        rows=len(s),
        majority_accuracy=float(counts.max() / len(s)),
        accuracy_without_model=float(without.mean()),
        accuracy_with_model=float(with_model.mean()),
        advantage=float(diff.mean()),
        advantage_ci=[float(low), float(high)],
        confidence=confidence,
    )
