"""Robustness: how much an adversary must change a raw row to flip the model's decision.

Every attack works on raw rows (a DataFrame, as serving feeds the pipeline) through the
fitted feature transformer and the estimator behind it, and every adversarial row is made
valid by :class:`bastion.audits.constraints.Constraints` (immutable and sensitive columns
untouched, declared categories only, integers integral, ranges kept). All work is batched
over the samples: one matrix operation per step, no per-sample Python loop.

- :func:`pgd` (and :func:`fgsm`, one full step): for a differentiable estimator
  (``LogisticRegression``, ``MLPClassifier``), projected gradient descent on the margin
  (true-class logit minus the best other), ℓ∞ or ℓ2, on the mutable numeric columns in the
  transformer's units (standard deviations for a standard scaler). Gradients are analytic
  (the linear layer, or back-propagation through the MLP's layers), not finite differences.
  ``categorical=k`` first swaps up to ``k`` categorical columns per row, greedily, to the
  declared category that lowers the margin most.
- :func:`decision_attack`: for any estimator (tree ensembles, gradient boosting), a
  decision-based search using labels only: start from the nearest pool row the model labels
  differently (immutable columns kept), revert categorical columns that are not needed,
  binary-search toward the original, then a boundary random walk that only accepts a closer
  adversarial row. It reports each row's distance, so one run gives the whole curve.
- :func:`robustness_curve`: robust accuracy against a list of budgets, with the sanity checks
  that run every time — no flips at budget 0, robust accuracy non-increasing in the budget,
  and (white-box) at a huge budget no higher than the majority-class rate; a failed check is
  in ``sanity`` with its detail, never silently dropped. Budget 0 is the row unchanged;
  at every budget above 0 an attack may also swap up to ``categorical`` categorical columns.

The attacks live in :mod:`bastion.audits.whitebox` (FGSM, PGD, the margin gradient) and
:mod:`bastion.audits.blackbox` (the decision-based attack), over the model space of
``bastion.audits._attack_space``; every name stays importable from here.

The numbers are measurements; gates decide.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.audits._attack_space import AttackResult, Norm
from bastion.audits.blackbox import decision_attack
from bastion.audits.constraints import Constraints
from bastion.audits.whitebox import fgsm, margin_grad, pgd

__all__ = [
    "AttackResult",
    "RobustnessResult",
    "decision_attack",
    "fgsm",
    "margin_grad",
    "pgd",
    "robustness_curve",
]

HUGE_BUDGET = 1e3


@dataclass
class RobustnessResult:
    """Robust accuracy against budgets, with the sanity checks."""

    attack: str
    norm: str
    budgets: list[float]
    robust_accuracy: list[float]
    clean_accuracy: float
    majority_rate: float
    n: int
    categorical: int
    sanity: list[dict[str, Any]] = field(default_factory=list)
    # every attack's adversarial rows (not in to_dict), so a caller can check them
    adversarial: list[pd.DataFrame] = field(default_factory=list, repr=False)

    @property
    def sane(self) -> bool:
        return all(s["passed"] for s in self.sanity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "norm": self.norm,
            "n": self.n,
            "categorical": self.categorical,
            "clean_accuracy": self.clean_accuracy,
            "majority_rate": self.majority_rate,
            "curve": [
                {"budget": b, "robust_accuracy": a}
                for b, a in zip(self.budgets, self.robust_accuracy, strict=True)
            ],
            "sanity": self.sanity,
        }


def robustness_curve(
    estimator: Any,
    transformer: Any,
    constraints: Constraints,
    rows: pd.DataFrame,
    y: Any,
    budgets: list[float],
    *,
    attack: Literal["pgd", "decision"] = "pgd",
    norm: Norm = "linf",
    categorical: int = 0,
    pool: pd.DataFrame | None = None,
    steps: int = 20,
    seed: int = 0,
) -> RobustnessResult:
    """Robust accuracy at each budget (ascending), with the sanity checks."""
    truth = np.asarray(y)
    _values, counts = np.unique(truth, return_counts=True)
    majority = float(counts.max() / counts.sum()) if len(truth) else 0.0
    budgets = sorted(float(b) for b in budgets)
    if attack == "pgd":
        runs = {
            b: pgd(
                estimator,
                transformer,
                constraints,
                rows,
                y,
                eps=b,
                norm=norm,
                steps=steps,
                categorical=categorical if b > 0 else 0,  # budget 0: the row unchanged
            )
            for b in sorted({0.0, *budgets})
        }
        zero = runs[0.0]
        adversarial = [run.rows for run in runs.values()]
        acc = [float(np.mean(runs[b].correct & ~runs[b].flipped)) for b in budgets]
        clean = float(np.mean(zero.correct))
        at_zero = float(np.mean(zero.correct & ~zero.flipped))
    else:
        if pool is None:
            raise ValueError("decision attack: a pool of rows to start from is required")
        r = decision_attack(
            estimator, transformer, constraints, rows, y, pool, norm=norm, steps=steps, seed=seed
        )
        dist = r.linf if norm == "linf" else r.l2
        adversarial = [r.rows]
        hit = r.flipped & r.correct
        allowed = r.categorical_changes <= categorical
        acc = [
            float(np.mean(r.correct & ~(hit & allowed & (dist <= b) & (b > 0)))) for b in budgets
        ]
        clean = float(np.mean(r.correct))
        unchanged = (r.categorical_changes == 0) & (dist <= 0)  # flipped with no change: a bug
        at_zero = float(np.mean(r.correct & ~(hit & unchanged)))
    sanity = [
        {
            "check": "no flips at budget 0",
            "passed": at_zero == clean,
            "detail": f"robust accuracy {at_zero:.4f} at budget 0, clean {clean:.4f}",
        },
        {
            "check": "non-increasing in budget",
            "passed": all(b <= a + 1e-12 for a, b in itertools.pairwise(acc)),
            "detail": "robust accuracy " + ", ".join(f"{a:.4f}" for a in acc),
        },
    ]
    if attack == "pgd":
        huge = pgd(
            estimator,
            transformer,
            constraints,
            rows,
            y,
            eps=HUGE_BUDGET,
            norm=norm,
            steps=steps,
            categorical=len(constraints.mutable_categorical),
        )
        at_huge = float(np.mean(huge.correct & ~huge.flipped))
        adversarial.append(huge.rows)
        sanity.append(
            {
                "check": "at most the majority-class rate at a huge budget",
                "passed": at_huge <= majority + 0.02,
                "detail": f"robust accuracy {at_huge:.4f} at budget {HUGE_BUDGET:g},"
                f" majority-class rate {majority:.4f}",
            }
        )
    return RobustnessResult(
        attack, norm, budgets, acc, clean, majority, len(truth), categorical, sanity, adversarial
    )
