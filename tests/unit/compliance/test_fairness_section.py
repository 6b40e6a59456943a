"""Issue 12, item 4 in the reports: a numeric sensitive attribute's bins are said (quantile
or declared, with the edges), too-small groups are marked rather than scored, and a
warning names an attribute with too many groups, in the run report, its JSON twin and the
model card."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bastion.compliance.model_card import build_model_card
from bastion.compliance.report import render_run_report
from bastion.spec.config import EvaluateConfig, FeaturesConfig, LabelConfig, ModelConfig
from bastion.spec.stage import StageContext
from bastion.stages.evaluate import EvaluateStage
from bastion.stages.features import build_transformer
from bastion.stages.train import TrainStage

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"
LABEL = LabelConfig(column="Y", positive=">50K")


def _adult(name: str, n: int) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, skipinitialspace=True, na_values="?")
    df["Y"] = df["Y"].replace({">50K.": ">50K", "<=50K.": "<=50K"})
    return df.sample(n, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[StageContext, Any, pd.DataFrame]:
    """A small logistic regression on Adult (age kept out of its features), and a test set."""
    features = FeaturesConfig.model_validate(
        {
            "numeric": {"columns": ["education-num", "hours-per-week", "capital-gain"]},
            "categorical": {"columns": ["marital-status", "relationship", "occupation"]},
        }
    )
    train, test = _adult("adult.data", 2000), _adult("adult.test", 1500)
    ctx = StageContext(
        config=None,  # type: ignore[arg-type]
        base_dir=DATA,
        seed=1,
        actor="t",
        run_id="r",
        event=lambda a, o, d: None,
    )
    columns = features.numeric.columns + features.categorical.columns
    transformer = build_transformer(features).fit(train[columns])
    model = TrainStage(ModelConfig(estimator="LogisticRegression"), LABEL).run(
        ctx, {"transformer": transformer, "train": train}
    )["model"]
    return ctx, model, test


def _evaluate(fitted: tuple[StageContext, Any, pd.DataFrame], **fairness: Any) -> dict[str, Any]:
    ctx, model, test = fitted
    config = EvaluateConfig.model_validate({"fairness": fairness})
    stage = EvaluateStage(config, LABEL, ["sex", "race", "age"])
    return dict(stage.run(ctx, {"model": model, "test": test})["metrics"])


@pytest.fixture(scope="module")
def metrics(fitted: tuple[StageContext, Any, pd.DataFrame]) -> dict[str, Any]:
    """Real evaluate output with sex, race and age sensitive; warned past 4 groups."""
    return _evaluate(fitted, max_groups=4)


def test_declared_bins_and_minimum_reach_the_stage(
    fitted: tuple[StageContext, Any, pd.DataFrame],
) -> None:
    out = _evaluate(fitted, bins={"age": [30, 60]}, min_group_size=200)
    age = out["groups"]["age"]
    assert age["binning"] == {"method": "declared", "edges": [30, 60]}
    assert [g["group"] for g in age["groups"]] == ["<30", "[30, 60)", ">=60"]
    assert age["min_group_size"] == 200
    race = {g["group"]: g for g in out["groups"]["race"]["groups"]}
    assert race["White"]["too_small"] is False and race["Black"]["too_small"] is True
    fingerprints = {
        EvaluateStage(EvaluateConfig.model_validate({"fairness": f}), LABEL, ["age"]).fingerprint()[
            "evaluate"
        ]["fairness"]["min_group_size"]
        for f in ({}, {"min_group_size": 200})
    }
    assert fingerprints == {30, 200}  # the cache key covers the fairness settings


def test_the_stage_bins_age_and_marks_small_race_groups(metrics: dict[str, Any]) -> None:
    age = metrics["groups"]["age"]
    assert age["binning"]["method"] == "quantile" and len(age["binning"]["edges"]) == 3
    assert all(isinstance(e, int) for e in age["binning"]["edges"])
    assert len(age["groups"]) == 4 and age["scored_groups"] == 4
    race = metrics["groups"]["race"]
    small = [g["group"] for g in race["groups"] if g["too_small"]]
    assert small and all(g["count"] < 30 for g in race["groups"] if g["too_small"])
    assert metrics["groups"]["sex"]["binning"] is None
    assert metrics["warnings"] == [
        "sensitive attribute 'race' has 5 groups (more than 4): declare bins for it in"
        " evaluate.fairness.bins, or choose a coarser attribute"
    ]


def test_the_run_report_says_how_groups_were_made(tmp_path: Path, metrics: dict[str, Any]) -> None:
    page = render_run_report({"run_id": "r", "status": "passed"}, metrics, None, tmp_path)
    html = page.read_text(encoding="utf-8")
    age = html[html.index("<h2>Groups: age</h2>") :]
    edges = ", ".join(str(e) for e in metrics["groups"]["age"]["binning"]["edges"])
    assert "cut into 4 quantile bins of the test set (no bins declared; edges rounded):" in age
    assert f"edges {edges}." in age
    assert f"<td>&lt;{metrics['groups']['age']['binning']['edges'][0]}</td>" in age
    race = html[html.index("<h2>Groups: race</h2>") : html.index("<h2>Groups: age</h2>")]
    assert "<td>too small</td>" in race
    assert "of fewer than 30 rows are marked too small" in race
    assert re.search(r"<p class=\"warn\">Warning: sensitive attribute &#x27;race&#x27; has 5", race)
    document = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert document["metrics"]["groups"]["age"]["binning"]["method"] == "quantile"
    assert document["metrics"]["warnings"] == metrics["warnings"]


def test_a_declared_binning_is_named_as_declared(tmp_path: Path, metrics: dict[str, Any]) -> None:
    found = {
        "groups": [{"group": "<40", "count": 10, "too_small": True}],
        "binning": {"method": "declared", "edges": [40, 60.5]},
        "min_group_size": 30,
        "warnings": [],
    }
    html = render_run_report({}, {"groups": {"age": found}}, None, tmp_path).read_text()
    assert "cut at the declared bin edges 40, 60.5." in html


def test_the_model_card_carries_the_same_sentences(metrics: dict[str, Any]) -> None:
    card = build_model_card(
        name="adult-income",
        model_ref="adult-income:1",
        description="",
        intended_use="",
        limitations="",
        date="2026-01-01",
        training={},
        spec={},
        metrics=metrics,
        sources=[],
        provenance={},
    )
    markdown = card.to_markdown()
    assert "quantile bins of the test set" in markdown
    assert "too small" in markdown
    assert "Warning: sensitive attribute 'race' has 5 groups" in markdown
    assert "<td>too small</td>" in card.to_html()
