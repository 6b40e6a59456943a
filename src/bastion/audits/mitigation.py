"""Fairness mitigation: fairlearn's ThresholdOptimizer or ExponentiatedGradient around an
estimator, with the fairness numbers before and after.

:func:`mitigate` fits the estimator as given (``before``) and the mitigated model
(``after``), predicts both on the evaluation rows (the training rows unless ``X_test`` is
given) and measures both with :func:`bastion.audits.fairness.group_fairness` (one sensitive
column) or :func:`~bastion.audits.fairness.intersectional_fairness` (several). fairlearn is
imported only when this runs: without it, a :class:`~bastion.errors.ConfigError` names the
extra to install (``pip install 'bastion-ml[fairness]'``). The ``fairness`` audit
(:mod:`bastion.audits.suite.fairness`) runs it when ``mitigation`` is configured.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd

from bastion.audits.fairness import MIN_GROUP_SIZE, group_fairness, intersectional_fairness
from bastion.errors import ConfigError

__all__ = ["CONSTRAINTS", "METHODS", "mitigate"]

METHODS = ("threshold", "exponentiated_gradient")
"""``threshold``: fairlearn's ThresholdOptimizer (per-group thresholds on the fitted
model's scores); ``exponentiated_gradient``: fairlearn's ExponentiatedGradient (retrains)."""
CONSTRAINTS = ("demographic_parity", "equalized_odds")
"""The constraint the mitigated model is held to."""


def mitigate(
    estimator: Any,
    X: Any,
    y: Any,
    sensitive: pd.Series | pd.DataFrame,
    *,
    method: str = "threshold",
    constraint: str = "demographic_parity",
    X_test: Any = None,
    y_test: Any = None,
    sensitive_test: pd.Series | pd.DataFrame | None = None,
    seed: int = 0,
    min_group_size: int = MIN_GROUP_SIZE,
) -> dict[str, Any]:
    """``{method, constraint, predictions, model, before, after}``; ``before`` and ``after``
    hold ``accuracy`` and ``fairness`` (the group measurement) on the evaluation rows."""
    if method not in METHODS:
        raise ConfigError(f"mitigation method {method!r}: expected one of {', '.join(METHODS)}")
    if constraint not in CONSTRAINTS:
        raise ConfigError(
            f"mitigation constraint {constraint!r}: expected one of {', '.join(CONSTRAINTS)}"
        )
    given = (X_test is None, y_test is None, sensitive_test is None)
    if len(set(given)) > 1:
        raise ConfigError("mitigate: give X_test, y_test and sensitive_test together, or none")
    if X_test is None:
        X_test, y_test, sensitive_test = X, y, sensitive
    reductions, postprocessing = _fairlearn()
    from sklearn.base import clone

    base = clone(estimator).fit(X, y)
    if method == "threshold":
        model = postprocessing.ThresholdOptimizer(
            estimator=base, constraints=constraint, prefit=True, predict_method="auto"
        )
        model.fit(X, y, sensitive_features=sensitive)
        after = model.predict(X_test, sensitive_features=sensitive_test, random_state=seed)
    else:
        moment = {
            "demographic_parity": reductions.DemographicParity,
            "equalized_odds": reductions.EqualizedOdds,
        }[constraint]()
        model = reductions.ExponentiatedGradient(clone(estimator), constraints=moment)
        model.fit(X, y, sensitive_features=sensitive)
        after = model.predict(X_test, random_state=seed)
    truth = np.asarray(y_test)
    before = np.asarray(base.predict(X_test))
    after = np.asarray(after)
    return {
        "method": method,
        "constraint": constraint,
        "predictions": after,
        "model": model,
        "before": _side(sensitive_test, truth, before, min_group_size),
        "after": _side(sensitive_test, truth, after, min_group_size),
    }


def _side(
    sensitive: pd.Series | pd.DataFrame, y: np.ndarray, y_pred: np.ndarray, min_size: int
) -> dict[str, Any]:
    if isinstance(sensitive, pd.DataFrame):
        columns = {str(c): sensitive[c] for c in sensitive.columns}
        found = intersectional_fairness(columns, y, y_pred, min_group_size=min_size)
    else:
        found = group_fairness(sensitive, y, y_pred, min_group_size=min_size)
    return {"accuracy": float(np.mean(y_pred == y)), "fairness": found}


def _fairlearn() -> tuple[Any, Any]:
    """fairlearn's reductions and postprocessing modules, or a ConfigError naming the extra."""
    try:
        reductions = importlib.import_module("fairlearn.reductions")
        postprocessing = importlib.import_module("fairlearn.postprocessing")
    except ImportError as exc:
        raise ConfigError(
            "fairness mitigation needs fairlearn: install the 'fairness' extra"
            " (pip install 'bastion-ml[fairness]')"
        ) from exc
    return reductions, postprocessing
