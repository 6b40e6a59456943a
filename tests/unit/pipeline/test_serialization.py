"""dump_model/load_model: the trusted list is explicit and real, and what is written loads."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bastion.errors import ConfigError
from bastion.spec.serialization import (
    TRUSTED_TYPES,
    dump_model,
    load_model,
    referenced_types,
)
from bastion.spec.stage import decode, encode

rng = np.random.default_rng(3)
X = rng.normal(size=(200, 3))
X[:, 2] = rng.integers(0, 3, size=200)
Y = (X[:, 0] > 0).astype(int)


def _pipeline(model: object) -> Pipeline:
    scaler = ColumnTransformer([("numeric", StandardScaler(), [0, 1, 2])])
    return Pipeline([("features", scaler), ("model", model)]).fit(X, Y)


def test_trusted_types_are_explicit_sorted_names() -> None:
    assert list(TRUSTED_TYPES) == sorted(set(TRUSTED_TYPES))
    for name in TRUSTED_TYPES:
        assert re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name), name


@pytest.mark.parametrize("name", TRUSTED_TYPES)
def test_every_trusted_name_is_a_real_object(name: str) -> None:
    module, _, attr = name.rpartition(".")
    assert hasattr(importlib.import_module(module), attr)


def test_round_trip_through_the_store_encoding() -> None:
    model = _pipeline(LogisticRegression())
    data = encode("model", model)
    assert data[:2] == b"PK"  # a zip (skops), never a pickle
    loaded = decode("model", data)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert load_model(bytearray(data)).predict(X[:2]).shape == (2,)


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(),
        HistGradientBoostingClassifier(max_iter=5),
        RandomForestClassifier(n_estimators=3, random_state=0),
    ],
    ids=["logreg", "hgb", "forest"],
)
def test_the_same_model_gives_the_same_bytes(model: object) -> None:
    """skops names arrays and shared objects by id() and stamps the zip with the time: the
    archive is canonicalised, so one model has one digest (and a copy of it the same)."""
    import copy
    import time
    import zipfile
    from io import BytesIO

    fitted = _pipeline(model)
    first = dump_model(fitted)
    time.sleep(1.1)  # a zip time has 2 s resolution; cross at least one tick sometimes
    assert dump_model(copy.deepcopy(fitted)) == first == dump_model(fitted)
    with zipfile.ZipFile(BytesIO(first)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    loaded = load_model(first)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert dump_model(loaded) == first  # and a round trip does not change it


def test_referenced_types_lists_every_class_in_the_archive() -> None:
    names = referenced_types(dump_model(_pipeline(LogisticRegression())))
    assert "sklearn.pipeline.Pipeline" in names
    assert "sklearn.linear_model._logistic.LogisticRegression" in names
    assert set(names) <= set(TRUSTED_TYPES)


def test_dump_refuses_a_model_that_could_never_be_loaded() -> None:
    with pytest.raises(ConfigError, match=r"sklearn\.naive_bayes\.GaussianNB"):
        dump_model(_pipeline(GaussianNB()))
    categorical = HistGradientBoostingClassifier(max_iter=2, categorical_features=[2])
    with pytest.raises(ConfigError, match="not on the trusted list"):
        dump_model(_pipeline(categorical))


def test_dump_refuses_what_skops_cannot_represent() -> None:
    scored = HistGradientBoostingClassifier(
        max_iter=3,
        early_stopping=True,
        scoring="accuracy",
        validation_fraction=0.3,
        n_iter_no_change=1,
    )
    with pytest.raises(ConfigError, match="cannot be stored with skops"):
        dump_model(_pipeline(scored))


def test_load_wants_bytes() -> None:
    with pytest.raises(TypeError):
        load_model("PK...")  # type: ignore[arg-type]
