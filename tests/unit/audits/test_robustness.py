"""bastion.audits.robustness and .constraints: adversarial rows never break the schema, PGD
finds a 1-D logistic regression's boundary at its distance, batched equals per-sample, and
the sanity checks run and report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from bastion.audits.constraints import Constraints
from bastion.audits.robustness import (
    decision_attack,
    fgsm,
    margin_grad,
    pgd,
    robustness_curve,
)
from bastion.spec.config import ColumnSpec, FeaturesConfig
from bastion.stages.features import build_transformer
from tests.helpers.audit_data import synthetic_table

SCHEMA = {
    "age": ColumnSpec(type="int", min=17, max=90),
    "hours": ColumnSpec(type="float", min=1, max=99),
    "gain": ColumnSpec(type="float"),
    "sex": ColumnSpec(type="category", categories=["F", "M"]),
    "work": ColumnSpec(type="category", categories=["gov", "private", "self"]),
}


def _table(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rows = synthetic_table(n, seed)
    return rows.drop(columns="y"), (rows.pop("y") == "yes").astype(int).to_numpy()


def _fitted(model: Any) -> tuple[Any, Any, Constraints, pd.DataFrame, np.ndarray]:
    rows, y = _table(400)
    feats = FeaturesConfig.model_validate(
        {
            "numeric": {"columns": ["age", "hours", "gain"]},
            "categorical": {"columns": ["sex", "work"]},
            "use_sensitive": True,
        }
    )
    tf = build_transformer(feats)
    X = tf.fit_transform(rows)
    model.fit(X, y)
    c = Constraints.from_schema(SCHEMA, tf, sensitive=["sex"], immutable=["age"])
    return model, tf, c, rows, y


def _assert_valid(c: Constraints, adv: pd.DataFrame, rows: pd.DataFrame) -> None:
    assert c.check(adv, rows) == []
    assert (adv.sex.to_numpy() == rows.sex.to_numpy()).all()
    assert (adv.age.to_numpy() == rows.age.to_numpy()).all()
    assert adv.work.isin(["gov", "private", "self"]).all()
    assert adv.hours.between(1, 99).all()


def test_constraints_from_schema_and_project_make_any_candidate_valid() -> None:
    _, _tf, c, rows, _ = _fitted(LogisticRegression())
    assert c.immutable == {"sex", "age"}
    assert c.integer == {"age"}
    assert c.ranges["hours"] == (1.0, 99.0)
    # a standard scaler: one unit is one standard deviation
    assert c.slope["gain"] == pytest.approx(1 / rows.gain.std(ddof=0))
    bad = rows.head(5).copy()
    bad["age"] = [200, 3, 40, 41, 42]
    bad["hours"] = [-5.0, 500.0, 50.0, 50.0, 50.0]
    bad["sex"] = ["X", "F", "M", "F", "M"]
    bad["work"] = ["army", "gov", "gov", "self", "private"]
    found = c.check(bad, rows.head(5))
    assert {(v.row, v.column) for v in found} >= {(0, "age"), (0, "hours"), (0, "sex"), (0, "work")}
    assert "not a declared category" in str(next(v for v in found if v.column == "work"))
    fixed = c.project(bad, rows.head(5))
    assert c.check(fixed, rows.head(5)) == []


def test_integers_round_toward_the_original() -> None:
    _, tf, _, rows, _ = _fitted(LogisticRegression())
    c = Constraints.from_schema(SCHEMA, tf)
    cand = rows.head(2).copy()
    cand["age"] = [rows.age.iloc[0] + 2.7, rows.age.iloc[1] - 2.7]
    out = c.project(cand, rows.head(2))
    assert list(out.age) == [rows.age.iloc[0] + 2, rows.age.iloc[1] - 2]


@pytest.mark.parametrize(
    "model",
    [LogisticRegression(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, random_state=0)],
)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_white_box_adversarial_rows_never_break_the_schema(model: Any, norm: Any) -> None:
    est, tf, c, rows, y = _fitted(model)
    for eps in (0.5, 5.0, 1e3):
        r = pgd(est, tf, c, rows, y, eps=eps, norm=norm, categorical=1)
        _assert_valid(c, r.rows, rows)
        assert (r.categorical_changes <= 1).all()
        assert (r.flipped & r.correct).any()


def test_gradients_are_the_analytic_ones() -> None:
    est, tf, _c, rows, y = _fitted(
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    )
    X = np.asarray(tf.transform(rows.head(20)), dtype=float)
    m, g = margin_grad(est, X, y[:20])
    h = 1e-6
    for j in range(X.shape[1]):
        e = np.zeros_like(X)
        e[:, j] = h
        num = (margin_grad(est, X + e, y[:20])[0] - margin_grad(est, X - e, y[:20])[0]) / (2 * h)
        assert np.allclose(num, g[:, j], atol=1e-5)
    logit = est.predict_proba(X)[:, 1]
    assert np.allclose(np.where(y[:20] == 1, 1, -1) * np.log(logit / (1 - logit)), m)


def test_pgd_finds_a_1d_boundary_at_its_distance() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 3, 300)
    rows = pd.DataFrame({"x": x})
    y = (x + rng.normal(0, 1, 300) > 10).astype(int)
    tf = build_transformer(FeaturesConfig.model_validate({"numeric": {"columns": ["x"]}}))
    X = tf.fit_transform(rows)
    est = LogisticRegression().fit(X, y)
    c = Constraints.from_schema({"x": ColumnSpec(type="float")}, tf)
    z = X[:, 0]
    boundary = -est.intercept_[0] / est.coef_[0, 0]
    distance = np.abs(z - boundary)
    correct = est.predict(X) == y
    for eps in (0.1, 0.3, 1.0):
        r = pgd(est, tf, c, rows, y, eps=eps, steps=40)
        should = correct & (distance < eps - 1e-6)
        cannot = correct & (distance > eps + 1e-6)
        assert r.flipped[should].all()
        assert not r.flipped[cannot].any()
        assert (r.linf <= eps + 1e-9).all()
        f = fgsm(est, tf, c, rows, y, eps=eps)
        assert (f.flipped[correct] == r.flipped[correct]).all()  # linear: FGSM is exact
    curve = robustness_curve(est, tf, c, rows, y, [0.0, 0.1, 0.3, 1.0, 3.0])
    assert curve.sane, curve.sanity
    expected = [np.mean(correct & (distance >= b)) for b in [0.0, 0.1, 0.3, 1.0, 3.0]]
    assert curve.robust_accuracy == pytest.approx(expected, abs=1 / 300)


def test_batched_equals_per_sample() -> None:
    est, tf, c, rows, y = _fitted(LogisticRegression())
    rows, y = rows.head(12), y[:12]
    batch = pgd(est, tf, c, rows, y, eps=1.0, categorical=1)
    rf, tf2, c2, _, _ = _fitted(RandomForestClassifier(n_estimators=20, random_state=0))
    pool, _ = _table(300, seed=5)
    black = decision_attack(rf, tf2, c2, rows, y, pool, steps=20, seed=3)
    for i in range(len(rows)):
        one = pgd(est, tf, c, rows.iloc[[i]], y[[i]], eps=1.0, categorical=1)
        pd.testing.assert_frame_equal(one.rows, batch.rows.iloc[[i]], check_exact=False)
        assert one.flipped[0] == batch.flipped[i]
        b1 = decision_attack(rf, tf2, c2, rows.iloc[[i]], y[[i]], pool, steps=20, seed=3)
        pd.testing.assert_frame_equal(b1.rows, black.rows.iloc[[i]], check_exact=False)
        assert b1.l2[0] == pytest.approx(black.l2[i])


def test_decision_attack_on_a_forest_is_valid_and_gives_a_sane_curve() -> None:
    est, tf, c, _rows, _y = _fitted(RandomForestClassifier(n_estimators=30, random_state=0))
    test, ty = _table(150, seed=9)
    pool, _ = _table(300, seed=5)
    r = decision_attack(est, tf, c, test, ty, pool, steps=40)
    _assert_valid(c, r.rows, test)
    assert (r.flipped[r.correct]).mean() > 0.5
    curve = robustness_curve(
        est,
        tf,
        c,
        test,
        ty,
        [0, 0.5, 1, 2, 10],
        attack="decision",
        norm="l2",
        pool=pool,
        categorical=1,
    )
    assert curve.sane, curve.sanity
    assert curve.robust_accuracy[0] == curve.clean_accuracy
    assert curve.robust_accuracy[-1] < curve.clean_accuracy


def test_a_weak_attack_fails_the_huge_budget_sanity_check() -> None:
    est, tf, _c, rows, y = _fitted(LogisticRegression())
    # everything immutable: nothing can move, so the huge-budget check must report failure
    frozen = Constraints.from_schema(SCHEMA, tf, sensitive=["sex"], immutable=list(SCHEMA))
    curve = robustness_curve(est, tf, frozen, rows, y, [0, 1])
    checks = {s["check"]: s["passed"] for s in curve.sanity}
    assert checks["no flips at budget 0"] and checks["non-increasing in budget"]
    assert not checks["at most the majority-class rate at a huge budget"]
    assert not curve.sane
    assert "huge budget" in str(curve.to_dict()["sanity"])


def test_mutable_integer_columns_stay_whole_and_in_range() -> None:
    est, tf, _, rows, y = _fitted(LogisticRegression())
    c = Constraints.from_schema(SCHEMA, tf, sensitive=["sex"])
    pool, _ = _table(300, seed=5)
    for r in (
        pgd(est, tf, c, rows, y, eps=3.0, norm="l2", categorical=2),
        decision_attack(est, tf, c, rows, y, pool, steps=20),
    ):
        assert c.check(r.rows, rows) == []
        assert (r.rows.age != rows.age).any()  # it did move the integer column
        assert r.rows.age.between(17, 90).all()
        assert r.rows.age.dtype == rows.age.dtype
