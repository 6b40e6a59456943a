"""Output hardening: each mode reveals only what it promises, and bad settings are named."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.defenses.hardening import OutputPolicy
from bastion.errors import ConfigError

CLASSES = ["<=50K", ">50K", "other"]
PROBA = np.array([[0.123456, 0.654321, 0.222223], [0.7, 0.1, 0.2]])


def test_label_only_is_the_default() -> None:
    assert OutputPolicy().apply(PROBA, CLASSES) == [">50K", "<=50K"]


def test_top_k_returns_the_k_best_rounded() -> None:
    out = OutputPolicy("top_k", k=2, decimals=2).apply(PROBA, CLASSES)
    assert out[0] == [{"label": ">50K", "score": 0.65}, {"label": "other", "score": 0.22}]
    assert out[1] == [{"label": "<=50K", "score": 0.7}, {"label": "other", "score": 0.2}]
    assert len(OutputPolicy("top_k", k=10).apply(PROBA, CLASSES)[0]) == 3


def test_rounded_scores() -> None:
    out = OutputPolicy("rounded", decimals=1).apply(PROBA, CLASSES)
    assert out[0] == {"<=50K": 0.1, ">50K": 0.7, "other": 0.2}


def test_noised_scores_are_valid_and_differ_from_the_truth() -> None:
    proba = np.tile([0.3, 0.6, 0.1], (500, 1))
    out = OutputPolicy("noised", noise_scale=0.05, decimals=3, seed=1).apply(proba, CLASSES)
    scores = np.array([[row[c] for c in CLASSES] for row in out])
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.allclose(scores.sum(axis=1), 1.0, atol=0.01)
    assert not np.allclose(scores, proba, atol=1e-3)
    assert np.allclose(scores.mean(axis=0), [0.3, 0.6, 0.1], atol=0.02)


def test_noise_is_seeded_only_when_asked() -> None:
    a = OutputPolicy("noised", seed=7).apply(PROBA, CLASSES)
    assert a == OutputPolicy("noised", seed=7).apply(PROBA, CLASSES)
    p = np.tile([0.5, 0.3, 0.2], (50, 1))
    assert OutputPolicy("noised", decimals=6).apply(p, CLASSES) != OutputPolicy(
        "noised", decimals=6
    ).apply(p, CLASSES)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mode": "full"}, "mode"),
        ({"k": 0}, "k"),
        ({"decimals": -1}, "decimals"),
        ({"noise_scale": 0.0}, "noise_scale"),
        ({"noise_scale": float("inf")}, "noise_scale"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        OutputPolicy(**kwargs)


def test_proba_shape_and_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="proba"):
        OutputPolicy().apply(np.ones((2, 2)), CLASSES)
    with pytest.raises(ConfigError, match="proba"):
        OutputPolicy().apply(np.array([[np.nan, 0.5, 0.5]]), CLASSES)
