"""The evaluate stage on Adult: real metrics, per-group numbers, gates that return findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.errors import ConfigError
from bastion.spec.config import EvaluateConfig, FeaturesConfig, LabelConfig, ModelConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.evaluate import EvaluateStage, check_gates
from bastion.stages.features import build_transformer
from bastion.stages.train import TrainStage

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"
LABEL = LabelConfig(column="Y", positive=">50K")
FEATURES = FeaturesConfig.model_validate(
    {
        "numeric": {
            "columns": ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
        },
        "categorical": {
            "columns": [
                "workclass",
                "marital-status",
                "occupation",
                "relationship",
                "native-country",
            ]
        },
    }
)
ALL_METRICS = [
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
]


def _adult(name: str, n: int | None = None) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, skipinitialspace=True, na_values="?")
    df["Y"] = df["Y"].replace({">50K.": ">50K", "<=50K.": "<=50K"})
    return df.sample(n, random_state=0).reset_index(drop=True) if n else df


def _ctx() -> StageContext:
    return StageContext(
        config=None,  # type: ignore[arg-type]  # train/evaluate read only the seed
        base_dir=DATA,
        seed=42,
        actor="tester",
        run_id="run-test",
        event=lambda a, o, d: None,
    )


def _fit(estimator: str, params: dict[str, Any], train: pd.DataFrame) -> Any:
    columns = FEATURES.numeric.columns + FEATURES.categorical.columns
    transformer = build_transformer(FEATURES).fit(train[columns])
    stage = TrainStage(ModelConfig(estimator=estimator, params=params), LABEL)
    return stage.run(_ctx(), {"transformer": transformer, "train": train})["model"]


def _evaluate(model: Any, test: pd.DataFrame, **config: Any) -> dict[str, Any]:
    stage = EvaluateStage(EvaluateConfig.model_validate(config), LABEL, ["sex", "race"])
    return dict(stage.run(_ctx(), {"model": model, "test": test}))["metrics"]


@pytest.fixture(scope="module")
def test() -> pd.DataFrame:
    return _adult("adult.test")


@pytest.fixture(scope="module")
def boosted(test: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    model = _fit("HistGradientBoostingClassifier", {"max_iter": 50}, _adult("adult.data", 5000))
    return model, _evaluate(
        model, test, metrics=ALL_METRICS, gates={"min_accuracy": 0.84, "min_roc_auc": 0.88}
    )


def test_protocol_attributes() -> None:
    stage = EvaluateStage(EvaluateConfig(), LABEL, ["sex"])
    assert stage.name == "evaluate"
    assert dict(stage.inputs) == {"model": "train.model", "test": "split.test"}
    assert dict(stage.outputs) == {"metrics": "json"}
    assert stage.fingerprint() != EvaluateStage(EvaluateConfig(), LABEL, ["race"]).fingerprint()


def test_boosting_on_adult_reaches_known_quality(
    boosted: tuple[Any, dict[str, Any]], test: pd.DataFrame
) -> None:
    _, out = boosted
    metrics = out["metrics"]
    assert set(metrics) == set(ALL_METRICS)
    assert metrics["accuracy"] > 0.84
    assert metrics["roc_auc"] > 0.88
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert 0 < metrics["brier"] < 0.15 and 0 < metrics["log_loss"] < 0.4
    assert out["passed"] is True
    assert [g["gate"] for g in out["gates"]] == ["min_accuracy", "min_roc_auc"]
    assert out["n_rows"] == len(test) and out["score"] == "probability"
    assert (out["positive_label"], out["negative_label"]) == (">50K", "<=50K")
    assert decode("json", encode("json", out)) == out  # storable: canonical JSON, no NaN


def test_confusion_matrix_calibration_and_roc_are_consistent(
    boosted: tuple[Any, dict[str, Any]], test: pd.DataFrame
) -> None:
    _, out = boosted
    (tn, fp), (fn, tp) = out["confusion_matrix"]["matrix"]
    assert tn + fp + fn + tp == len(test)
    assert tp + fn == int((test["Y"] == ">50K").sum())
    assert (tp + tn) / len(test) == pytest.approx(out["metrics"]["accuracy"])
    cal = out["calibration"]
    assert len(cal["prob_true"]) == len(cal["prob_pred"]) == len(cal["counts"]) <= 10
    assert sum(cal["counts"]) == len(test)
    assert 0 <= cal["ece"] < 0.1
    roc = out["roc_curve"]
    assert 2 <= len(roc["fpr"]) == len(roc["tpr"]) <= 200
    assert roc["fpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)


def test_per_group_metrics_cover_every_row(
    boosted: tuple[Any, dict[str, Any]], test: pd.DataFrame
) -> None:
    _, out = boosted
    assert set(out["groups"]) == {"sex", "race"}
    sex = {g["group"]: g for g in out["groups"]["sex"]["groups"]}
    assert set(sex) == {"Female", "Male"}
    assert sum(g["count"] for g in sex.values()) == len(test)
    assert sex["Male"]["selection_rate"] > sex["Female"]["selection_rate"]  # known Adult skew
    female = test["sex"] == "Female"
    assert sex["Female"]["base_rate"] == pytest.approx((test.loc[female, "Y"] == ">50K").mean())
    summary = out["groups"]["sex"]
    assert summary["demographic_parity_difference"] == pytest.approx(
        sex["Male"]["selection_rate"] - sex["Female"]["selection_rate"]
    )
    assert 0 < summary["disparate_impact_ratio"] < 1
    for row in out["groups"]["race"]["groups"]:
        for key in ("accuracy", "selection_rate", "tpr", "fpr"):
            assert row[key] is None or 0 <= row[key] <= 1


def test_failed_gates_are_findings_not_exceptions(
    boosted: tuple[Any, dict[str, Any]], test: pd.DataFrame
) -> None:
    model, _ = boosted
    out = _evaluate(
        model,
        test.head(2000),
        metrics=["accuracy"],
        gates={"min_accuracy": 0.99, "max_brier": 0.5, "max_log_loss": 0.01, "min_recall": 0.1},
    )
    gates = {g["gate"]: g for g in out["gates"]}
    assert gates["min_accuracy"] == {
        "gate": "min_accuracy",
        "metric": "accuracy",
        "threshold": 0.99,
        "value": out["metrics"]["accuracy"],
        "passed": False,
    }
    assert gates["max_brier"]["passed"] and gates["min_recall"]["passed"]
    assert not gates["max_log_loss"]["passed"]
    assert out["passed"] is False
    assert set(out["metrics"]) == {"accuracy", "brier", "log_loss", "recall"}  # gated → computed


def test_scores_without_probabilities(test: pd.DataFrame) -> None:
    model = _fit("RidgeClassifier", {}, _adult("adult.data", 2000))
    out = _evaluate(
        model,
        test.head(2000),
        metrics=["accuracy", "roc_auc", "log_loss"],
        gates={"max_brier": 0.3},
    )
    assert out["score"] == "decision_function"
    assert out["metrics"]["roc_auc"] > 0.8
    assert out["metrics"]["log_loss"] is None and out["calibration"] is None
    assert out["gates"][0]["value"] is None and out["passed"] is False  # unmeasurable fails


def test_empty_or_incomplete_test_tables_are_refused(
    boosted: tuple[Any, dict[str, Any]], test: pd.DataFrame
) -> None:
    model, _ = boosted
    with pytest.raises(ConfigError, match="test table is empty"):
        _evaluate(model, test.head(0))
    with pytest.raises(ConfigError, match=r"data\.sensitive: column\(s\) \['race'\]"):
        _evaluate(model, test.drop(columns=["race"]))


def test_check_gates_directions() -> None:
    gates = check_gates(
        {"min_f1": 0.5, "max_brier": 0.2, "min_recall": 0.5},
        {"f1": 0.5, "brier": 0.2000001, "recall": None},
    )
    assert [(g["gate"], g["passed"]) for g in gates] == [
        ("max_brier", False),
        ("min_f1", True),
        ("min_recall", False),
    ]
