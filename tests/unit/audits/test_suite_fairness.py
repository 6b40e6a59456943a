"""The fairness audit (bastion.audits.suite.fairness): its numbers are the library's and
fairlearn's, its gates decide, and mitigation reports a fairer copy without replacing the
model that ships."""

from __future__ import annotations

import sys

import fairlearn.metrics as fairlearn_metrics
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.audits.base import AuditData
from bastion.audits.fairness import fairness_audit
from bastion.audits.suite.fairness import FairnessAudit
from bastion.errors import ConfigError
from bastion.spec.audits import FairnessAuditConfig
from bastion.spec.config import FairnessConfig
from tests.helpers.audit_data import synthetic_audit_data


@pytest.fixture(scope="module")
def data() -> AuditData:
    return synthetic_audit_data(LogisticRegression(), n_train=600, n_test=600, seed=3)


def _predictions(data: AuditData) -> tuple[np.ndarray, np.ndarray]:
    X, y = data.xy(data.test)
    return y, np.asarray(data.model.predict(X))


def test_values_are_the_librarys_and_fairlearns(data: AuditData) -> None:
    result = FairnessAudit(FairnessAuditConfig(resamples=0)).run(data)
    y, pred = _predictions(data)
    sex = data.test["sex"]
    frame = fairlearn_metrics.MetricFrame(
        metrics=fairlearn_metrics.selection_rate, y_true=y, y_pred=pred, sensitive_features=sex
    )
    dpd = result.values["demographic_parity_difference"]
    assert dpd is not None and dpd > 0.01  # a measurable gap, so equality means something
    assert dpd == pytest.approx(frame.difference(), abs=1e-9)
    eod = fairlearn_metrics.equalized_odds_difference(y, pred, sensitive_features=sex)
    assert result.values["equalized_odds_difference"] == pytest.approx(eod, abs=1e-9)
    ratio = fairlearn_metrics.demographic_parity_ratio(y, pred, sensitive_features=sex)
    assert result.values["disparate_impact_ratio"] == pytest.approx(ratio, abs=1e-9)
    assert (
        result.details["attributes"]["sex"]
        == fairness_audit(data.test, ["sex"], y, pred, n_boot=0, numeric=[])["attributes"]["sex"]
    )
    assert result.details["mitigation"] is None


def test_the_worst_attribute_and_its_interval_are_gated(data: AuditData) -> None:
    cfg = FairnessAuditConfig(attributes=["sex", "work", "age"], resamples=200)
    result = FairnessAudit(cfg).run(data)
    y, pred = _predictions(data)
    lib = fairness_audit(
        data.test, ["sex", "work", "age"], y, pred, n_boot=200, seed=data.seed, numeric=["age"]
    )
    parts = [*lib["attributes"].values(), lib["intersectional"]]
    assert result.details["attributes"] == lib["attributes"]
    assert result.details["intersectional"] == lib["intersectional"]
    assert result.details["attributes"]["age"]["binning"]["method"] == "quantile"
    for metric, pick in (
        ("demographic_parity_difference", max),
        ("equalized_odds_difference", max),
        ("disparate_impact_ratio", min),
    ):
        worst = pick((p for p in parts if p[metric] is not None), key=lambda p: p[metric])
        assert result.values[metric] == worst[metric]
        assert result.intervals[metric] == worst["intervals"][metric]


def test_intersectional_off_leaves_only_the_attributes(data: AuditData) -> None:
    cfg = FairnessAuditConfig(attributes=["sex", "work"], intersectional=False, resamples=0)
    result = FairnessAudit(cfg).run(data)
    assert result.details["intersectional"] is None
    gaps = [a["demographic_parity_difference"] for a in result.details["attributes"].values()]
    assert result.values["demographic_parity_difference"] == max(gaps)


def test_group_sizes_come_from_evaluate_fairness(data: AuditData) -> None:
    from dataclasses import replace

    tiny = replace(data, fairness=FairnessConfig(min_group_size=10_000))
    result = FairnessAudit(FairnessAuditConfig(resamples=0)).run(tiny)
    assert result.values["demographic_parity_difference"] is None
    assert any("no differences" in w for w in result.warnings)
    gated = FairnessAudit(
        FairnessAuditConfig(resamples=0, gates={"max_demographic_parity_difference": 1.0})
    ).run(tiny)
    assert not gated.passed  # a gate on an unmeasured number fails


def test_a_parity_gate_passes_loose_and_fails_strict(data: AuditData) -> None:
    def run(threshold: float) -> bool:
        gates = {"max_demographic_parity_difference": threshold}
        return FairnessAudit(FairnessAuditConfig(resamples=0, gates=gates)).run(data).passed

    assert run(0.5)
    assert not run(0.001)


def test_mitigation_reports_a_fairer_copy_and_gates_the_shipped_model(data: AuditData) -> None:
    plain = FairnessAudit(FairnessAuditConfig(resamples=0)).run(data)
    cfg = FairnessAuditConfig(
        resamples=0,
        mitigation={"method": "threshold_optimizer", "constraint": "demographic_parity"},
    )
    result = FairnessAudit(cfg).run(data)
    mit = result.details["mitigation"]
    assert mit["attribute"] == "sex" and mit["method"] == "threshold_optimizer"
    before, after = mit["before"], mit["after"]
    for side in (before, after):
        assert 0.5 < side["accuracy"] <= 1.0
    assert before["demographic_parity_difference"] == pytest.approx(
        plain.values["demographic_parity_difference"]
    )
    assert after["demographic_parity_difference"] < before["demographic_parity_difference"]
    assert result.values == plain.values  # the gated numbers stay the shipped model's


def test_mitigation_without_fairlearn_names_the_extra(
    data: AuditData, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "fairlearn" or m.startswith("fairlearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "fairlearn", None)
    cfg = FairnessAuditConfig(mitigation={"method": "threshold_optimizer"})
    with pytest.raises(ConfigError, match=r"pip install 'bastion-ml\[fairness\]'"):
        FairnessAudit(cfg).run(data)


def test_unknown_attributes_are_named(data: AuditData) -> None:
    cfg = FairnessAuditConfig(
        attributes=["sex", "colour"],
        mitigation={"method": "threshold_optimizer", "attribute": "work"},
    )
    problems = FairnessAudit(cfg).load_problems(list(data.schema), ["sex"])
    assert (("attributes", "1"), "column 'colour' is not in data.schema") in problems
    assert any(path == ("mitigation", "attribute") for path, _ in problems)
    assert FairnessAudit(FairnessAuditConfig()).load_problems(list(data.schema), ["sex"]) == []
    with pytest.raises(ConfigError, match="colour"):
        FairnessAudit(FairnessAuditConfig(attributes=["colour"])).run(data)
