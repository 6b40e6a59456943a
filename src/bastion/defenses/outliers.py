"""Outliers in feature space, per class: histogram-based outlier scores (HBOS).

HBOS (Goldstein and Dengel, 2012) scores a row by how rare each of its values is,
column by column, and adds the surprises up: ``score = Σ_j -log f_j(x_j)``, where
``f_j`` is the share of rows *of the same class* that fall in the same bin (numbers: 20
equal-width bins over the class's range, so a far value sits in a near-empty bin) or
hold the same category (text). A null is a value of its own. It is linear in rows and
columns, so a million rows cost about a second, and it can say *which* column made a row
an outlier — the reason names it.

Per class, because a poisoned row often looks ordinary overall and odd only among rows
with its label. A row is flagged when its score's robust z-score within its class
(``(score - median) / (1.4826 * MAD)``) is at least ``threshold``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from bastion.defenses._table import Encoded
from bastion.defenses.findings import Finding
from bastion.defenses.pii.masking import shown

__all__ = ["outlier_scores", "outliers"]

_BINS = 20


def outlier_scores(enc: Encoded, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the HBOS score within its class, and the column adding the most to it."""
    n, d = enc.n, len(enc.columns)
    score = np.zeros(n)
    worst = np.zeros(n, dtype=np.int64)
    worst_part = np.full(n, -np.inf)
    if d == 0:
        return score, worst
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        m = len(rows)
        for j, col in enumerate(enc.columns):
            codes = _bins(enc.raw_numeric[col][rows]) if enc.numeric[j] else enc.exact[j][rows]
            shifted = codes + 1  # null (-1) is a value of its own
            freq = np.bincount(shifted) / m
            part = -np.log(freq[shifted])
            score[rows] += part
            bigger = part > worst_part[rows]
            worst[rows[bigger]] = j
            worst_part[rows[bigger]] = part[bigger]
    return score, worst


def outliers(
    enc: Encoded,
    y: np.ndarray,
    classes: list[str],
    *,
    threshold: float = 8.0,
    show: Collection[str] = (),
) -> list[Finding]:
    """Rows whose score is far above their class's typical score. The detail names the
    rarest value masked, unless its column is in ``show`` (``data.show_values``)."""
    score, worst = outlier_scores(enc, y)
    z = np.zeros(len(score))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        med = np.median(score[rows])
        mad = 1.4826 * np.median(np.abs(score[rows] - med))
        z[rows] = (score[rows] - med) / max(mad, 1e-9)
    found = []
    for r in np.flatnonzero(z >= threshold):
        j = int(worst[r])
        col = enc.columns[j]
        value = _value(enc, j, int(r))
        found.append(
            Finding(
                int(r),
                "outliers",
                "class_outlier",
                float(z[r]),
                f"unusual among rows labelled {classes[y[r]]!r} (z={z[r]:.1f});"
                f" rarest value {col}={shown(col, value, show)}",
                col,
            )
        )
    return found


def _bins(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    out = np.full(len(x), -1, dtype=np.int64)
    if not ok.any():
        return out
    lo, hi = float(x[ok].min()), float(x[ok].max())
    if hi <= lo:
        out[ok] = 0
        return out
    out[ok] = np.minimum(((x[ok] - lo) / (hi - lo) * _BINS).astype(np.int64), _BINS - 1)
    return out


def _value(enc: Encoded, j: int, row: int) -> object:
    code = int(enc.exact[j][row])
    if code < 0:
        return None
    v = enc.values[j][code]
    return v.item() if isinstance(v, np.generic) else v
