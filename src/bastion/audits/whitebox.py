"""The white-box attacks: FGSM and PGD with analytic margin gradients.

For a differentiable estimator (``LogisticRegression``, ``MLPClassifier``): the margin
(true-class logit minus the best other) and its gradient, analytic (the linear layer, or
back-propagation through the MLP's layers), not finite differences; projected gradient
descent on it, ℓ∞ or ℓ2, on the mutable numeric columns in the transformer's units, after up
to ``categorical`` greedy categorical swaps per row (see :mod:`bastion.audits.robustness`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bastion.audits._attack_space import AttackResult, AttackSpace, Norm, finish
from bastion.audits.constraints import Constraints

__all__ = ["fgsm", "margin_grad", "pgd"]


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
    space: AttackSpace, X: np.ndarray, y: np.ndarray, k: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Up to ``k`` greedy categorical swaps per row, each lowering the margin most."""
    cats = {c: space.rows[c].to_numpy(dtype=object).copy() for c in space.blocks}
    changed = {c: np.zeros(len(X), dtype=bool) for c in space.blocks}
    X = X.copy()
    for _ in range(k):
        best, _ = margin_grad(space.est, X, y)
        pick = np.full(len(X), -1)
        options: list[tuple[str, int]] = []
        for col, (pos, values, block) in space.blocks.items():
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
                pos, values, block = space.blocks[col]
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
    space = AttackSpace(estimator, transformer, constraints, rows)
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
    return finish(space, y, best, cats)


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
