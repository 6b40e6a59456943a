"""Issue 13, item 6: every audit has its section in the run report (its plot embedded, its
gates with PASS/FAIL, its warnings and seconds) and its summary in the model card, the
numbers beside the gates; drawn from result JSON made by the real measurement libraries on
small data. Hostile group names are escaped, and a result with keys missing is rendered as
far as it goes, with what is missing named."""

from __future__ import annotations

import ast
import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from bastion.audits.base import AuditResult, check_gates
from bastion.audits.constraints import Constraints
from bastion.audits.fairness import fairness_audit
from bastion.audits.membership import attribute_inference, membership_audit
from bastion.audits.mitigation import mitigate
from bastion.audits.robustness import robustness_curve
from bastion.compliance.model_card import build_model_card
from bastion.compliance.plots import plot_membership_roc
from bastion.compliance.report import render_run_report
from tests.helpers.audit_data import SCHEMA, synthetic_audit_data

HOSTILE = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMPLIANCE = Path(__file__).resolve().parents[3] / "src" / "bastion" / "compliance"


def _result(name: str, values: dict[str, Any], gates: dict[str, float], **parts: Any) -> Any:
    """A result as the audit stage stores it: gates judged, then to JSON and back."""
    result = AuditResult(name, values, **parts)
    result.gates = check_gates(gates, values)
    result.passed = all(g["passed"] for g in result.gates)
    result.seconds = 1.25
    return json.loads(json.dumps(result.to_json()))


def _worst(found: dict[str, Any], key: str, pick: Any) -> tuple[float, list[float]]:
    parts = [*found["attributes"].values(), found["intersectional"]]
    part = pick((p for p in parts if p[key] is not None), key=lambda p: p[key])
    return part[key], part["intervals"][key]


@pytest.fixture(scope="module")
def audits() -> dict[str, Any]:
    """One result per audit, from fairness_audit, mitigate, robustness_curve,
    membership_audit and attribute_inference on a small synthetic table."""
    data = synthetic_audit_data(LogisticRegression(), n_train=400, n_test=400, seed=4)
    test = data.test.copy()
    test.loc[test.index[:60], "work"] = HOSTILE  # a hostile category, large enough to score
    X, y = data.xy(test)
    pred = np.asarray(data.model.predict(X))
    found = fairness_audit(test, ["sex", "work"], y, pred, n_boot=200, seed=0)
    features = data.transformer.transform(X)
    mitigated = mitigate(LogisticRegression(), features, y, test["sex"], method="threshold", seed=0)
    mitigation = {k: mitigated[k] for k in ("method", "constraint", "before", "after")}
    values, intervals = {}, {}
    for key, pick in (
        ("demographic_parity_difference", max),
        ("equalized_odds_difference", max),
        ("disparate_impact_ratio", min),
    ):
        values[key], intervals[key] = _worst(found, key, pick)
    warnings = [w for part in found["attributes"].values() for w in part["warnings"]]
    fairness = _result(
        "fairness",
        values,
        {"max_demographic_parity_difference": 0.01, "min_disparate_impact_ratio": 0.1},
        intervals=intervals,
        details={**found, "mitigation": mitigation},
        warnings=[*warnings, f"hostile note {HOSTILE}"],
    )

    constraints = Constraints.from_schema(SCHEMA, data.transformer, sensitive=["sex"])
    rows, y_rows = X.head(120), y[:120]
    curve = robustness_curve(
        data.estimator, data.transformer, constraints, rows, y_rows, [0.0, 0.1, 0.25, 0.5, 1.0]
    )
    at = curve.robust_accuracy[curve.budgets.index(0.25)]
    robustness = _result(
        "robustness",
        {"robust_accuracy": at, "clean_accuracy": curve.clean_accuracy},
        {"min_robust_accuracy": 0.5},
        details=curve.to_dict()
        | {"budget": 0.25, "immutable": sorted(constraints.immutable), "attack": "pgd"},
        sanity=curve.sanity,
    )

    train_X, train_y = data.xy(data.train)
    half = len(X) // 2
    found_mia = membership_audit(
        data.model,
        functools.partial(clone, data.model),
        (train_X, train_y),
        (X.iloc[:half], y[:half]),
        (X.iloc[half:], y[half:]),
        references=2,
        resamples=100,
    )
    rmia = found_mia.attacks["rmia"]
    membership = _result(
        "membership",
        {
            "membership_auc": rmia.auc,
            "membership_tpr_at_1pct_fpr": rmia.tpr_at_1pct_fpr,
            "membership_tpr_at_0_1pct_fpr": rmia.tpr_at_01pct_fpr,
        },
        {"max_membership_auc": 0.6},
        intervals={"membership_auc": rmia.auc_ci},
        details=found_mia.to_json(),
        warnings=list(found_mia.warnings),
    )

    others = X.drop(columns=["sex"])
    with threadpool_limits(1):  # its gradient boosting's OpenMP threads, on a shared machine
        inferred = attribute_inference(
            others, X["sex"], data.model.predict_proba(X), name="sex", resamples=100
        )
    inference = _result(
        "attribute_inference",
        {"attribute_inference_advantage": inferred.advantage},
        {"max_attribute_inference_advantage": 0.05},
        intervals={"attribute_inference_advantage": inferred.advantage_ci},
        details={"attributes": {"sex": inferred.to_json()}},
    )

    extraction = _result(  # the extraction library's layout (bastion.audits.extraction)
        "extraction",
        {"extraction_queries_90pct": 300.0, "extraction_fidelity": 0.96},
        {"min_extraction_queries_90pct": 1000},
        intervals={"extraction_fidelity": [0.94, 0.97]},
        details={
            "strategies": {
                "synthetic": {
                    "queries": [100, 300, 1000],
                    "fidelity": [0.71, 0.86, 0.93],
                    "fidelity_ci": [[0.67, 0.75], [0.83, 0.89], [0.91, 0.95]],
                    "queries_90pct": 1000,
                },
                "pool": {
                    "queries": [100, 300, 1000],
                    "fidelity": [0.84, 0.92, 0.96],
                    "fidelity_ci": [[0.8, 0.87], [0.9, 0.94], [0.94, 0.97]],
                    "queries_90pct": 300,
                },
            },
            "output": "label",
            "round": None,
            "evaluation_rows": 400,
            "pool_rows": 400,
            "lower_bound": False,
        },
    )
    return {
        "fairness": fairness,
        "robustness": robustness,
        "membership": membership,
        "attribute_inference": inference,
        "extraction": extraction,
    }


