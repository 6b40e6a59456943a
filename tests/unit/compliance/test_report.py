"""The run report: valid, self-contained HTML with the plots inside, its JSON twin, PNGs on
disk, written atomically, and no way for run or data values to inject markup."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bastion.compliance.report import PLOTS, render_run_report
from bastion.spec.config import EvaluateConfig, FeaturesConfig, LabelConfig, ModelConfig
from bastion.spec.stage import StageContext
from bastion.stages.evaluate import EvaluateStage
from bastion.stages.features import build_transformer
from bastion.stages.train import TrainStage

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data"
LABEL = LabelConfig(column="Y", positive=">50K")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


def _adult(name: str, n: int) -> pd.DataFrame:
    df = pd.read_csv(DATA / name, skipinitialspace=True, na_values="?")
    df["Y"] = df["Y"].replace({">50K.": ">50K", "<=50K.": "<=50K"})
    return df.sample(n, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    """Real evaluate-stage output for a small logistic regression on Adult."""
    features = FeaturesConfig.model_validate(
        {
            "numeric": {"columns": ["age", "education-num", "hours-per-week", "capital-gain"]},
            "categorical": {"columns": ["marital-status", "relationship", "occupation"]},
        }
    )
    train, test = _adult("adult.data", 2000), _adult("adult.test", 1500)
    test.loc[:4, "race"] = "<script>alert(1)</script> $x$"
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
    stage = EvaluateStage(
        EvaluateConfig(gates={"min_accuracy": 0.8, "min_roc_auc": 0.95}), LABEL, ["sex", "race"]
    )
    return dict(stage.run(ctx, {"model": model, "test": test})["metrics"])


def _run(**overrides: Any) -> dict[str, Any]:
    run = {
        "run_id": "20260101T000000-abcd",
        "pipeline": "adult-income",
        "status": "failed",
        "pipeline_file": "examples/adult-income/pipeline.yaml",
        "config_digest": "c" * 64,
        "actor": "alice",
        "started": "2026-01-01T00:00:00Z",
        "seed": 42,
        "model": None,
        "stages": [
            {
                "name": "ingest.train",
                "status": "done",
                "cached": True,
                "seconds": 0.01,
                "outputs": {"table": "d" * 64},
                "statement": "s1",
            },
            {
                "name": "train",
                "status": "done",
                "cached": False,
                "seconds": 1.5,
                "outputs": {"model": "e" * 64, "training": "f" * 64},
                "statement": "s2",
            },
            {
                "name": "release",
                "status": "skipped",
                "cached": False,
                "seconds": 0.0,
                "outputs": {},
                "statement": None,
            },
        ],
        "environment": {"python": "3.11.7", "packages": {"scikit-learn": "1.9.1"}},
    }
    return {**run, **overrides}


VALIDATION = {
    "train": {
        "source": "train",
        "policy": "quarantine",
        "rows_in": 100,
        "rows_out": 98,
        "quarantined": 2,
        "checks": {"range": 2, "null": 0},
        "violations_total": 2,
        "violations": [
            {
                "row": 3,
                "column": "age",
                "check": "range",
                "value": "<b>999</b>",
                "expected": "between 17 and 90",
            }
        ],
    }
}


class _Checker(HTMLParser):
    """Collects images and checks every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def test_report_writes_html_json_and_plots(tmp_path: Path, metrics: dict[str, Any]) -> None:
    out = tmp_path / "reports" / "run"
    path = render_run_report(_run(), metrics, VALIDATION, out)
    assert path == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == sorted([*PLOTS, "report.html", "report.json"])
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
        assert (out / name).stat().st_mode & 0o777 == 0o600
    page = path.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.scripts == 0
    embedded = [
        base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in checker.images
    ]
    assert embedded == [(out / name).read_bytes() for name in PLOTS]  # self-contained
    for name in PLOTS:
        assert f'href="{name}"' in page
    for needle in (
        "adult-income",
        "20260101T000000-abcd",
        "min_roc_auc",
        "FAIL",
        "ingest.train",
        "Female",
        "quarantined",
        "scikit-learn",
    ):
        assert needle in page, needle
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["run"]["run_id"] == "20260101T000000-abcd"
    assert document["metrics"] == json.loads(json.dumps(metrics))
    assert document["gates"] == metrics["gates"]
    assert document["validation"] == VALIDATION
    assert document["plots"] == sorted(PLOTS)


def test_run_and_data_values_cannot_inject_markup(tmp_path: Path, metrics: dict[str, Any]) -> None:
    run = _run(pipeline='"><script>alert("run")</script>', error="<img src=x onerror=alert(1)>")
    page = render_run_report(run, metrics, VALIDATION, tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in page and "<img src=x" not in page and "<b>999" not in page
    assert "&lt;script&gt;alert(&quot;run&quot;)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; $x$" in page  # the hostile group value
    assert re.search(
        r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'', page
    )


def test_report_of_a_run_that_failed_before_evaluation(tmp_path: Path) -> None:
    run = _run(status="error", error="ingest.train: SHA-256 mismatch", stages=[])
    path = render_run_report(run, {}, None, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    page = path.read_text(encoding="utf-8")
    assert "SHA-256 mismatch" in page and "No gates were evaluated" in page
    assert json.loads((tmp_path / "report.json").read_text())["metrics"] == {}


def test_rewriting_a_report_replaces_it_atomically(tmp_path: Path, metrics: dict[str, Any]) -> None:
    render_run_report(_run(status="failed"), metrics, None, tmp_path)
    render_run_report(_run(status="passed"), metrics, None, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert json.loads((tmp_path / "report.json").read_text())["run"]["status"] == "passed"


def test_plots_are_drawn_once_per_distinct_input(tmp_path: Path, metrics: dict[str, Any]) -> None:
    cache = tmp_path / "plots"
    screen = {"counts": {"duplicates": {"exact_duplicate": 3}}, "policies": {"duplicates": "flag"}}
    validation = {"train": {**VALIDATION["train"], "screen": screen}}
    first = render_run_report(_run(), metrics, validation, tmp_path / "a", plot_cache=cache)
    drawn = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len([p for p in drawn if p.suffix == ".png"]) == len(PLOTS) + 1  # + the screen's
    again = render_run_report(_run(), metrics, validation, tmp_path / "b", plot_cache=cache)
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == drawn  # nothing redrawn
    for name in (*PLOTS, "screen_train.png"):
        assert (first.parent / name).read_bytes() == (again.parent / name).read_bytes()
    # the screen plot shows the policies too: a new policy is a new plot
    screen["policies"] = {"duplicates": "quarantine"}
    render_run_report(_run(), metrics, validation, tmp_path / "c", plot_cache=cache)
    assert len([p for p in cache.iterdir() if p.suffix == ".png"]) == len(PLOTS) + 2


def test_the_poisoning_screen_plot_is_embedded_like_every_other(
    tmp_path: Path, metrics: dict[str, Any]
) -> None:
    """The page's CSP allows only data: images: a plot linked by file name is a broken
    image in every browser (issue 12, item 2)."""
    screen = {"counts": {"duplicates": {"exact_duplicate": 3}}, "policies": {"duplicates": "flag"}}
    validation = {"train": {**VALIDATION["train"], "screen": screen}}
    page = render_run_report(_run(), metrics, validation, tmp_path).read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    assert len(checker.images) == len(PLOTS) + 1
    assert all(src.startswith("data:image/png;base64,") for src in checker.images)
    embedded = base64.b64decode(checker.images[-1].removeprefix("data:image/png;base64,"))
    assert embedded == (tmp_path / "screen_train.png").read_bytes()
    assert 'href="screen_train.png"' in page
