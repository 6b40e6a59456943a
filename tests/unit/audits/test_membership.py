"""Membership and attribute inference: the sort-based RMIA score equals the dense N×Z form,
the metrics equal scikit-learn's and known ROC points, a memorising model leaks and a
regularised one does not, RMIA beats the LOSS baseline, and an attribute the model's
outputs reveal is inferred better with them."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bastion.audits.membership import (
    attack_metrics,
    attribute_inference,
    membership_audit,
    rmia_scores,
    true_label_probability,
)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_sort_scores_equal_the_dense_matrix_exactly(gamma: float) -> None:
    rng = np.random.default_rng(0)
    # rounded, so there are many ties between x and z
    rx = np.round(rng.lognormal(size=700), 2)
    rz = np.round(rng.lognormal(size=500), 2)
    dense = (rx[:, None] / rz[None, :] >= gamma).mean(axis=1)
    assert np.array_equal(rmia_scores(rx, rz, gamma), dense)


def test_rmia_scores_refuse_a_bad_gamma() -> None:
    with pytest.raises(ValueError, match="gamma: expected a number > 0, got 0"):
        rmia_scores(np.ones(2), np.ones(2), 0)


def test_metrics_equal_sklearn_and_known_roc_points() -> None:
    rng = np.random.default_rng(1)
    s_in = np.round(rng.normal(0.7, 1, size=400), 1)
    s_out = np.round(rng.normal(0, 1, size=300), 1)
    m = attack_metrics(s_in, s_out, resamples=200)
    truth = np.r_[np.ones(400), np.zeros(300)]
    assert m.auc == pytest.approx(roc_auc_score(truth, np.r_[s_in, s_out]), abs=1e-12)
    assert m.auc_ci[0] < m.auc < m.auc_ci[1]
    # 100 non-members: 1% FPR is exactly the first non-member
    known = attack_metrics(np.arange(10.0, 60.0), np.arange(0.0, 100.0), resamples=0)
    # non-members 60..99 outrank every member: 1% FPR is reached before any member
    assert known.tpr_at_1pct_fpr == 0.0
    flipped = attack_metrics(np.arange(100.0, 150.0), np.arange(0.0, 100.0), resamples=0)
    assert flipped.tpr_at_1pct_fpr == 1.0 and flipped.auc == 1.0
    # one member above all non-members, one below: TPR jumps to 0.5 at FPR 0, then the
    # non-member at 50 lifts FPR to 0.01 before the next member, interpolation gives 0.5
    half = attack_metrics(np.array([200.0, -1.0]), np.arange(0.0, 100.0), resamples=0)
    assert half.tpr_at_1pct_fpr == 0.5 and half.tpr_at_01pct_fpr == 0.5


def test_interpolation_between_roc_points() -> None:
    # members tied with the top non-member: the ROC goes (0,0) -> (0.01, 1.0) in one step,
    # so at 0.1% FPR the TPR is a tenth of the way up
    m = attack_metrics(np.full(10, 99.0), np.arange(0.0, 100.0), resamples=0)
    assert m.tpr_at_01pct_fpr == pytest.approx(0.1)
    assert m.tpr_at_1pct_fpr == pytest.approx(1.0)


def test_metrics_need_both_sides() -> None:
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        attack_metrics(np.ones(3), np.array([]))


def _noisy(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    y = (X[:, 0] + rng.normal(scale=1.5, size=n) > 0).astype(int)
    return X, y


def _audit(model: object, seed: int, **kw: object):  # type: ignore[no-untyped-def]
    X, y = _noisy(seed)
    model.fit(X[:500], y[:500])  # type: ignore[attr-defined]
    return membership_audit(
        model,
        functools.partial(clone, model),
        (X[:500], y[:500]),
        (X[500:1000], y[500:1000]),
        (X[1000:], y[1000:]),
        resamples=200,
        seed=seed,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_memorising_forest_leaks_and_a_regularised_model_does_not(seed: int) -> None:
    forest = _audit(RandomForestClassifier(n_estimators=50, random_state=0), seed)
    ridge = _audit(LogisticRegression(C=1e-3), seed)
    assert forest.attacks["rmia"].tpr_at_1pct_fpr > 0.3
    assert forest.attacks["rmia"].tpr_at_1pct_fpr_ci[0] > 0.1
    for attack in ("rmia", "loss"):
        assert ridge.attacks[attack].tpr_at_1pct_fpr < 0.05
        assert 0.4 < ridge.attacks[attack].auc < 0.6


@pytest.mark.parametrize("seed", [0, 1])
def test_rmia_beats_the_loss_baseline_on_an_overfit_forest(seed: int) -> None:
    result = _audit(RandomForestClassifier(n_estimators=50, random_state=0), seed)
    rmia, loss = result.attacks["rmia"], result.attacks["loss"]
    assert rmia.tpr_at_1pct_fpr > loss.tpr_at_1pct_fpr + 0.1
    assert rmia.auc > loss.auc


def test_result_is_json_with_its_roc_points() -> None:
    """The run report draws the log-log ROC from this JSON (tests/unit/compliance/
    test_audit_sections.py)."""
    result = _audit(RandomForestClassifier(n_estimators=10, random_state=0), 2, references=2)
    data = json.loads(json.dumps(result.to_json()))
    assert set(data["attacks"]) == {"loss", "rmia"}
    assert data["members"] == 500 and data["population"] == 2000 and data["references"] == 2
    roc = data["attacks"]["rmia"]["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) <= 201 and roc["fpr"][-1] == 1.0
    assert np.all(np.diff(roc["tpr"]) >= 0)
    assert data["warnings"] and "0.1% FPR" in data["warnings"][0]


def test_bad_inputs_are_named() -> None:
    X, y = _noisy(0, 100)
    model = LogisticRegression().fit(X, y)
    factory = functools.partial(clone, model)
    with pytest.raises(ValueError, match="nonmembers: 10 rows but 9 labels"):
        membership_audit(model, factory, (X, y), (X[:10], y[:9]), (X, y))
    with pytest.raises(ValueError, match="references: expected a whole number >= 1, got 0"):
        membership_audit(model, factory, (X, y), (X, y), (X, y), references=0)


def test_true_label_probability_is_zero_for_an_unseen_label() -> None:
    X, y = _noisy(0, 100)
    model = LogisticRegression().fit(X, y)
    p = true_label_probability(model, X[:3], np.array([0, 1, 7]))
    assert p[2] == 0.0 and 0 < p[0] < 1 and 0 < p[1] < 1


def _attribute_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    other = rng.normal(size=(1500, 4))
    s = rng.integers(0, 2, size=1500)  # independent of the other features
    return other, s


def test_outputs_that_reveal_the_attribute_give_an_advantage() -> None:
    other, s = _attribute_data(0)
    rng = np.random.default_rng(1)
    score = 1 / (1 + np.exp(-(other[:, 0] + 2.5 * (s - 0.5) + rng.normal(scale=0.3, size=1500))))
    result = attribute_inference(other, s, np.c_[1 - score, score], name="sex", resamples=300)
    assert result.accuracy_without_model < 0.56
    assert result.advantage > 0.2 and result.advantage_ci[0] > 0.1
    assert result.to_json()["attribute"] == "sex"


def test_outputs_blind_to_the_attribute_give_none() -> None:
    other, s = _attribute_data(2)
    score = 1 / (1 + np.exp(-other[:, 0]))
    result = attribute_inference(other, s, np.c_[1 - score, score], name="race", resamples=300)
    assert abs(result.advantage) < 0.05
    assert result.advantage_ci[0] < 0.02


def test_a_frame_with_text_columns_is_encoded_for_the_attacker() -> None:
    import pandas as pd

    rng = np.random.default_rng(4)
    s = rng.integers(0, 2, size=1200)
    # the text column carries the attribute (a proxy); the model's outputs add nothing
    proxy = np.where(rng.random(1200) < 0.85, s, 1 - s)
    frame = pd.DataFrame(
        {"job": np.array(["clerk", "nurse"], dtype=object)[proxy], "hours": rng.normal(size=1200)}
    )
    flat = np.full((1200, 2), 0.5)
    result = attribute_inference(frame, s, flat, name="sex", resamples=200)
    assert result.accuracy_without_model == pytest.approx(0.85, abs=0.04)
    assert abs(result.advantage) < 0.03


def test_the_bootstrap_summaries_equal_the_curve_they_summarise() -> None:
    from bastion.audits import roc_metrics as m

    rng = np.random.default_rng(5)
    for _ in range(20):
        n1, n0 = rng.integers(1, 300, size=2)
        digits = int(rng.integers(0, 3))
        s_in = np.round(rng.normal(0.5, 1, n1), digits)
        s_out = np.round(rng.normal(0, 1, n0), digits)
        r_in, r_out, u = m._distinct_rank(s_in, s_out)
        c_in = m._resampled_counts(r_in, u, 10, rng)
        c_out = m._resampled_counts(r_out, u, 10, rng)
        fpr, tpr = m._curves(c_in.astype(float), c_out.astype(float))
        auc = (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(axis=1)
        want = np.stack([auc, m._tpr_at(fpr, tpr, 0.01), m._tpr_at(fpr, tpr, 0.001)], axis=1)
        assert np.allclose(m._summaries(c_in, c_out), want, rtol=0, atol=1e-12)
