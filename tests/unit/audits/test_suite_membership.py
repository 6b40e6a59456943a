"""The membership and attribute-inference audits as the pipeline runs them: a memorising
forest is refused by a membership gate that a regularised model passes, the gated numbers
are the strongest attack's, the worker count changes nothing, and an attribute the model's
scores reveal is caught per attribute by its gate."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from bastion.audits.base import AuditData
from bastion.audits.executor import LocalExecutor
from bastion.audits.suite import audit_for
from bastion.audits.suite.membership import AttributeInferenceAudit, MembershipAudit
from bastion.spec.audits import AttributeInferenceAuditConfig, MembershipAuditConfig
from bastion.spec.config import FeaturesConfig
from tests.helpers.audit_data import FEATURES, SCHEMA, fitted, synthetic_table

GATE = {"max_membership_tpr_at_1pct_fpr": 0.10}
FIELDS = {
    "membership_auc": "auc",
    "membership_tpr_at_1pct_fpr": "tpr_at_1pct_fpr",
    "membership_tpr_at_0_1pct_fpr": "tpr_at_01pct_fpr",
}


def _data(estimator: Any, features: FeaturesConfig = FEATURES, **extra: Any) -> AuditData:
    # a noisy label (noise 2.0), so a forest without depth limit memorises its rows
    train, test = synthetic_table(1000, 0, noise=2.0), synthetic_table(2000, 1, noise=2.0)
    return AuditData(
        model=fitted(estimator, train, features),
        train=train,
        test=test,
        label="y",
        positive="yes",
        sensitive=("sex",),
        schema=SCHEMA,
        seed=3,
        **extra,
    )


@pytest.fixture(scope="module")
def forest() -> AuditData:
    return _data(RandomForestClassifier(n_estimators=100, random_state=0))


@pytest.fixture(scope="module")
def refused(forest: AuditData) -> Any:
    config = MembershipAuditConfig(gates=GATE, samples=1000, resamples=200)
    return MembershipAudit(config).run(forest)


def test_a_memorising_forest_is_refused_by_the_membership_gate(refused: Any) -> None:
    assert refused.values["membership_tpr_at_1pct_fpr"] > 0.10
    assert refused.values["membership_auc"] > 0.75
    assert refused.passed is False
    (gate,) = refused.gates
    assert gate["gate"] == "max_membership_tpr_at_1pct_fpr" and gate["passed"] is False
    assert refused.details["members"] == 1000 and refused.details["nonmembers"] == 1000
    assert refused.details["population"] == 1000


def test_the_gated_numbers_are_the_strongest_attacks(refused: Any) -> None:
    attacks = refused.details["attacks"]
    assert set(attacks) == {"loss", "rmia"}
    for value, field in FIELDS.items():
        best = max(a[field] for a in attacks.values())
        assert refused.values[value] == best
        chosen = refused.details["strongest_per_value"][value]
        assert attacks[chosen][field] == best
        assert refused.intervals[value] == attacks[chosen][f"{field}_ci"]
    # RMIA beats the LOSS baseline at low FPR on a memorising model
    assert refused.details["strongest"] == "rmia"
    assert attacks["rmia"]["tpr_at_1pct_fpr"] > attacks["loss"]["tpr_at_1pct_fpr"]
    roc = attacks["rmia"]["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) > 10 and roc["fpr"][-1] == 1.0


def test_a_regularised_model_passes_the_same_gate() -> None:
    data = _data(LogisticRegression(max_iter=500))
    config = MembershipAuditConfig(gates=GATE, samples=1000, resamples=200)
    result = MembershipAudit(config).run(data)
    assert (result.values["membership_tpr_at_1pct_fpr"] or 1.0) < 0.05
    assert (result.values["membership_auc"] or 1.0) < 0.56
    assert result.passed is True


def test_one_or_two_workers_give_the_same_result(
    forest: AuditData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    config = MembershipAuditConfig(samples=300, resamples=50, references=2)
    found = []
    for workers in (1, 2):
        data = AuditData(**{**vars(forest), "executor": LocalExecutor(workers)})
        assert data.executor.workers == workers  # type: ignore[attr-defined]
        found.append(MembershipAudit(config).measure(data))
    assert found[0].values == found[1].values
    assert found[0].details == found[1].details


def test_progress_is_reported(forest: AuditData) -> None:
    seen: list[tuple[int, int]] = []
    data = AuditData(
        **{**vars(forest), "progress": lambda done, total, _what: seen.append((done, total))}
    )
    MembershipAudit(MembershipAuditConfig(samples=100, resamples=0, references=1)).measure(data)
    assert seen[0] == (0, 1) and seen[-1] == (1, 1)


def test_the_audit_is_found_by_name() -> None:
    assert isinstance(audit_for("membership", MembershipAuditConfig()), MembershipAudit)
    audit = audit_for("attribute_inference", AttributeInferenceAuditConfig())
    assert isinstance(audit, AttributeInferenceAudit)
    with pytest.raises(TypeError, match="membership: expected a MembershipAuditConfig"):
        MembershipAudit(AttributeInferenceAuditConfig())


# ---------------------------------------------------------------- attribute inference

BLIND = FeaturesConfig.model_validate(
    {"numeric": {"columns": ["age", "hours", "gain"]}, "categorical": {"columns": ["work"]}}
)


def _inference(data: AuditData, gate: float, attributes: list[str]) -> Any:
    config = AttributeInferenceAuditConfig(
        attributes=attributes,
        samples=500,
        resamples=200,
        gates={"max_attribute_inference_advantage": gate},
    )
    return AttributeInferenceAudit(config).run(data)


def test_an_attribute_the_scores_reveal_fails_its_gate(forest: AuditData) -> None:
    # the forest reads sex, whose value shifts the label: its scores reveal sex
    result = _inference(forest, 0.05, ["sex", "work"])
    per = result.details["attributes"]
    assert set(per) == {"sex", "work"} and per["sex"]["rows"] == 500
    assert per["sex"]["advantage"] > 0.05
    assert result.values["attribute_inference_advantage"] == max(
        p["advantage"] for p in per.values()
    )
    largest = result.details["largest"]
    assert result.intervals["attribute_inference_advantage"] == per[largest]["advantage_ci"]
    assert result.passed is False


def test_a_model_that_never_reads_the_attribute_passes() -> None:
    # without sex among its inputs the scores are a function of the other features only
    data = _data(LogisticRegression(max_iter=500), BLIND)
    result = _inference(data, 0.05, ["sex"])
    sex = result.details["attributes"]["sex"]
    assert abs(sex["advantage"]) < 0.05
    assert result.passed is True


def test_attribute_columns_are_checked_at_load_and_at_run(forest: AuditData) -> None:
    audit = AttributeInferenceAudit(AttributeInferenceAuditConfig(attributes=["sex", "religion"]))
    assert audit.load_problems(list(SCHEMA), ["sex"]) == [
        (("attributes", "1"), "column 'religion' is not in data.schema")
    ]
    assert AttributeInferenceAudit(AttributeInferenceAuditConfig()).load_problems(
        list(SCHEMA), []
    ) == [(("attributes",), "no attributes given and data.sensitive is empty")]
    with pytest.raises(ValueError, match=r"attributes\[1\]: no column 'religion'"):
        audit.measure(forest)


def test_no_attribute_to_attack_leaves_the_value_unmeasured_and_the_gate_failed(
    forest: AuditData,
) -> None:
    data = AuditData(**{**vars(forest), "sensitive": ()})
    config = AttributeInferenceAuditConfig(gates={"max_attribute_inference_advantage": 0.5})
    result = AttributeInferenceAudit(config).run(data)
    assert result.values == {"attribute_inference_advantage": None}
    assert result.passed is False and result.warnings
