"""The compiled inference path: parity with scikit-learn on every allow-listed estimator it
supports (synthetic data and a slice of Adult, with missing values and unknown categories),
"unsupported" for the others, and hostile artifacts refused at load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from bastion.errors import IntegrityError
from bastion.spec.compiled import CompiledModel, load_compiled
from bastion.spec.compiler import TOLERANCE, Unsupported, check_parity, compile_model
from bastion.spec.config import CategoricalFeatures, FeaturesConfig, ModelConfig, NumericFeatures
from bastion.stages.features import build_transformer
from bastion.stages.train import make_estimator

ADULT = Path(__file__).parents[3] / "examples" / "adult-income" / "data"
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "native-country"]
NAMES = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]  # fmt: skip

SUPPORTED = {
    "RandomForestClassifier": {"n_estimators": 20, "max_depth": 12},
    "ExtraTreesClassifier": {"n_estimators": 20},
    "GradientBoostingClassifier": {"n_estimators": 30},
    "HistGradientBoostingClassifier": {"max_iter": 40},
    "LogisticRegression": {"max_iter": 500},
    "SGDClassifier": {"loss": "log_loss"},
    "MLPClassifier": {"hidden_layer_sizes": [16, 8], "max_iter": 60},
}


def _adult(path: Path, rows: int) -> pd.DataFrame:
    frame = pd.read_csv(
        path, names=NAMES, skipinitialspace=True, na_values="?", nrows=rows, skiprows=1
    )
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = _adult(ADULT / "adult.data", 1500)
    test = _adult(ADULT / "adult.test", 400)
    test.loc[::7, "age"] = np.nan  # missing numbers
    test.loc[::5, "occupation"] = np.nan  # missing categories
    test.loc[::11, "workclass"] = "Never-seen-before"  # unknown category
    return train, test


def synthetic(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 100, size=rows).astype(float),
            "c": rng.choice(["x", "y", "z", "w"], size=rows).astype(object),
            "d": rng.choice(["p", "q"], size=rows).astype(object),
        }
    )
    frame.loc[rng.random(rows) < 0.1, "a"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "c"] = np.nan
    frame["label"] = (frame["a"].fillna(0) + (frame["c"] == "x") + frame["b"] / 50) > 1.2
    return frame


def fit(
    estimator: str, params: dict[str, Any], train: pd.DataFrame, features: FeaturesConfig
) -> Any:
    from sklearn.pipeline import Pipeline

    used = [*features.numeric.columns, *features.categorical.columns]
    label = train.columns[-1]
    y = (train[label] == (">50K" if label == "income" else True)).astype(int)
    pipe = Pipeline(
        [
            ("features", build_transformer(features)),
            ("model", make_estimator(ModelConfig(estimator=estimator, params=params), 7)),
        ]
    )
    with threadpool_limits(1):
        pipe.fit(train[used], y)
    return pipe


ADULT_FEATURES = FeaturesConfig(
    numeric=NumericFeatures(columns=NUMERIC), categorical=CategoricalFeatures(columns=CATEGORICAL)
)


@pytest.mark.parametrize("estimator", sorted(SUPPORTED))
def test_parity_on_an_adult_slice_with_missing_and_unknown_values(
    estimator: str, adult: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = adult
    model = fit(estimator, SUPPORTED[estimator], train, ADULT_FEATURES)
    compiled = compile_model(model)
    parity = check_parity(model, compiled, test)
    assert parity["status"] == "passed", parity
    assert parity["max_abs_diff"] <= TOLERANCE and parity["label_mismatches"] == 0
    # the stored form round-trips to the same predictions
    again = load_compiled(compiled.to_bytes())
    assert np.array_equal(again.predict_frame(test), compiled.predict_frame(test))
    # row by row (for trees, few (row, tree) pairs: every pair walks every level) as in the
    # table (many: finished pairs are dropped at each level); matrix products may differ
    # in the last bits between one row and forty
    whole = compiled.predict_frame(test.iloc[:40])
    alone = np.vstack([compiled.predict_frame(test.iloc[i : i + 1]) for i in range(40)])
    np.testing.assert_allclose(whole, alone, rtol=0, atol=0 if compiled.kind == "trees" else 1e-12)


N, C = NumericFeatures, CategoricalFeatures
AB, CD = ["a", "b"], ["c", "d"]
ENCODERS = [
    ("RandomForestClassifier", N(columns=AB, impute="mean", scale="minmax"), C(columns=CD, impute="constant")),  # noqa: E501
    ("HistGradientBoostingClassifier", N(columns=AB, impute="none", scale="robust"), C(columns=CD, encode="ordinal")),  # noqa: E501
    ("GradientBoostingClassifier", N(columns=AB, impute="constant", scale="none"), C(columns=CD, max_categories=2)),  # noqa: E501
    ("LogisticRegression", N(columns=AB), C(columns=CD, impute="most_frequent")),
]  # fmt: skip


@pytest.mark.parametrize(("estimator", "numeric", "categorical"), ENCODERS)
def test_parity_on_synthetic_data_for_each_encoder_setting(
    estimator: str, numeric: NumericFeatures, categorical: CategoricalFeatures
) -> None:
    features = FeaturesConfig(numeric=numeric, categorical=categorical)
    train, test = synthetic(1, 600), synthetic(2, 300)
    test.loc[::9, "d"] = "never-seen"
    params = {"random_state": 0} if estimator != "LogisticRegression" else {}
    model = fit(estimator, params, train, features)
    parity = check_parity(model, compile_model(model), test)
    assert parity["status"] == "passed", parity


@pytest.mark.parametrize("estimator", ["RidgeClassifier", "SGDClassifier"])
def test_estimators_without_probabilities_are_unsupported(estimator: str) -> None:
    train = synthetic(1, 200)
    features = FeaturesConfig(
        numeric=NumericFeatures(columns=["a", "b"]), categorical=CategoricalFeatures(columns=["c"])
    )
    model = fit(estimator, {}, train, features)  # SGD's default hinge loss has no proba
    with pytest.raises(Unsupported, match=estimator):
        compile_model(model)
    assert check_parity(model, None, train, "x")["status"] == "unsupported"


@pytest.fixture(scope="module")
def small() -> tuple[Any, CompiledModel]:
    train = synthetic(3, 300)
    features = FeaturesConfig(
        numeric=NumericFeatures(columns=["a", "b"]), categorical=CategoricalFeatures(columns=["c"])
    )
    model = fit("HistGradientBoostingClassifier", {"max_iter": 5}, train, features)
    return model, compile_model(model)


def _tamper(compiled: CompiledModel, change: Any) -> bytes:
    doc = json.loads(compiled.to_bytes())
    change(doc)
    return json.dumps(doc).encode()


HOSTILE = {
    "child_out_of_range": lambda d: d["model"]["left"].__setitem__(0, 10**9),
    "negative_child": lambda d: d["model"]["right"].__setitem__(0, -1),
    "feature_out_of_range": lambda d: d["model"]["feature"].__setitem__(0, 999),
    "root_out_of_range": lambda d: d["model"]["roots"].__setitem__(0, 10**6),
    "float_index": lambda d: d["model"]["left"].__setitem__(0, 1.5),
    "string_threshold": lambda d: d["model"]["threshold"].__setitem__(0, "0"),
    "short_values": lambda d: d["model"]["value"].pop(),
    "huge_depth": lambda d: d["model"].__setitem__("depth", 10**9),
    "category_table_rows": lambda d: d["categories"][0]["table"].pop(),
    "category_slice_outside": lambda d: d["categories"][0].__setitem__("out", 10**6),
    "ragged_table": lambda d: d["categories"][0]["table"][0].append(1.0),
    "numeric_slice_outside": lambda d: d["numeric"].__setitem__("out", -1),
    "fill_length": lambda d: d["numeric"].__setitem__("fill", [1.0]),
    "unknown_op": lambda d: d["numeric"]["ops"].append(["pow", [1.0, 1.0]]),
    "unknown_kind": lambda d: d["model"].__setitem__("kind", "pickle"),
    "wrong_format": lambda d: d.__setitem__("format", "other/1"),
    "nested_instead_of_flat": lambda d: d["model"].__setitem__("feature", [[0]]),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_hostile_compiled_artifact_is_refused_at_load(
    attack: str, small: tuple[Any, CompiledModel]
) -> None:
    with pytest.raises(IntegrityError, match="compiled artifact"):
        load_compiled(_tamper(small[1], HOSTILE[attack]))


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"null", b"[" * 100_000])
def test_garbage_bytes_are_refused_at_load(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="compiled artifact"):
        load_compiled(data)


def test_a_changed_leaf_value_loads_but_fails_parity(small: tuple[Any, CompiledModel]) -> None:
    """Validation catches what would crash; parity catches what would mislead."""
    model, compiled = small
    doc = json.loads(compiled.to_bytes())
    doc["model"]["base"] += 0.5
    wrong = load_compiled(json.dumps(doc).encode())
    parity = check_parity(model, wrong, synthetic(4, 100))
    assert parity["status"] == "failed" and parity["max_abs_diff"] > TOLERANCE


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (a key of an object, an index of a short list)."""
    out = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc[:3]):
            out += _paths(value, (*at, index))
    return out


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_changed_field_is_refused_or_evaluates_inside_its_arrays(
    small: tuple[Any, CompiledModel], data: st.DataObject
) -> None:
    """Replace any one value of a valid document with any JSON value: load either refuses it
    (IntegrityError) or gives a model that predicts finite-shaped answers without an
    IndexError, a crash or a hang."""
    doc = json.loads(small[1].to_bytes())
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(JSON_VALUES)
    try:
        raw = json.dumps(doc, allow_nan=True).encode()
        loaded = load_compiled(raw)
    except IntegrityError:
        return
    numeric = np.array([[0.5, 3.0], [np.nan, 1e300]])
    codes = (
        np.array([[0], [len(loaded.codes[0]) + 1]]) if loaded.categorical else np.zeros((2, 0), int)
    )
    with np.errstate(all="ignore"):
        out = loaded.predict_proba(numeric[:, : len(loaded.numeric)], codes)
    assert out.shape == (2, 2)