def _sections(page: str) -> dict[str, str]:
    """Each audit's HTML, from its heading to the next ``<h2>``."""
    parts = re.split(r"(?=<h2>)", page)
    return {
        m.group(1): part
        for part in parts
        if (m := re.match(r"<h2>Audit: (.*?)</h2>", part)) is not None
    }


def _images(html: str) -> list[bytes]:
    found = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', html)
    return [base64.b64decode(data, validate=True) for data in found]


def test_every_audit_has_its_section_its_plot_and_its_gates(
    tmp_path: Path, audits: dict[str, Any]
) -> None:
    page = render_run_report({"run_id": "r", "status": "failed"}, {}, None, tmp_path, audits=audits)
    html = page.read_text(encoding="utf-8")
    sections = _sections(html)
    assert list(sections) == list(audits)
    expected_plots = {
        "fairness": 3,  # sex, work, and the crossed groups
        "robustness": 1,
        "membership": 1,
        "attribute_inference": 0,
        "extraction": 1,
    }
    for name, section in sections.items():
        images = _images(section)
        assert len(images) == expected_plots[name], name
        assert all(png.startswith(PNG_MAGIC) and png.endswith(b"IEND\xaeB`\x82") for png in images)
        for gate in audits[name]["gates"]:
            word, css = ("PASS", "pass") if gate["passed"] else ("FAIL", "fail")
            assert f"<td>{gate['gate']}</td>" in section
            assert f'<td class="{css}">{word}</td>' in section
        assert "1.25 s" in section
        assert "Not in this result" not in section
    # the files beside the report are the embedded images
    for file in ("audit_fairness_0_sex.png", "audit_membership_roc.png", "audit_extraction.png"):
        data = base64.b64encode((tmp_path / file).read_bytes()).decode()
        assert data in html
    fairness = sections["fairness"]
    assert "Groups: sex &amp; work" in fairness and "Mitigation: threshold" in fairness
    assert re.search(r"<td>F</td><td>\d+</td><td>0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]</td>", fairness)
    assert "<h3>Sanity checks</h3>" in sections["robustness"]
    assert "TPR at 0.1% FPR" in sections["membership"]
    assert "<td>pool</td><td>300</td>" in sections["extraction"]
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["audits"] == json.loads(json.dumps(audits))
    assert "audit_robustness.png" in document["plots"]


def test_hostile_group_names_and_warnings_are_escaped(
    tmp_path: Path, audits: dict[str, Any]
) -> None:
    odd = {"<b>odd</b>": {"values": {"x": 0.5}, "gates": [], "warnings": [HOSTILE], "passed": True}}
    page = render_run_report({}, {}, None, tmp_path, audits={**audits, **odd})
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "<b>odd" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _sections(html)["fairness"]
    assert "Audit: &lt;b&gt;odd&lt;/b&gt;" in html
    card = _card({**audits, **odd})
    assert "<script" not in card.to_html() and "<script" not in card.to_markdown()
    assert "&lt;script&gt;" in card.to_markdown()


