"""The robustness audit (bastion.audits.suite.robustness): adversarial rows never break the
schema (and a row that does fails a sanity check), the curve's sanity checks run and pass
on a white-box and a black-box model, budget 0 is clean accuracy, and a gate decides."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from bastion.audits.base import AuditData
from bastion.audits.constraints import Constraints
from bastion.audits.robustness import robustness_curve
from bastion.audits.suite.robustness import (
    RobustnessAudit,
    _schema_check,
    choose_attack,
    wilson,
)
from bastion.errors import ConfigError
from bastion.spec.audits import RobustnessAuditConfig
from tests.helpers.audit_data import SCHEMA, synthetic_audit_data

CHECKS = {"no flips at budget 0", "non-increasing in budget", "adversarial rows keep the schema"}
HUGE = "at most the majority-class rate at a huge budget"


@pytest.fixture(scope="module")
def linear() -> AuditData:
    return synthetic_audit_data(LogisticRegression(), n_train=500, n_test=400, seed=2)


@pytest.fixture(scope="module")
def forest() -> AuditData:
    est = RandomForestClassifier(n_estimators=25, max_depth=8, random_state=0)
    return synthetic_audit_data(est, n_train=500, n_test=400, seed=2)


def _cfg(**kw: object) -> RobustnessAuditConfig:
    return RobustnessAuditConfig.model_validate({"samples": 150, **kw})


def test_auto_picks_pgd_for_a_linear_model_and_decision_for_a_forest(
    linear: AuditData, forest: AuditData
) -> None:
    assert choose_attack("auto", linear.estimator) == "pgd"
    assert choose_attack("auto", forest.estimator) == "decision"
    assert RobustnessAudit(_cfg()).run(linear).details["attack"] == "pgd"
    assert RobustnessAudit(_cfg()).run(forest).details["attack"] == "decision"
    with pytest.raises(ConfigError, match=r"audits\.robustness\.attack"):
        choose_attack("pgd", forest.estimator)


@pytest.mark.parametrize("which", ["linear", "forest"])
def test_sanity_checks_run_and_pass(which: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(which)
    result = RobustnessAudit(_cfg(categorical=1, gates={"min_robust_accuracy": 0.0})).run(data)
    names = {s["check"] for s in result.sanity}
    assert names == (CHECKS | {HUGE} if which == "linear" else CHECKS)
    assert all(s["passed"] for s in result.sanity), result.sanity
    assert result.passed
    assert result.details["sanity"] == result.sanity
    assert result.details["immutable"] == ["sex"]
    curve = [p["robust_accuracy"] for p in result.details["curve"]]
    assert curve[-1] < curve[0]  # the attack does something


def test_adversarial_rows_keep_the_schema(linear: AuditData) -> None:
    """The rows the audit's attack produces, checked column by column (not only through
    Constraints.check, which the audit itself uses)."""
    cfg = _cfg(categorical=1, norm="linf", immutable=["hours"])
    c = Constraints.from_schema(
        linear.schema, linear.transformer, sensitive=linear.sensitive, immutable=cfg.immutable
    )
    rows, y = linear.xy(linear.test.sample(n=cfg.samples, random_state=linear.seed))
    curve = robustness_curve(
        linear.estimator, linear.transformer, c, rows, y, [0.5, 2.0], norm="linf", categorical=1
    )
    moved = 0
    for adv in curve.adversarial:
        assert (adv["sex"] == rows["sex"]).all() and (adv["hours"] == rows["hours"]).all()
        assert adv["work"].isin(["gov", "private", "self"]).all()
        assert (adv["age"] == np.round(adv["age"])).all() and adv["age"].between(17, 90).all()
        moved += int((adv["age"] != rows["age"]).sum() + (adv["work"] != rows["work"]).sum())
    assert moved > 0
    result = RobustnessAudit(cfg).run(linear)
    check = next(s for s in result.sanity if s["check"] == "adversarial rows keep the schema")
    assert check["passed"], check


def test_a_row_that_breaks_the_schema_fails_the_check(linear: AuditData) -> None:
    c = Constraints.from_schema(linear.schema, linear.transformer, sensitive=["sex"])
    rows, _ = linear.xy(linear.test.head(5))
    bad = rows.copy()
    bad["age"] = bad["age"].astype(float)
    bad.loc[bad.index[1], "age"] = 40.5
    bad.loc[bad.index[3], "sex"] = "M" if rows["sex"].iloc[3] == "F" else "F"
    check = _schema_check(c, [rows, bad], rows)
    assert not check["passed"]
    assert "row 1, column 'age': must be an integer" in check["detail"]
    assert "row 3, column 'sex': is immutable but changed" in check["detail"]
    assert "40.5" not in check["detail"]  # the rule, never the value
    assert _schema_check(c, [rows], rows)["passed"]


def test_a_gap_may_stay_but_never_appear(linear: AuditData) -> None:
    """A missing value in the original (a nullable column) is not a violation when the
    attack leaves it; a gap the attack creates is."""
    c = Constraints.from_schema(linear.schema, linear.transformer, sensitive=["sex"])
    rows, _ = linear.xy(linear.test.head(4))
    rows = rows.astype({"age": float})
    rows.loc[rows.index[0], ["work", "age"]] = [np.nan, np.nan]
    assert _schema_check(c, [rows.copy()], rows)["passed"]
    new = rows.copy()
    new.loc[new.index[2], ["work", "age"]] = [np.nan, np.nan]
    check = _schema_check(c, [new], rows)
    assert not check["passed"]
    assert "row 2, column 'work': not a declared category" in check["detail"]
    assert "row 2, column 'age': outside [17.0, 90.0]" in check["detail"]


@pytest.mark.parametrize("which", ["linear", "forest"])
def test_budget_zero_is_clean_accuracy(which: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(which)
    result = RobustnessAudit(_cfg(budget=0.0, categorical=1)).run(data)
    assert result.values["robust_accuracy"] == result.values["clean_accuracy"]
    rows, y = data.xy(data.test.sample(n=150, random_state=data.seed))
    assert result.values["clean_accuracy"] == np.mean(data.model.predict(rows) == y)


def test_a_perfect_robustness_gate_fails(linear: AuditData) -> None:
    gate = {"min_robust_accuracy": 1.0}
    result = RobustnessAudit(_cfg(budget=0.5, gates=gate)).run(linear)
    robust, clean = result.values["robust_accuracy"], result.values["clean_accuracy"]
    assert robust is not None and clean is not None and robust < clean
    assert not result.passed and not result.gates[0]["passed"]
    low, high = result.intervals["robust_accuracy"]
    assert low < robust < high
    loose = RobustnessAudit(_cfg(budget=0.5, gates={"min_robust_accuracy": 0.0})).run(linear)
    assert loose.passed


def test_budget_is_added_to_the_budgets(linear: AuditData) -> None:
    result = RobustnessAudit(_cfg(budgets=[0.0, 1.0], budget=0.3)).run(linear)
    assert [p["budget"] for p in result.details["curve"]] == [0.0, 0.3, 1.0]
    assert result.details["budget"] == 0.3
    assert result.values["robust_accuracy"] == result.details["curve"][1]["robust_accuracy"]


def test_unknown_immutable_columns_are_named(linear: AuditData) -> None:
    audit = RobustnessAudit(_cfg(immutable=["age", "colour"], budget=0.3, budgets=[1.0]))
    assert audit.load_problems(list(SCHEMA), ["sex"]) == [
        (("immutable", "1"), "column 'colour' is not in data.schema")
    ]
    with pytest.raises(ConfigError, match="colour"):
        audit.run(linear)


def test_wilson_interval() -> None:
    assert wilson(90, 100) == pytest.approx([0.8256, 0.9448], abs=1e-4)  # the textbook pair
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
