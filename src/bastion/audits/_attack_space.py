"""The model space every robustness attack works in, and the result it hands back.

:class:`AttackSpace` holds a batch of raw rows in the fitted transformer's output space (the
mutable numeric columns in transformer units, each mutable categorical column's encoded
blocks) and the way back to valid raw rows through
:class:`bastion.audits.constraints.Constraints`; :func:`finish` turns an attack's final point
into an :class:`AttackResult`, judged by the model as served. Shared by the white-box
(:mod:`bastion.audits.whitebox`) and the decision-based (:mod:`bastion.audits.blackbox`)
attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.audits.constraints import Constraints, project_numeric

__all__ = ["AttackResult", "AttackSpace", "Norm", "finish"]

Norm = Literal["linf", "l2"]


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


class AttackSpace:
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
        self.blocks = {c: self._category_blocks(c) for c in constraints.mutable_categorical}

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


def finish(space: AttackSpace, y: Any, Z: np.ndarray, cats: dict[str, np.ndarray]) -> AttackResult:
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
