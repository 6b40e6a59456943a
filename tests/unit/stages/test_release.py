"""The release stage writes a model card that says what the model is — and cannot be used
to inject script or Markdown through config text or data values."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from bastion.spec.config import PipelineConfig
from bastion.spec.stage import Material, StageContext
from bastion.stages.evaluate import EvaluateStage
from bastion.stages.features import FeaturesStage
from bastion.stages.release import ReleaseStage
from bastion.stages.train import TrainStage
from tests.helpers.adult import ADULT_TYPES, DATA

PIN = "a5b3a620cb7325a48f5090531afd611ce4622440451a5cfbd11c49be2ed868e5"
HOSTILE = "<script>alert('card')</script>"
TYPES = ADULT_TYPES  # from the example pipeline file


def _config(**release: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "adult-income",
            "seed": 42,
            "data": {
                "sources": {
                    "train": {"format": "csv", "path": "data/adult.data", "sha256": PIN},
                    "db": {
                        "format": "sql",
                        "url": "postgresql://u:secret@db/x",
                        "query": "SELECT 1",
                        "unsafe_unpinned": True,
                    },
                },
                "schema": {c: {"type": t, "nullable": True} for c, t in TYPES.items()},
                "label": {"column": "Y", "positive": ">50K"},
                "sensitive": ["sex", "race"],
            },
            "features": {
                "numeric": {"columns": ["age", "education-num", "hours-per-week"]},
                "categorical": {"columns": ["marital-status", "relationship"]},
            },
            "model": {"estimator": "LogisticRegression", "params": {"C": 0.5}},
            "evaluate": {"metrics": ["accuracy", "roc_auc"], "gates": {"min_accuracy": 0.7}},
            "release": {"name": "adult-income", **release},
        }
    )


def _ctx(config: PipelineConfig, **summary: Any) -> StageContext:
    return StageContext(
        config=config,
        base_dir=DATA,
        seed=config.seed,
        actor="alice",
        run_id="20260101T000000-abcd",
        event=lambda a, o, d: None,
        summary=dict(summary),
    )


def _adult(name: str, n: int) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, skipinitialspace=True, na_values="?")
    df["Y"] = df["Y"].replace({">50K.": ">50K", "<=50K.": "<=50K"})
    return df.sample(n, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def upstream() -> dict[str, Any]:
    """The release stage's inputs, made by the real upstream stages on Adult rows."""
    cfg = _config()
    train, test = _adult("adult.data", 2000), _adult("adult.test", 1000)
    test.loc[:9, "race"] = '<img src=x onerror="alert(1)">'  # a hostile category value
    ctx = _ctx(cfg)
    feats = FeaturesStage(cfg.features, cfg.data).run(ctx, {"train": train})
    trained = TrainStage(cfg.model, cfg.data.label).run(
        ctx, {"transformer": feats["transformer"], "train": train}
    )
    metrics = EvaluateStage(cfg.evaluate, cfg.data.label, cfg.data.sensitive).run(
        ctx, {"model": trained["model"], "test": test}
    )["metrics"]
    return {
        "model": trained["model"],
        "test": test,
        "metrics": metrics,
        "spec": feats["spec"],
        "training": trained["training"],
    }


def _card(
    upstream: dict[str, Any], config: PipelineConfig | None = None, **summary: Any
) -> tuple[str, str]:
    cfg = config or _config()
    out = ReleaseStage(cfg.release).run(_ctx(cfg, **summary), upstream)
    return out["card_md"], out["card_html"]


def test_protocol_attributes() -> None:
    stage = ReleaseStage(_config().release)
    assert stage.name == "release"
    assert dict(stage.inputs) == {
        "model": "train.model",
        "test": "split.test",
        "metrics": "evaluate.metrics",
        "spec": "features.spec",
        "training": "train.training",
    }
    assert dict(stage.outputs) == {
        "card_md": "text",
        "card_html": "text",
        "compiled": "json",
        "parity": "json",
    }
    assert stage.fingerprint() != ReleaseStage(_config(description="x").release).fingerprint()


