"""The train stage: only allow-listed estimators, named parameter errors, safe round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.errors import ConfigError
from bastion.spec.config import FeaturesConfig, LabelConfig, ModelConfig
from bastion.spec.serialization import dump_model, load_model
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.features import build_transformer
from bastion.stages.train import ESTIMATORS, TrainStage, make_estimator

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"
LABEL = LabelConfig(column="Y", positive=">50K")
FEATURES = FeaturesConfig.model_validate(
    {
        "numeric": {
            "columns": ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
        },
        "categorical": {"columns": ["workclass", "marital-status", "occupation", "relationship"]},
    }
)
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "ExtraTreesClassifier": {"n_estimators": 10, "max_depth": 8},
    "GradientBoostingClassifier": {"n_estimators": 10},
    "HistGradientBoostingClassifier": {"max_iter": 20},
    "LogisticRegression": {},
    "MLPClassifier": {"hidden_layer_sizes": [16], "max_iter": 20},
    "RandomForestClassifier": {"n_estimators": 10, "max_depth": 8},
    "RidgeClassifier": {"alpha": 2.0},
    "SGDClassifier": {"loss": "log_loss", "max_iter": 20},
}


def _adult(name: str, n: int) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, skipinitialspace=True, na_values="?")
    df["Y"] = df["Y"].replace({">50K.": ">50K", "<=50K.": "<=50K"})
    return df.sample(n, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return _adult("adult.data", 2000)


@pytest.fixture(scope="module")
def test() -> pd.DataFrame:
    return _adult("adult.test", 500)


@pytest.fixture(scope="module")
def transformer(train: pd.DataFrame) -> Any:
    return build_transformer(FEATURES).fit(
        train[FEATURES.numeric.columns + FEATURES.categorical.columns]
    )


def _ctx(seed: int = 7) -> StageContext:
    return StageContext(
        config=None,  # type: ignore[arg-type]  # the train stage reads only the seed
        base_dir=DATA,
        seed=seed,
        actor="tester",
        run_id="run-test",
        event=lambda a, o, d: None,
    )


def _train(
    estimator: str, params: dict[str, Any], transformer: Any, train: pd.DataFrame, seed: int = 7
) -> dict[str, Any]:
    stage = TrainStage(ModelConfig(estimator=estimator, params=params), LABEL)
    return dict(stage.run(_ctx(seed), {"transformer": transformer, "train": train}))


def test_protocol_attributes() -> None:
    stage = TrainStage(ModelConfig(estimator="LogisticRegression"), LABEL)
    assert stage.name == "train"
    assert dict(stage.inputs) == {"transformer": "features.transformer", "train": "split.train"}
    assert dict(stage.outputs) == {"model": "model", "training": "json"}
    other = TrainStage(ModelConfig(estimator="LogisticRegression", params={"C": 2.0}), LABEL)
    assert stage.fingerprint() != other.fingerprint()


def test_the_allow_list_is_the_documented_one() -> None:
    assert list(ESTIMATORS) == sorted(ESTIMATORS)
    assert set(ESTIMATORS) == set(FAST_PARAMS)


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"model\.estimator: unknown estimator 'Skynet'.*"
        r"not on the allow-list \(allowed: .*LogisticRegression",
    ):
        make_estimator(ModelConfig(estimator="Skynet"), 0)


@pytest.mark.parametrize("name", ["KNeighborsClassifier", "SVC", "DummyClassifier"])
def test_real_sklearn_estimator_off_the_allow_list_is_refused(
    name: str, transformer: Any, train: pd.DataFrame
) -> None:
    with pytest.raises(
        ConfigError, match=rf"model\.estimator: '{name}' is not on the allow-list"
    ) as e:
        _train(name, {}, transformer, train)
    assert "unknown" not in str(e.value)


@pytest.mark.parametrize(
    ("estimator", "params", "key"),
    [
        ("HistGradientBoostingClassifier", {"max_iter": "many"}, "max_iter"),
        ("LogisticRegression", {"C": -1.0}, "C"),
        ("RandomForestClassifier", {"criterion": "vibes"}, "criterion"),
        ("LogisticRegression", {"n_trees": 3}, "n_trees"),
        ("MLPClassifier", {"estimator__alpha": 3}, "estimator__alpha"),
    ],
    ids=["wrong-type", "out-of-range", "bad-choice", "unknown-key", "nested-key"],
)
def test_bad_parameter_is_refused_by_name(
    estimator: str, params: dict[str, Any], key: str, transformer: Any, train: pd.DataFrame
) -> None:
    with pytest.raises(ConfigError, match=rf"^model\.params\.{key}: "):
        _train(estimator, params, transformer, train)


def test_seed_becomes_random_state_unless_set(transformer: Any, train: pd.DataFrame) -> None:
    out = _train("RandomForestClassifier", {"n_estimators": 3}, transformer, train, seed=11)
    assert out["training"]["params"]["random_state"] == 11
    out = _train(
        "RandomForestClassifier",
        {"n_estimators": 3, "random_state": 5},
        transformer,
        train,
        seed=11,
    )
    assert out["training"]["params"]["random_state"] == 5
    for name in ESTIMATORS:
        params = make_estimator(ModelConfig(estimator=name), 3).get_params()
        assert params.get("random_state", 3) == 3


def test_training_record_and_raw_row_pipeline(
    transformer: Any, train: pd.DataFrame, test: pd.DataFrame
) -> None:
    out = _train("LogisticRegression", {"C": 0.5, "max_iter": 300}, transformer, train)
    record = out["training"]
    assert record["estimator"] == "LogisticRegression"
    assert record["params"]["C"] == 0.5
    assert record["n_rows"] == len(train)
    assert record["n_features"] == len(transformer.get_feature_names_out())
    balance = record["class_balance"]
    assert balance["positive"] == int((train["Y"] == ">50K").sum())
    assert balance["positive"] + balance["negative"] == len(train)
    assert 0.15 < balance["positive_rate"] < 0.35
    assert record["fit_seconds"] >= 0
    assert decode("json", encode("json", record)) == record  # canonical JSON, no NaN
    model = out["model"]
    assert [name for name, _ in model.steps] == ["features", "model"]
    assert set(model.predict(test)) <= {0, 1}  # raw rows, label and sensitive columns included


def test_one_class_labels_are_refused(transformer: Any, train: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="one class only"):
        _train("LogisticRegression", {}, transformer, train[train["Y"] == "<=50K"])


@pytest.mark.parametrize("name", sorted(FAST_PARAMS))
def test_each_allow_listed_estimator_trains_and_round_trips(
    name: str, transformer: Any, train: pd.DataFrame, test: pd.DataFrame
) -> None:
    model = _train(name, FAST_PARAMS[name], transformer, train)["model"]
    loaded = load_model(dump_model(model))
    assert type(loaded.named_steps["model"]) is type(model.named_steps["model"])
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    score = "predict_proba" if hasattr(model, "predict_proba") else "decision_function"
    np.testing.assert_array_equal(getattr(loaded, score)(test), getattr(model, score)(test))
    assert (model.predict(test) == (test["Y"] == ">50K")).mean() > 0.7


def test_hinge_sgd_without_probabilities_round_trips(
    transformer: Any, train: pd.DataFrame, test: pd.DataFrame
) -> None:
    model = _train("SGDClassifier", {"max_iter": 20}, transformer, train)["model"]
    assert not hasattr(model, "predict_proba")
    loaded = decode("model", encode("model", model))
    np.testing.assert_array_equal(loaded.decision_function(test), model.decision_function(test))
