"""The features stage on real Adult rows: what goes in, what is kept aside, what comes out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.errors import ConfigError
from bastion.spec.config import DataConfig, FeaturesConfig
from bastion.spec.stage import StageContext, decode, encode
from bastion.stages.features import FeaturesStage
from tests.helpers.adult import ADULT_TYPES, DATA

NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "native-country"]
COLUMNS = ADULT_TYPES  # from the example pipeline file


def _data(**overrides: Any) -> DataConfig:
    doc: dict[str, Any] = {
        "sources": {"train": {"format": "csv", "path": "adult.data", "sha256": "0" * 64}},
        "schema": {c: {"type": t, "nullable": True} for c, t in COLUMNS.items()},
        "label": {"column": "Y", "positive": ">50K"},
        "sensitive": ["sex", "race"],
    }
    return DataConfig.model_validate({**doc, **overrides})


def _features(**overrides: Any) -> FeaturesConfig:
    doc: dict[str, Any] = {
        "numeric": {"columns": NUMERIC},
        "categorical": {"columns": CATEGORICAL},
        "drop": ["fnlwgt"],
    }
    return FeaturesConfig.model_validate({**doc, **overrides})


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    df = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values="?")
    return df.sample(3000, random_state=0).reset_index(drop=True)


@pytest.fixture
def audit() -> list[tuple[str, str, dict[str, Any]]]:
    return []


def _run(
    features: FeaturesConfig,
    data: DataConfig,
    table: pd.DataFrame,
    audit: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    ctx = StageContext(
        config=None,  # type: ignore[arg-type]  # the features stage never reads it
        base_dir=DATA,
        seed=0,
        actor="tester",
        run_id="run-test",
        event=lambda a, o, d: (audit if audit is not None else []).append((a, o, dict(d))),
    )
    return dict(FeaturesStage(features, data).run(ctx, {"train": table}))


def test_protocol_attributes() -> None:
    stage = FeaturesStage(_features(), _data())
    assert stage.name == "features"
    assert dict(stage.inputs) == {"train": "split.train"}
    assert dict(stage.outputs) == {"transformer": "model", "spec": "json"}
    assert stage.fingerprint() != FeaturesStage(_features(drop=[]), _data()).fingerprint()


def test_sensitive_columns_are_kept_aside_by_default(train: pd.DataFrame) -> None:
    out = _run(_features(), _data(), train)
    spec, transformer = out["spec"], out["transformer"]
    assert spec["sensitive_kept_aside"] == ["sex", "race"]
    assert spec["sensitive_used"] == []
    assert not [n for n in spec["output_features"] if "sex" in n or "race" in n]
    assert set(spec["dropped"]) == {"fnlwgt", "education"}
    assert list(transformer.feature_names_in_) == NUMERIC + CATEGORICAL
    assert transformer.transform(train).shape == (len(train), spec["n_output_features"])


def test_sensitive_columns_become_features_only_with_use_sensitive(
    train: pd.DataFrame, audit: list[tuple[str, str, dict[str, Any]]]
) -> None:
    features = _features(categorical={"columns": [*CATEGORICAL, "sex"]}, use_sensitive=True)
    spec = _run(features, _data(), train, audit)["spec"]
    assert spec["sensitive_used"] == ["sex"]
    assert spec["sensitive_kept_aside"] == ["race"]
    assert {"categorical__sex_Female", "categorical__sex_Male"} <= set(spec["output_features"])
    assert ("features.sensitive_used", "ok", {"columns": ["sex"]}) in audit

    without = _features(categorical={"columns": [*CATEGORICAL, "sex"]})
    with pytest.raises(
        ConfigError, match=r"features\.categorical\.columns: sensitive column 'sex'"
    ):
        _run(without, _data(), train)


def test_pii_is_never_a_feature(train: pd.DataFrame) -> None:
    features = _features(numeric={"columns": [*NUMERIC, "fnlwgt"]}, drop=[], use_sensitive=True)
    with pytest.raises(ConfigError, match=r"features\.numeric\.columns: PII column 'fnlwgt'"):
        _run(features, _data(pii={"fnlwgt": {"policy": "drop"}}), train)
    spec = _run(_features(drop=[]), _data(pii={"fnlwgt": {"policy": "drop"}}), train)["spec"]
    assert spec["pii_excluded"] == ["fnlwgt"]
    assert "fnlwgt" not in spec["dropped"]


def test_label_and_bad_column_lists_are_refused(train: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="the label 'Y' cannot be a feature"):
        _run(_features(categorical={"columns": ["Y"]}), _data(), train)
    with pytest.raises(ConfigError, match="no feature columns"):
        _run(_features(numeric={"columns": []}, categorical={"columns": []}), _data(), train)
    with pytest.raises(ConfigError, match=r"also under features\.drop"):
        _run(_features(drop=["age"]), _data(), train)
    with pytest.raises(ConfigError, match=r"\['shoe-size'\] are not in the training table"):
        _run(_features(numeric={"columns": ["shoe-size"]}), _data(), train)


def test_every_option_builds_and_handles_unseen_values(train: pd.DataFrame) -> None:
    features = _features(
        numeric={"columns": NUMERIC, "impute": "constant", "scale": "minmax"},
        categorical={"columns": CATEGORICAL, "impute": "constant", "encode": "ordinal"},
    )
    out = _run(features, _data(), train)
    assert out["spec"]["n_output_features"] == len(NUMERIC) + len(CATEGORICAL)
    odd = train.head(3).copy()
    odd["workclass"] = "Astronaut"
    odd.loc[0, "age"] = np.nan
    encoded = out["transformer"].transform(odd)
    assert np.all(encoded[:, len(NUMERIC)] == -1)  # unknown category → -1
    assert np.isfinite(encoded).all()

    capped = _features(
        categorical={"columns": ["native-country"], "max_categories": 5},
        numeric={"columns": ["age"], "impute": "mean", "scale": "robust"},
    )
    spec = _run(capped, _data(), train)["spec"]
    assert spec["n_output_features"] == 1 + 5
    passthrough = _features(
        numeric={"columns": ["age"], "impute": "none", "scale": "none"},
        categorical={"columns": ["sex"], "impute": "none"},
        use_sensitive=True,
    )
    assert _run(passthrough, _data(), train)["spec"]["n_output_features"] == 1 + 2


def test_transformer_round_trips_through_the_store_encoding(train: pd.DataFrame) -> None:
    out = _run(_features(), _data(), train)
    again = decode("model", encode("model", out["transformer"]))
    np.testing.assert_array_equal(again.transform(train), out["transformer"].transform(train))
    assert decode("json", encode("json", out["spec"])) == out["spec"]