def test_card_tells_what_the_model_is(upstream: dict[str, Any]) -> None:
    md, page = _card(
        upstream,
        model_ref="adult-income:3",
        config_digest="c" * 64,
        **{"ingest.train": {"rows": 32561}},
    )
    for text in (md, page):
        for needle in (
            "adult-income",
            "LogisticRegression",
            "Intended use",
            "Limitations",
            "Training data",
            PIN,
            "32561",
            "Sensitive attributes kept aside",
            "Per-group metrics",
            "Calibration",
            "Provenance",
            "20260101T000000-abcd",
            "c" * 64,
            "min_accuracy",
            "bastion verify --model adult-income:3",
            "Female",
            "Male",
        ):
            assert needle in text, needle
    assert "# Model card: adult-income 3" in md
    assert "secret" not in md + page  # a SQL URL (with its password) never reaches the card
    assert "UNPINNED" in md


def test_card_without_registration_says_so(upstream: dict[str, Any]) -> None:
    md, _ = _card(upstream)
    assert "bastion verify --model unregistered" in md
    assert re.search(r"Config digest \| [0-9a-f]{64}", md)


def test_hostile_config_text_is_escaped(upstream: dict[str, Any]) -> None:
    cfg = _config(
        description=HOSTILE,
        intended_use="[click](javascript:alert(1)) & more",
        limitations="| a | table |\n<b>bold</b>",
    )
    md, page = _card(upstream, cfg, model_ref="adult-income:1")
    assert "<script>" not in page and "<script>" not in md
    assert "&lt;script&gt;alert(&#x27;card&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert('card')&lt;/script&gt;" in md
    assert "[click](" not in md and "<b>" not in md and "<b>" not in page
    assert "Content-Security-Policy" in page and "script-src" not in page


def test_hostile_data_values_are_escaped(upstream: dict[str, Any]) -> None:
    md, page = _card(upstream)
    assert '<img src=x onerror="alert(1)">' not in page + md
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert '&lt;img src=x onerror="alert(1)"&gt;' in md


def test_materials_and_summary_sources_are_merged(upstream: dict[str, Any]) -> None:
    cfg = _config()
    ctx = _ctx(cfg, sources={"train": {"rows": 123}})
    ctx.materials.append(Material(name="source:extra", sha256="e" * 64, uri="more.csv"))
    md = ReleaseStage(cfg.release).run(ctx, upstream)["card_md"]
    assert "| train | training | csv | data/adult.data | 123 | " + PIN in md
    assert "e" * 64 in md and "more.csv" in md


def test_the_model_is_compiled_and_checked_on_the_test_table(upstream: dict[str, Any]) -> None:
    cfg = _config()
    out = ReleaseStage(cfg.release).run(_ctx(cfg), upstream)
    parity = out["parity"]
    assert parity["status"] == "passed", parity
    assert parity["rows"] == len(upstream["test"]) and parity["max_abs_diff"] <= 1e-6
    assert out["compiled"]["format"] == "bastion.compiled/1"
    assert out["compiled"]["model"]["kind"] == "linear"  # the LogisticRegression


def test_an_unsupported_estimator_is_released_with_parity_unsupported(
    upstream: dict[str, Any],
) -> None:
    cfg = _config()
    rows = upstream["test"][["age", "hours-per-week"]].fillna(0)
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    ridge = Pipeline([("features", FunctionTransformer()), ("model", RidgeClassifier())])
    ridge.fit(rows, (rows["age"] > 40).astype(int))
    out = ReleaseStage(cfg.release).run(_ctx(cfg), {**upstream, "model": ridge})
    assert out["parity"]["status"] == "unsupported"
    assert "unsupported" in out["compiled"] and out["card_md"]
