# Over 400 lines, because the white-box attack (analytic gradients for linear and MLP
# models), the decision-based attack and the curve with its sanity checks share one
# model-space helper and are read together.
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

The numbers are measurements; gates decide.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.audits.constraints import Constraints, project_numeric

__all__ = [
    "AttackResult",
    "RobustnessResult",
    "decision_attack",
    "fgsm",
    "margin_grad",
    "pgd",
    "robustness_curve",
]

Norm = Literal["linf", "l2"]
HUGE_BUDGET = 1e3


@dataclass
class AttackResult:
    """Adversarial rows (valid, same index as the input) and, per row, whether the model's
    decision is wrong on them, how far they are (ℓ∞ and ℓ2 over the mutable numeric columns,
    in transformer units) and how many categorical columns changed."""

    rows: pd.DataFrame
    correct: np.ndarray
    flipped: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    categorical_changes: np.ndarray


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


class _Space:
    """The rows in the transformer's output space, and the way back to valid raw rows."""

    def __init__(
        self, estimator: Any, transformer: Any, constraints: Constraints, rows: pd.DataFrame
    ) -> None:
        self.est, self.tf, self.c = estimator, transformer, constraints
        self.index = rows.index
        self.rows = rows.reset_index(drop=True)
        self.X = np.asarray(transformer.transform(rows), dtype=float)
        names = list(constraints.numeric)
        idx = constraints.numeric_indices(transformer)
        self.cols = [idx[names.index(c)] for c in constraints.mutable_numeric]
        self.slope = np.array([constraints.slope[c] for c in constraints.mutable_numeric])
        self.offset = np.array([constraints.offset[c] for c in constraints.mutable_numeric])
        self.Z0 = self.X[:, self.cols].copy()
        self.raw0 = (self.Z0 - self.offset) / self.slope if self.cols else self.Z0
        self.classes = list(estimator.classes_)
        mutable = constraints.mutable_numeric
        self.lo = np.array([constraints.ranges[c][0] for c in mutable])
        self.hi = np.array([constraints.ranges[c][1] for c in mutable])
        self.integral = np.array([c in constraints.integer for c in mutable], dtype=bool)
        self._cats = {c: self._category_blocks(c) for c in constraints.mutable_categorical}

    def labels(self, y: Any) -> np.ndarray:
        lookup = {v: i for i, v in enumerate(self.classes)}
        return np.array([lookup.get(v, -1) for v in np.asarray(y)])

    def _category_blocks(self, col: str) -> tuple[np.ndarray, list[Any], np.ndarray]:
        """Output positions of ``col`` (those its value moves) and, per declared category,
        its encoded block."""
        cats = list(self.c.categories[col])
        probe = pd.concat([self.rows.iloc[[0]]] * len(cats), ignore_index=True)
        probe[col] = cats
        full = np.asarray(self.tf.transform(probe), dtype=float)
        pos = np.flatnonzero(full.max(axis=0) != full.min(axis=0))  # what this column moves
        block = full[:, pos]
        return pos, cats, block

    def valid_z(self, Z: np.ndarray) -> np.ndarray:
        """``Z`` (mutable numerics) with ranges and integers applied, toward the original."""
        raw = (Z - self.offset) / self.slope
        clipped = project_numeric(raw, self.raw0, (self.lo, self.hi), False)
        if self.integral.any():
            whole = project_numeric(raw, self.raw0, (self.lo, self.hi), True)
            clipped = np.where(self.integral, whole, clipped)
        return np.asarray(clipped * self.slope + self.offset)

    def with_z(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        out = X.copy()
        out[:, self.cols] = Z
        return out

    def predict_idx(self, X: np.ndarray) -> np.ndarray:
        """Predicted class positions (``classes_`` is sorted, as scikit-learn keeps it)."""
        return np.asarray(np.searchsorted(np.asarray(self.est.classes_), self.est.predict(X)))

    def raw(self, Z: np.ndarray, cats: dict[str, np.ndarray]) -> pd.DataFrame:
        """Valid raw rows for numerics ``Z`` and categorical values ``cats``."""
        out = self.rows.copy()
        for j, col in enumerate(self.c.mutable_numeric):
            out[col] = (Z[:, j] - self.offset[j]) / self.slope[j]
        for col, values in cats.items():
            out[col] = values
        return self.c.project(out, self.rows)


# ---- analytic margins and gradients -------------------------------------------------------


def _layers(est: Any) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    name = type(est).__name__
    if name == "MLPClassifier":
        return list(est.coefs_), list(est.intercepts_), est.activation
    if hasattr(est, "coef_") and hasattr(est, "intercept_"):
        return [np.asarray(est.coef_).T], [np.atleast_1d(est.intercept_)], "identity"
    raise TypeError(f"{name} has no analytic gradient here; use decision_attack for any model")


_Fn = Callable[..., np.ndarray]
_ACT: dict[str, tuple[_Fn, _Fn]] = {
    "identity": (lambda h: h, lambda h, a: np.ones_like(h)),
    "relu": (lambda h: np.maximum(h, 0), lambda h, a: (h > 0).astype(float)),
    "tanh": (np.tanh, lambda h, a: 1 - a**2),
    "logistic": (lambda h: 1 / (1 + np.exp(-h)), lambda h, a: a * (1 - a)),
}


def margin_grad(est: Any, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the margin (true-class logit minus the best other; ≤ 0 means wrong, up to
    ties) and its gradient with respect to the row ``X`` (transformed space)."""
    _, margin, g = _logits_grad(est, X, y)
    return margin, g


def _logits_grad(
    est: Any, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whether the estimator's decision on each row is wrong (as its ``predict`` decides,
    ties included), the margin, and the margin's gradient."""
    W, b, act = _layers(est)
    fwd, dfwd = _ACT[act]
    pre: list[np.ndarray] = []
    post = [X]
    for i, (w, bias) in enumerate(zip(W, b, strict=True)):
        h = post[-1] @ w + bias
        pre.append(h)
        post.append(h if i == len(W) - 1 else fwd(h))
    out = post[-1]
    n = len(X)
    rows = np.arange(n)
    if out.shape[1] == 1:
        sign = np.where(y == 1, 1.0, -1.0)
        margin = sign * out[:, 0]
        up = sign[:, None]
        wrong = (out[:, 0] > 0).astype(int) != y
    else:
        other = out.copy()
        other[rows, y] = -np.inf
        k = other.argmax(axis=1)
        margin = out[rows, y] - out[rows, k]
        up = np.zeros_like(out)
        up[rows, y] = 1.0
        up[rows, k] = -1.0
        wrong = out.argmax(axis=1) != y
    g = up
    for i in range(len(W) - 1, -1, -1):
        g = g @ W[i].T
        if i > 0:
            g = g * dfwd(pre[i - 1], post[i])
    return wrong, margin, g


# ---- white-box -----------------------------------------------------------------------------


def _swap_categories(
    space: _Space, X: np.ndarray, y: np.ndarray, k: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Up to ``k`` greedy categorical swaps per row, each lowering the margin most."""
    cats = {c: space.rows[c].to_numpy(dtype=object).copy() for c in space._cats}
    changed = {c: np.zeros(len(X), dtype=bool) for c in space._cats}
    X = X.copy()
    for _ in range(k):
        best, _ = margin_grad(space.est, X, y)
        pick = np.full(len(X), -1)
        options: list[tuple[str, int]] = []
        for col, (pos, values, block) in space._cats.items():
            for v in range(len(values)):
                trial = X.copy()
                trial[:, pos] = block[v]
                m, _ = margin_grad(space.est, trial, y)
                better = (m < best - 1e-12) & ~changed[col]
                best = np.where(better, m, best)
                pick = np.where(better, len(options), pick)
                options.append((col, v))
        for o, (col, v) in enumerate(options):
            hit = pick == o
            if hit.any():
                pos, values, block = space._cats[col]
                X[np.ix_(hit, pos)] = block[v]
                cats[col][hit] = values[v]
                changed[col] |= hit
    return X, cats


def pgd(
    estimator: Any,
    transformer: Any,
    constraints: Constraints,
    rows: pd.DataFrame,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
    categorical: int = 0,
) -> AttackResult:
    """Projected gradient descent within ``eps`` (see the module docstring)."""
    space = _Space(estimator, transformer, constraints, rows)
    yi = space.labels(y)
    X, cats = _swap_categories(space, space.X, yi, categorical)
    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    D = np.zeros_like(space.Z0)
    Z = best = space.valid_z(space.Z0)
    found = np.zeros(len(X), dtype=bool)
    todo = steps if eps > 0 and space.cols else 0
    for t in range(todo + 1):  # one forward-backward pass per step, judged at the valid point
        wrong, _, g = _logits_grad(estimator, space.with_z(X, Z), yi)
        new = wrong & ~found
        best[new] = Z[new]
        found |= new
        if t == todo:
            break
        g = g[:, space.cols]
        if norm == "linf":
            D = np.clip(D - alpha * np.sign(g), -eps, eps)
        else:
            size = np.linalg.norm(g, axis=1, keepdims=True)
            D = D - alpha * g / np.where(size > 0, size, 1.0)
            length = np.linalg.norm(D, axis=1, keepdims=True)
            D = D * np.minimum(1.0, eps / np.where(length > 0, length, 1.0))
        Z = space.valid_z(space.Z0 + D)
    best[~found] = Z[~found]
    return _finish(space, y, best, cats)


def fgsm(
    estimator: Any,
    transformer: Any,
    constraints: Constraints,
    rows: pd.DataFrame,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    categorical: int = 0,
) -> AttackResult:
    """One full gradient step of size ``eps`` (then the constraints)."""
    return pgd(
        estimator,
        transformer,
        constraints,
        rows,
        y,
        eps=eps,
        norm=norm,
        steps=1,
        step_size=eps,
        categorical=categorical,
    )


def _finish(space: _Space, y: Any, Z: np.ndarray, cats: dict[str, np.ndarray]) -> AttackResult:
    """Valid raw rows, judged by the model as served (transform, then predict)."""
    adv = space.raw(Z, cats)
    adv.index = space.index
    pred = space.est.predict(np.asarray(space.tf.transform(adv), dtype=float))
    truth = np.asarray(y)
    clean = space.est.predict(space.X)
    D = Z - space.Z0
    changes = np.zeros(len(adv), dtype=int)
    for col in cats:
        changes += (adv[col].to_numpy() != space.rows[col].to_numpy()).astype(int)
    return AttackResult(
        rows=adv,
        correct=clean == truth,
        flipped=pred != truth,
        linf=np.abs(D).max(axis=1) if D.shape[1] else np.zeros(len(adv)),
        l2=np.linalg.norm(D, axis=1),
        categorical_changes=changes,
    )


# ---- decision-based (black-box) ---------------------------------------------------------


def _row_noise(index: pd.Index, seed: int, steps: int, width: int) -> np.ndarray:
    """Each row's own noise stream (keyed by its index), so a row's attack does not depend
    on the batch it is in."""
    keys = [int(k) if isinstance(k, (int, np.integer)) else hash(str(k)) % 2**32 for k in index]
    return (
        np.stack([np.random.default_rng([seed, k]).standard_normal((steps, width)) for k in keys])
        if keys
        else np.zeros((0, steps, width))
    )


def _start(
    space: _Space, pool: pd.DataFrame, yi: np.ndarray, nearest: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per row, the nearest pool row (mutable parts only) the model labels differently."""
    P = np.asarray(space.tf.transform(pool), dtype=float)
    Pz = P[:, space.cols]
    # squared distances as |a|² + |b|² − 2ab: an n×m matrix, never n×m×features
    dist = (space.Z0**2).sum(axis=1)[:, None] + (Pz**2).sum(axis=1)[None, :]
    dist = dist - 2.0 * space.Z0 @ Pz.T
    order = np.argsort(dist, axis=1, kind="stable")
    n = len(space.X)
    chosen = np.full(n, -1)
    for r in range(0, min(order.shape[1], 8 * nearest), nearest):
        todo = np.flatnonzero(chosen < 0)
        if not len(todo):
            break
        for j in order[todo, r : r + nearest].T:
            trial = space.X[todo].copy()
            trial[:, space.cols] = Pz[j]
            for _col, (pos, _, _) in space._cats.items():
                trial[:, pos] = P[np.ix_(j, pos)]
            wrong = (space.predict_idx(trial) != yi[todo]) & (chosen[todo] < 0)
            chosen[todo[wrong]] = j[wrong]
    has = chosen >= 0
    pick = np.where(has, chosen, 0)
    X = space.X.copy()
    Z = np.where(has[:, None], Pz[pick], space.Z0)
    cats: dict[str, np.ndarray] = {}
    for col, (pos, _, _) in space._cats.items():
        X[np.ix_(has, pos)] = P[np.ix_(pick[has], pos)]
        cats[col] = np.where(
            has, pool[col].to_numpy(dtype=object)[pick], space.rows[col].to_numpy(dtype=object)
        )
    return X, space.valid_z(Z), cats


def decision_attack(
    estimator: Any,
    transformer: Any,
    constraints: Constraints,
    rows: pd.DataFrame,
    y: Any,
    pool: pd.DataFrame,
    *,
    norm: Norm = "l2",
    steps: int = 50,
    search: int = 12,
    nearest: int = 16,
    seed: int = 0,
) -> AttackResult:
    """A label-only attack on any estimator (see the module docstring)."""
    space = _Space(estimator, transformer, constraints, rows)
    yi = space.labels(y)
    X, Z, cats = _start(space, pool, yi, nearest)
    adv = space.predict_idx(space.with_z(X, Z)) != yi
    for col, (pos, _values, _) in space._cats.items():  # revert categories not needed
        trial = X.copy()
        trial[:, pos] = space.X[:, pos]
        keep = space.predict_idx(space.with_z(trial, Z)) != yi
        back = keep & adv
        X[back] = trial[back]
        cats[col] = np.where(back, space.rows[col].to_numpy(dtype=object), cats[col])
    lo, hi = np.zeros(len(X)), np.ones(len(X))
    for _ in range(search):
        mid = (lo + hi) / 2
        Zm = space.valid_z(space.Z0 + mid[:, None] * (Z - space.Z0))
        ok = (space.predict_idx(space.with_z(X, Zm)) != yi) & adv
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    Z = np.where(adv[:, None], space.valid_z(space.Z0 + hi[:, None] * (Z - space.Z0)), Z)
    Z = _walk(space, X, Z, yi, adv, norm, _row_noise(rows.index, seed, steps, len(space.cols)))
    return _finish(space, y, np.where(adv[:, None], Z, space.Z0), cats)


def _dist(D: np.ndarray, norm: Norm) -> np.ndarray:
    if not D.shape[1]:
        return np.zeros(len(D))
    return np.asarray(np.abs(D).max(axis=1) if norm == "linf" else np.linalg.norm(D, axis=1))


def _walk(
    space: _Space,
    X: np.ndarray,
    Z: np.ndarray,
    yi: np.ndarray,
    adv: np.ndarray,
    norm: Norm,
    noise: np.ndarray,
) -> np.ndarray:
    """Boundary random walk: a step along noise then toward the original, kept only if
    still adversarial and closer; step sizes adapt per row."""
    sigma = np.full(len(Z), 0.3)
    shrink = np.full(len(Z), 0.1)
    for t in range(noise.shape[1]):
        D = Z - space.Z0
        d = _dist(D, "l2")
        step = noise[:, t, :]
        step = step / np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-12)
        cand = space.Z0 + (D + sigma[:, None] * d[:, None] * step) * (1 - shrink[:, None])
        cand = space.valid_z(cand)
        closer = _dist(cand - space.Z0, norm) < _dist(D, norm)
        ok = (space.predict_idx(space.with_z(X, cand)) != yi) & adv & closer
        Z = np.where(ok[:, None], cand, Z)
        sigma = np.where(ok, sigma * 1.2, sigma * 0.9).clip(1e-3, 1.0)
        shrink = np.where(ok, shrink * 1.2, shrink * 0.8).clip(1e-3, 0.5)
    return Z


# ---- the curve -------------------------------------------------------------------------------


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
