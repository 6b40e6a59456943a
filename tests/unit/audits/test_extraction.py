"""The extraction audit: an attacker copies the model through its served answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from bastion.audits.base import AuditData
from bastion.audits.executor import LocalExecutor
from bastion.audits.extraction import extraction_audit, served_answers, synthetic_queries
from bastion.audits.suite.extraction import ExtractionAudit
from bastion.spec.audits import ExtractionAuditConfig
from bastion.spec.config import ColumnSpec
from tests.helpers.audit_data import SCHEMA, synthetic_audit_data, synthetic_table

QUERIES = [10, 30, 100, 300]


@pytest.fixture(scope="module")
def linear() -> AuditData:
    return synthetic_audit_data(LogisticRegression(), n_test=800)


@pytest.fixture(scope="module")
def tree() -> AuditData:
    return synthetic_audit_data(DecisionTreeClassifier(random_state=0), n_test=800)


def _run(data: AuditData, **config: object):
    return ExtractionAudit(ExtractionAuditConfig.model_validate(config)).run(data)


def test_synthetic_queries_never_break_the_schema() -> None:
    schema = {
        **SCHEMA,
        "gain": ColumnSpec(type="float"),  # no declared range: the training rows' range
        "kids": ColumnSpec(type="int", min=0),  # one bound declared
        "town": ColumnSpec(type="category"),  # no declared categories: the observed ones
    }
    train = synthetic_table(300, seed=3)
    train["kids"] = np.arange(300) % 7
    train["town"] = np.where(np.arange(300) % 2 == 0, "north", "south")
    features = ["age", "hours", "gain", "sex", "work", "kids", "town"]
    for seed in range(5):
        rows = synthetic_queries(schema, features, train, 2000, seed)
        assert list(rows.columns) == features and len(rows) == 2000
        assert rows.age.between(17, 90).all() and rows.age.dtype.kind == "i"
        assert rows.hours.between(1, 99).all()
        assert rows.gain.between(train.gain.min(), train.gain.max()).all()
        assert rows.kids.between(0, 6).all() and rows.kids.dtype.kind == "i"
        assert set(rows.sex) <= {"F", "M"} and set(rows.work) <= {"gov", "private", "self"}
        assert set(rows.town) == {"north", "south"}
        assert not rows.isna().any().any()
        # uniform within the range, not bunched where the data is
        assert rows.age.min() <= 20 and rows.age.max() >= 87
        assert set(rows.work) == {"gov", "private", "self"}


def test_fidelity_rises_with_the_query_count(linear: AuditData) -> None:
    found = extraction_audit(
        linear.model,
        features=linear.features,
        train=linear.train,
        test=linear.test,
        schema=linear.schema,
        queries=QUERIES,
        output="probability",
    )
    assert found.evaluation_rows == 400 and found.pool_rows == 400
    for name, curve in found.strategies.items():
        assert curve.queries == QUERIES
        assert curve.fidelity[-1] >= 0.9, name
        assert curve.fidelity[-1] - curve.fidelity[0] >= 0.15, name
        assert curve.fidelity[-1] > found.constant_fidelity + 0.2, name
        for f, (lo, hi) in zip(curve.fidelity, curve.fidelity_ci, strict=True):
            assert 0 <= lo <= f <= hi <= 1


def test_label_output_serves_labels_and_probability_output_rounded_scores(
    linear: AuditData,
) -> None:
    rows = linear.test[linear.features].iloc[:50]
    labels = served_answers(linear.model, rows, output="label")
    assert set(np.unique(labels)) == {0.0, 1.0} and (labels.sum(axis=1) == 1).all()
    assert (labels.argmax(axis=1) == linear.model.predict(rows)).all()
    scores = served_answers(linear.model, rows, output="probability", round=1)
    assert np.allclose(scores * 10, np.round(scores * 10)) and len(np.unique(scores)) > 2
    full = served_answers(linear.model, rows, output="probability")
    assert np.allclose(full, linear.model.predict_proba(rows))
    for output, rnd in (("label", None), ("probability", 1)):
        result = _run(linear, queries=QUERIES, output=output, round=rnd)
        assert result.details["output"] == output and result.details["round"] == rnd
        assert result.details["soft_labels"] is (output == "probability")
        assert result.values["extraction_fidelity"] >= 0.85
        assert result.intervals["extraction_fidelity"][0] <= result.values["extraction_fidelity"]


def test_a_model_not_copied_within_the_counts_reports_a_lower_bound(tree: AuditData) -> None:
    result = _run(tree, queries=[10, 30, 100], gates={"min_extraction_queries_90pct": 100})
    assert result.details["lower_bound"] is True
    assert all(s["queries_90pct"] is None for s in result.details["strategies"].values())
    assert result.values["extraction_queries_90pct"] == 100
    assert "no strategy reached 90% agreement within 100 queries" in " ".join(result.warnings)
    assert result.passed  # resisted every count tried: the gate's floor holds


def test_the_gate_fails_a_model_copied_with_fewer_queries(linear: AuditData) -> None:
    base = {"queries": QUERIES, "output": "probability"}
    copied = _run(linear, **base, gates={"min_extraction_queries_90pct": 300})
    assert copied.details["lower_bound"] is False
    assert copied.values["extraction_queries_90pct"] == min(
        s["queries_90pct"] for s in copied.details["strategies"].values() if s["queries_90pct"]
    )
    assert copied.values["extraction_queries_90pct"] < 300 and not copied.passed
    assert _run(linear, **base, gates={"min_extraction_queries_90pct": 10}).passed
    assert not _run(linear, **base, gates={"max_extraction_fidelity": 0.5}).passed


def test_workers_do_not_change_the_numbers(linear: AuditData) -> None:
    config = ExtractionAuditConfig(queries=QUERIES, output="probability", round=2)
    one = ExtractionAudit(config).measure(dataclasses.replace(linear, executor=LocalExecutor(1)))
    two = ExtractionAudit(config).measure(dataclasses.replace(linear, executor=LocalExecutor(2)))
    assert one.values == two.values and one.details == two.details
    seen: list[tuple[int, int, str]] = []
    ExtractionAudit(config).measure(
        dataclasses.replace(linear, progress=lambda d, t, w: seen.append((d, t, w)))
    )
    assert seen and seen[-1][0] == seen[-1][1] == 2 * len(QUERIES)


def test_a_pool_too_small_for_a_count_skips_it_and_says_so(linear: AuditData) -> None:
    # the pool is one half of the held-out rows; the other half is only for evaluation
    small = dataclasses.replace(linear, test=linear.test.iloc[:120])
    result = _run(small, queries=[10, 30, 100], strategies=["pool"])
    assert result.details["pool_rows"] == 60 and result.details["evaluation_rows"] == 60
    assert result.details["strategies"]["pool"]["queries"] == [10, 30]
    assert any("the pool has 60 rows" in w for w in result.warnings)


def test_gates_that_can_never_be_measured_are_found_at_load() -> None:
    audit = ExtractionAudit(
        ExtractionAuditConfig(
            queries=[100, 300],
            round=2,
            gates={"min_extraction_queries_90pct": 1000, "min_extraction_fidelity": 1.5},
        )
    )
    problems = dict(audit.load_problems(["age"], ["sex"]))
    assert set(problems) == {
        ("gates", "min_extraction_queries_90pct"),
        ("gates", "min_extraction_fidelity"),
        ("round",),
    }
    assert "largest query count (300)" in problems[("gates", "min_extraction_queries_90pct")]
    fine = ExtractionAudit(ExtractionAuditConfig(gates={"min_extraction_queries_90pct": 3000}))
    assert fine.load_problems(["age"], ["sex"]) == []


def test_public_rows_with_missing_values_are_queried_and_no_resamples_gives_a_point() -> None:
    # Adult's pool has nulls (workclass, occupation): the attacker queries them as they are.
    data = synthetic_audit_data(LogisticRegression(), n_train=200, n_test=200)
    test = data.test.copy()
    test.loc[test.index[:5], "work"] = pd.NA
    found = extraction_audit(
        data.model,
        features=data.features,
        train=data.train,
        test=test,
        schema=data.schema,
        queries=[50],
        resamples=0,
    )
    pool = found.strategies["pool"]
    assert pool.queries == [50] and 0.5 <= pool.fidelity[0] <= 1
    assert pool.fidelity_ci == [[pool.fidelity[0], pool.fidelity[0]]]
