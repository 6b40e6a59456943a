"""The train stage: fit an allow-listed estimator behind the fitted feature transformer.

Estimators are allow-listed by name in :data:`ESTIMATORS`; each one's fitted form (inside
the features ``ColumnTransformer``) round-trips through skops using only
:data:`bastion.spec.serialization.TRUSTED_TYPES`. Any other name is refused with a
:class:`~bastion.errors.ConfigError` — an unknown name and a real scikit-learn estimator
that is not on the list alike — before any data is touched.

Parameters are checked one key at a time with the estimator's own ``set_params`` and
``_validate_params``, so the error names ``model.params.<key>`` and says what was expected.
``random_state`` comes from the pipeline seed when the estimator takes one and the file does
not set it. Nested keys (``a__b``) are refused.

The target is ``label == data.label.positive`` as 0/1. The estimator is fitted on
``transformer.transform(X)`` and the stage returns the whole fitted
``Pipeline([("features", transformer), ("model", estimator)])``, which takes raw rows.
``training`` (json) records ``estimator``, ``params`` (all of them, as used), ``seed``,
``n_rows``, ``n_features``, ``class_balance``, ``fit_seconds`` and ``warnings`` (e.g. a
convergence warning, deduplicated).
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError, DataError
from bastion.spec.config import LabelConfig, ModelConfig
from bastion.spec.stage import ConfigProblem, Kind, Stage, StageContext
from bastion.stages.features import fitted_matrix

__all__ = ["ESTIMATORS", "TrainStage", "make_estimator", "model_problems"]

ESTIMATORS: Mapping[str, str] = {
    "ExtraTreesClassifier": "sklearn.ensemble.ExtraTreesClassifier",
    "GradientBoostingClassifier": "sklearn.ensemble.GradientBoostingClassifier",
    "HistGradientBoostingClassifier": "sklearn.ensemble.HistGradientBoostingClassifier",
    "LogisticRegression": "sklearn.linear_model.LogisticRegression",
    "MLPClassifier": "sklearn.neural_network.MLPClassifier",
    "RandomForestClassifier": "sklearn.ensemble.RandomForestClassifier",
    "RidgeClassifier": "sklearn.linear_model.RidgeClassifier",
    "SGDClassifier": "sklearn.linear_model.SGDClassifier",
}


class TrainStage(Stage):
    """Fit the configured estimator; output the full, fitted pipeline."""

    name = "train"
    version = "1"
    inputs: Mapping[str, str] = {"transformer": "features.transformer", "train": "split.train"}
    outputs: Mapping[str, Kind] = {"model": "model", "training": "json"}

    def __init__(self, model: ModelConfig, label: LabelConfig) -> None:
        self.model = model
        self.label = label

    def load_problems(self, base_dir: Path) -> list[ConfigProblem]:
        """The estimator's name and each parameter, checked as :func:`make_estimator` does
        (scikit-learn imported here, when the file is loaded)."""
        return model_problems(self.model)

    def fingerprint(self) -> Mapping[str, Any]:
        return {
            "model": self.model.model_dump(mode="json"),
            "label": {"column": self.label.column, "positive": self.label.positive},
        }

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        from sklearn.pipeline import Pipeline

        estimator = make_estimator(self.model, ctx.seed)
        transformer, train = inputs["transformer"], inputs["train"]
        y = _target(train, self.label)
        features = fitted_matrix(transformer, train)  # this run's features stage: no redo
        if features is None:
            with ctx.limit_threads():
                features = transformer.transform(train[list(transformer.feature_names_in_)])
        ctx.progress(0, 1, f"fitting {self.model.estimator} on {len(y)} rows")
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, ctx.limit_threads() as threads:
            warnings.simplefilter("always")
            try:
                estimator.fit(features, y)
            except ValueError as exc:
                raise ConfigError(
                    f"model: {self.model.estimator} could not be fitted with model.params"
                    f" {sorted(self.model.params)}: {exc}"
                ) from exc
        seconds = time.perf_counter() - started
        ctx.progress(1, 1, "fitted")
        n_pos = int(y.sum())
        training = {
            "estimator": self.model.estimator,
            "params": _jsonable(estimator.get_params(deep=False)),
            "seed": ctx.seed,
            "n_rows": len(y),
            "n_features": int(features.shape[1]),
            "class_balance": {
                "positive_label": self.label.positive,
                "positive": n_pos,
                "negative": len(y) - n_pos,
                "positive_rate": n_pos / len(y),
            },
            "fit_seconds": round(seconds, 3),
            "threads": threads,
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:20],
        }
        model = Pipeline([("features", transformer), ("model", estimator)])
        return {"model": model, "training": training}


def make_estimator(model: ModelConfig, seed: int) -> Any:
    """An unfitted, configured estimator, or a :class:`ConfigError` naming what is wrong.

    Cheap and side-effect free; :func:`model_problems` runs the same checks when the
    pipeline file is loaded, so a bad ``model:`` section fails before ingest.
    """
    problems = model_problems(model)
    if problems:
        path, what = problems[0]
        raise ConfigError(f"{'.'.join(path)}: {what}")
    cls = _estimator_class(model.estimator)
    estimator = cls()
    params = dict(model.params)
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in params:
        params["random_state"] = seed
    estimator.set_params(**params)
    try:
        estimator._validate_params()
    except ValueError as exc:  # a combination of keys, each valid alone
        raise ConfigError(f"model.params: {exc}") from None
    return estimator


def model_problems(model: ModelConfig) -> list[ConfigProblem]:
    """What is wrong with ``model:`` — an estimator off the allow-list, a key that is not
    a constructor parameter, a value of the wrong type or range — one finding per key."""
    name = model.estimator
    allowed = ", ".join(ESTIMATORS)
    if name not in ESTIMATORS:
        from sklearn.utils.discovery import all_estimators

        if name in {n for n, _ in all_estimators()}:
            what = f"{name!r} is not on the allow-list (allowed: {allowed})"
        else:
            what = f"unknown estimator {name!r}; it is not on the allow-list (allowed: {allowed})"
        return [(("model", "estimator"), what)]
    cls = _estimator_class(name)
    return [
        (("model", "params", key), what)
        for key, value in model.params.items()
        if (what := _param_problem(cls, name, key, value))
    ]


def _estimator_class(name: str) -> Any:
    module, _, cls = ESTIMATORS[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def _param_problem(cls: Any, name: str, key: str, value: Any) -> str:
    if not key.isidentifier() or "__" in key:
        return f"not a parameter of {name} (nested keys are not allowed)"
    estimator = cls()
    valid = estimator.get_params(deep=False)
    if key not in valid:
        return f"not a parameter of {name}; expected one of: {', '.join(valid)}"
    try:
        estimator.set_params(**{key: value})
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        return str(exc)
    return ""


def _target(train: Any, label: LabelConfig) -> Any:
    if label.column not in train.columns:
        raise ConfigError(f"data.label.column: {label.column!r} is not in the training table")
    values = train[label.column]
    if len(values) == 0:
        raise DataError("train: the training table has no rows")
    if values.isna().any():
        raise ConfigError(f"data.label.column: {int(values.isna().sum())} rows have no label")
    y = (values == label.positive).to_numpy(dtype="int64")
    if y.min() == y.max():
        seen = sorted(str(v) for v in values.unique()[:5])
        raise ConfigError(
            f"data.label.positive: the training labels hold one class only"
            f" (positive {label.positive!r}; saw {seen})"
        )
    return y


def _jsonable(value: Any) -> Any:
    """Parameters as JSON: numbers, strings, lists, dicts; anything else by its repr."""
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