def test_missing_keys_are_named_and_the_rest_is_rendered(tmp_path: Path) -> None:
    broken = {
        "fairness": {"values": {}, "details": {"attributes": {"sex": {"groups": "garbage"}}}},
        "robustness": {"audit": "robustness", "gates": [], "passed": False},
        "membership": {"details": {"attacks": {"loss": {"roc": {"fpr": "x", "tpr": [1]}}}}},
        "extraction": "not an object",
        "mystery": {"values": {"leak": 0.25}, "intervals": {"leak": [0.2, 0.3]}, "passed": True},
    }
    page = render_run_report({}, {}, None, tmp_path, audits=broken)
    sections = _sections(page.read_text(encoding="utf-8"))
    assert list(sections) == list(broken)
    assert "result.details" in sections["robustness"] and "result.values" in sections["robustness"]
    assert "details.curve" not in sections["robustness"]  # no details at all: said once
    assert "result.passed" in sections["membership"]
    assert "not a JSON object" in sections["extraction"]
    assert "0.2500 [0.2000, 0.3000]" in sections["mystery"]
    assert "no section for an audit named mystery" in sections["mystery"]
    assert not any(_images(s) for s in sections.values())
    assert not list(tmp_path.glob("audit_*.png"))
    card = _card(broken).to_markdown()
    assert "mystery: measured, no gates" in card and "extraction: the result is not" in card


def _card(audits: dict[str, Any]) -> Any:
    return build_model_card(
        name="m",
        model_ref="m:1",
        description="",
        intended_use="",
        limitations="",
        date="2026-01-01",
        training={},
        spec={},
        metrics={},
        sources=[],
        provenance={},
        audits=audits,
    )


def test_the_card_puts_each_audits_numbers_beside_its_gates(audits: dict[str, Any]) -> None:
    card = _card(audits)
    markdown, html = card.to_markdown(), card.to_html()
    audit_part = markdown.split("## Audits", 1)[1].split("\n## ", 1)[0]
    fairness = audits["fairness"]
    assert "fairness: FAILED. Across the groups of sex, work," in audit_part
    assert "1.25" not in audit_part  # no timing in the card: same model, same card
    dpd = fairness["values"]["demographic_parity_difference"]
    low, high = fairness["intervals"]["demographic_parity_difference"]
    assert f"| demographic_parity_difference | {dpd:.4f} | {low:.4f} to {high:.4f} |" in (
        audit_part
    )
    assert f"| max_demographic_parity_difference | 0.0100 | {dpd:.4f} | FAIL |" in audit_part
    for name, result in audits.items():
        assert f"{name}: {'PASSED' if result['passed'] else 'FAILED'}" in audit_part
        for gate in result["gates"]:
            assert f"| {gate['gate']} |" in audit_part
    assert "| min_extraction_queries_90pct | 1000 | 300 | FAIL |" in audit_part
    assert "took 300 queries" in audit_part
    assert "<h2>Audits</h2>" in html and '<td class="pass">PASS</td>' in html
    assert "No audits were configured." in _card({}).to_markdown()


def test_audit_plots_are_drawn_once_per_distinct_result(
    tmp_path: Path, audits: dict[str, Any]
) -> None:
    cache = tmp_path / "cache"
    render_run_report({}, {}, None, tmp_path / "a", plot_cache=cache, audits=audits)
    drawn = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len([p for p in drawn if p.suffix == ".png"]) == 6
    render_run_report({}, {}, None, tmp_path / "b", plot_cache=cache, audits=audits)
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == drawn


def test_the_membership_roc_is_drawn_from_the_json_alone(audits: dict[str, Any]) -> None:
    """Moved from tests/unit/audits/test_membership.py: the plot lives with the report."""
    details = audits["membership"]["details"]
    png = plot_membership_roc(details)
    assert png is not None and png.startswith(PNG_MAGIC)
    assert plot_membership_roc({"attacks": {}}) is None
    assert plot_membership_roc({"attacks": {"loss": {"roc": {"fpr": [0.0], "tpr": [0.0]}}}})


def test_compliance_reads_json_and_never_imports_the_audits() -> None:
    """The layering rule: the report and the card work from JSON; compliance imports only
    bastion.spec and the base modules, never bastion.audits (nor the stages or pipeline)."""
    forbidden = ("bastion.audits", "bastion.stages", "bastion.pipeline", "bastion.serving")
    for path in COMPLIANCE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(forbidden)]
            assert not bad, f"{path.name} imports {bad}"
