"""The decision-based (black-box) attack: labels only, any estimator.

Start from the nearest pool row the model labels differently (immutable columns kept),
revert categorical columns that are not needed, binary-search toward the original, then a
boundary random walk that only accepts a closer adversarial row (see
:mod:`bastion.audits.robustness`). Each row has its own noise stream, so its attack does not
depend on the batch it is in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bastion.audits._attack_space import AttackResult, AttackSpace, Norm, finish
from bastion.audits.constraints import Constraints

__all__ = ["decision_attack"]


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
    space: AttackSpace, pool: pd.DataFrame, yi: np.ndarray, nearest: int
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
            for _col, (pos, _, _) in space.blocks.items():
                trial[:, pos] = P[np.ix_(j, pos)]
            wrong = (space.predict_idx(trial) != yi[todo]) & (chosen[todo] < 0)
            chosen[todo[wrong]] = j[wrong]
    has = chosen >= 0
    pick = np.where(has, chosen, 0)
    X = space.X.copy()
    Z = np.where(has[:, None], Pz[pick], space.Z0)
    cats: dict[str, np.ndarray] = {}
    for col, (pos, _, _) in space.blocks.items():
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
    space = AttackSpace(estimator, transformer, constraints, rows)
    yi = space.labels(y)
    X, Z, cats = _start(space, pool, yi, nearest)
    adv = space.predict_idx(space.with_z(X, Z)) != yi
    for col, (pos, _values, _) in space.blocks.items():  # revert categories not needed
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
    return finish(space, y, np.where(adv[:, None], Z, space.Z0), cats)


def _dist(D: np.ndarray, norm: Norm) -> np.ndarray:
    if not D.shape[1]:
        return np.zeros(len(D))
    return np.asarray(np.abs(D).max(axis=1) if norm == "linf" else np.linalg.norm(D, axis=1))


def _walk(
    space: AttackSpace,
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
