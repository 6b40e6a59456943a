"""The features stage: a scikit-learn ``ColumnTransformer`` built from ``features:``.

Numeric columns go through ``SimpleImputer`` (mean / median / constant 0) and a scaler
(standard / min-max / robust); categorical columns through ``SimpleImputer``
(most frequent / constant ``"missing"``) and a ``OneHotEncoder`` (unknown categories
ignored, dense output, optional ``max_categories``) or an ``OrdinalEncoder`` (unknown
categories encoded as -1). Every column not named — and every column under ``drop`` — is
left out (``remainder="drop"``), so a new column in the data never silently becomes a
feature.

Sensitive attributes (``data.sensitive``) are kept aside for the fairness audit and are
refused as features unless ``features.use_sensitive`` is true; PII columns (``data.pii``)
are refused unless their policy is ``generalize``, and the label always. The transformer
is fitted on the training table's
feature columns only, so at prediction time it needs exactly those columns (extra columns,
such as the label or the sensitive attributes, are ignored).

Outputs: ``transformer`` (kind ``model``: the fitted ``ColumnTransformer``) and ``spec``
(kind ``json``: ``input_columns``, ``numeric``, ``categorical``, ``dropped`` (other columns
of the table left out, neither label, sensitive nor PII), ``sensitive_kept_aside``,
``sensitive_used``, ``pii_excluded``, ``label``, ``output_features``,
``n_output_features``).

Fitting a ``ColumnTransformer`` transforms the training table anyway; the stage keeps that
matrix in memory, tied to the very transformer and table objects, so that the train stage
of the same run can take it (:func:`fitted_matrix`) instead of transforming again. Nothing
of it is stored or serialised, and a transformer loaded from the store never matches.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from bastion.errors import ConfigError, DataError
from bastion.spec.config import DataConfig, FeaturesConfig
from bastion.spec.stage import Kind, Stage, StageContext

__all__ = ["FeaturesStage", "build_transformer", "fitted_matrix"]

# transformer -> (the table it was fitted on, its transformed feature matrix), this process
_FITTED: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def fitted_matrix(transformer: Any, table: Any) -> Any | None:
    """The matrix ``transformer`` produced while being fitted on exactly ``table`` (the same
    objects, in this process), handed over once; ``None`` otherwise."""
    memo = _FITTED.pop(transformer, None)
    return memo[1] if memo is not None and memo[0] is table else None


class FeaturesStage(Stage):
    """Fit the feature transformer on the training split."""

    name = "features"
    version = "1"
    inputs: Mapping[str, str] = {"train": "split.train"}
    outputs: Mapping[str, Kind] = {"transformer": "model", "spec": "json"}

    def __init__(self, features: FeaturesConfig, data: DataConfig) -> None:
        self.features = features
        self.data = data

    def fingerprint(self) -> Mapping[str, Any]:
        return {
            "features": self.features.model_dump(mode="json"),
            "label": self.data.label.column,
            "sensitive": list(self.data.sensitive),
            "pii": {c: r.policy for c, r in self.data.pii.items()},
        }

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        train = inputs["train"]
        _check_columns(self.features, self.data)
        used = [*self.features.numeric.columns, *self.features.categorical.columns]
        missing = [c for c in used if c not in train.columns]
        if missing:
            raise ConfigError(f"features: column(s) {missing} are not in the training table")
        if len(train) == 0:
            raise DataError("features: the training table has no rows to fit the features on")
        transformer = build_transformer(self.features)
        with ctx.limit_threads():
            matrix = transformer.fit_transform(train[used])
        _FITTED[transformer] = (train, matrix)
        sensitive = set(self.data.sensitive)
        raw_pii = {c for c, r in self.data.pii.items() if r.policy != "generalize"}
        aside = sensitive | set(self.data.pii) | {self.data.label.column}
        spec: dict[str, Any] = {
            "input_columns": used,
            "numeric": list(self.features.numeric.columns),
            "categorical": list(self.features.categorical.columns),
            "dropped": [c for c in train.columns if c not in used and c not in aside],
            "sensitive_kept_aside": [c for c in self.data.sensitive if c not in used],
            "sensitive_used": [c for c in used if c in sensitive],
            "pii_excluded": sorted(raw_pii - set(used)),
            "label": self.data.label.column,
            "output_features": [str(n) for n in transformer.get_feature_names_out()],
        }
        spec["n_output_features"] = len(spec["output_features"])
        if spec["sensitive_used"]:
            ctx.audit("features.sensitive_used", "ok", columns=spec["sensitive_used"])
        return {"transformer": transformer, "spec": spec}


def build_transformer(features: FeaturesConfig) -> Any:
    """An unfitted ``ColumnTransformer`` for ``features`` (see the module docstring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    parts: list[tuple[str, Any, list[str]]] = []
    num = features.numeric
    if num.columns:
        steps: list[tuple[str, Any]] = []
        if num.impute == "constant":
            steps.append(("impute", SimpleImputer(strategy="constant", fill_value=0)))
        elif num.impute != "none":
            steps.append(("impute", SimpleImputer(strategy=num.impute)))
        scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
        if num.scale != "none":
            steps.append(("scale", scalers[num.scale]()))
        parts.append(("numeric", Pipeline(steps) if steps else "passthrough", list(num.columns)))
    cat = features.categorical
    if cat.columns:
        steps = []
        if cat.impute == "constant":
            steps.append(("impute", SimpleImputer(strategy="constant", fill_value="missing")))
        elif cat.impute != "none":
            steps.append(("impute", SimpleImputer(strategy=cat.impute)))
        if cat.encode == "onehot":
            encoder: Any = OneHotEncoder(
                handle_unknown="ignore", sparse_output=False, max_categories=cat.max_categories
            )
        else:
            encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        steps.append(("encode", encoder))
        parts.append(("categorical", Pipeline(steps), list(cat.columns)))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _check_columns(features: FeaturesConfig, data: DataConfig) -> None:
    """Refuse a feature list that leaks the label, PII, or (unless allowed) sensitive data."""
    keys = {
        "features.numeric.columns": features.numeric.columns,
        "features.categorical.columns": features.categorical.columns,
    }
    if not any(keys.values()):
        raise ConfigError(
            "features: no feature columns; list them under features.numeric.columns"
            " or features.categorical.columns"
        )
    seen: set[str] = set()
    for key, columns in keys.items():
        for col in columns:
            if col in seen:
                raise ConfigError(f"{key}: column {col!r} is listed twice")
            seen.add(col)
            if col in features.drop:
                raise ConfigError(f"{key}: column {col!r} is also under features.drop")
            if col == data.label.column:
                raise ConfigError(f"{key}: the label {col!r} cannot be a feature")
            if col in data.pii and data.pii[col].policy != "generalize":
                raise ConfigError(
                    f"{key}: PII column {col!r} is a feature only with policy generalize"
                )
            if col in data.sensitive and not features.use_sensitive:
                raise ConfigError(
                    f"{key}: sensitive column {col!r} used as a feature;"
                    " set features.use_sensitive: true to allow it"
                )
