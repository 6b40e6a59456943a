"""Fitted models and their rows as the audits see them (:class:`bastion.audits.base.AuditData`),
on a small synthetic table whose answer is known, or on a slice of UCI Adult."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from bastion.audits.base import AuditData
from bastion.spec.config import ColumnSpec, FeaturesConfig
from bastion.stages.features import build_transformer

SCHEMA = {
    "age": ColumnSpec(type="int", min=17, max=90),
    "hours": ColumnSpec(type="float", min=1, max=99),
    "gain": ColumnSpec(type="float"),
    "sex": ColumnSpec(type="category", categories=["F", "M"]),
    "work": ColumnSpec(type="category", categories=["gov", "private", "self"]),
    "y": ColumnSpec(type="category", categories=["no", "yes"]),
}
FEATURES = FeaturesConfig.model_validate(
    {
        "numeric": {"columns": ["age", "hours", "gain"]},
        "categorical": {"columns": ["sex", "work"]},
        "use_sensitive": True,
    }
)


def synthetic_table(n: int, seed: int = 0, *, noise: float = 0.5) -> pd.DataFrame:
    """``n`` rows whose label ``y`` ("yes"/"no") follows a known linear rule plus noise;
    ``sex`` shifts the score (so a model is measurably unfair on it)."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "age": rng.integers(17, 91, n),
            "hours": rng.uniform(1, 99, n).round(1),
            "gain": rng.normal(0, 1, n),
            "sex": rng.choice(["F", "M"], n),
            "work": rng.choice(["gov", "private", "self"], n),
        }
    )
    score = (
        0.05 * (rows.age - 50)
        + 0.04 * (rows.hours - 50)
        + rows.gain
        + (rows.sex == "M") * 0.8
        + (rows.work == "self") * 1.0
    )
    rows["y"] = np.where(score + rng.normal(0, noise, n) > 0.4, "yes", "no")
    return rows


def fitted(estimator: Any, train: pd.DataFrame, features: FeaturesConfig = FEATURES) -> Pipeline:
    """The train stage's shape: ``Pipeline([("features", transformer), ("model", est)])``
    fitted on raw rows."""
    cols = [*features.numeric.columns, *features.categorical.columns]
    model = Pipeline([("features", build_transformer(features)), ("model", clone(estimator))])
    model.fit(train[cols], (train["y"] == "yes").astype(int))
    return model


def synthetic_audit_data(
    estimator: Any, *, n_train: int = 600, n_test: int = 600, seed: int = 0, **extra: Any
) -> AuditData:
    """AuditData for ``estimator`` fitted on a synthetic table (label ``y``, positive
    ``"yes"``, sensitive ``sex``)."""
    train = synthetic_table(n_train, seed)
    test = synthetic_table(n_test, seed + 1)
    return AuditData(
        model=fitted(estimator, train),
        train=train,
        test=test,
        label="y",
        positive="yes",
        sensitive=("sex",),
        schema=SCHEMA,
        seed=seed,
        **extra,
    )
