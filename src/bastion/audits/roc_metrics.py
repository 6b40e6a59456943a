"""An attack's ROC metrics, with percentile bootstrap intervals drawn a chunk at a time.

:func:`attack_metrics`: ROC AUC, and the TPR at 1% and at 0.1% FPR, read off the ROC by
linear interpolation between its two points that enclose the FPR (the ROC is the step curve
of every distinct score threshold, from (0, 0) to (1, 1)); each with a percentile bootstrap
interval (members and non-members resampled separately, all resamples of a chunk drawn in
one array, as counts per distinct score). ``roc`` holds the curve at log-spaced FPRs, which
the run report draws on log-log axes (:func:`bastion.compliance.plots.plot_membership_roc`).
Used by :mod:`bastion.audits.membership`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CHUNK_CELLS", "AttackMetrics", "attack_metrics"]

CHUNK_CELLS = 4_000_000
"""The most array cells one chunk of bootstrap resamples holds (the audits' memory bound)."""
_ROC_POINTS = 200


@dataclass(frozen=True)
class AttackMetrics:
    """One attack's numbers; each ``*_ci`` is ``[low, high]`` at ``confidence``."""

    auc: float
    auc_ci: list[float]
    tpr_at_1pct_fpr: float
    tpr_at_1pct_fpr_ci: list[float]
    tpr_at_01pct_fpr: float
    tpr_at_01pct_fpr_ci: list[float]
    roc: dict[str, list[float]] = field(repr=False)


def _distinct_rank(
    scores_in: np.ndarray, scores_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Each score's rank among the distinct scores, highest first."""
    pooled = np.concatenate([scores_in, scores_out])
    _, inverse = np.unique(-pooled, return_inverse=True)
    u = int(inverse.max()) + 1 if len(inverse) else 0
    return inverse[: len(scores_in)], inverse[len(scores_in) :], u


def _curves(counts_in: np.ndarray, counts_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (a resample), the ROC's FPR and TPR at every threshold, (0, 0) first."""
    rows = counts_in.shape[0]
    zero = np.zeros((rows, 1))
    tp = np.hstack([zero, np.cumsum(counts_in, axis=1)])
    fp = np.hstack([zero, np.cumsum(counts_out, axis=1)])
    return fp / fp[:, -1:], tp / tp[:, -1:]


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> np.ndarray:
    """Per row, the TPR at ``target`` FPR, interpolated between the enclosing ROC points."""
    k = (fpr <= target).sum(axis=1) - 1  # the last point at or below the target
    k_next = np.minimum(k + 1, fpr.shape[1] - 1)
    rows = np.arange(fpr.shape[0])
    f0, f1 = fpr[rows, k], fpr[rows, k_next]
    t0, t1 = tpr[rows, k], tpr[rows, k_next]
    span = f1 - f0
    safe = np.where(span > 0, span, 1.0)
    return np.asarray(np.where(span > 0, t0 + (t1 - t0) * (target - f0) / safe, t0))


def _summaries(counts_in: np.ndarray, counts_out: np.ndarray) -> np.ndarray:
    """Per row: AUC (a tie counts half), TPR at 1% and 0.1% FPR, from integer counts.

    The same numbers as the trapezoid and :func:`_tpr_at` on :func:`_curves`, in fewer
    passes over the rows × thresholds arrays (this is the bootstrap's inner loop).
    """
    fp = np.cumsum(counts_out, axis=1)
    tp = np.cumsum(counts_in, axis=1)
    n0, n1 = fp[:, -1].astype(np.float64), tp[:, -1].astype(np.float64)
    # a member at threshold k beats the non-members below it and ties those at k
    below_twice = np.einsum("ij,ij->i", counts_in, 2 * fp - counts_out)
    auc = 1.0 - below_twice / (2.0 * n0 * n1)
    rows = np.arange(fp.shape[0])
    found = []
    for target in (0.01, 0.001):
        limit = target * n0
        m = (fp <= limit[:, None]).sum(axis=1)  # points after (0, 0) at or below the target
        prev = np.maximum(m - 1, 0)
        f0 = np.where(m > 0, fp[rows, prev], 0)
        t0 = np.where(m > 0, tp[rows, prev], 0)
        nxt = np.minimum(m, fp.shape[1] - 1)
        f1, t1 = fp[rows, nxt], tp[rows, nxt]
        span = (f1 - f0).astype(np.float64)
        step = np.where(span > 0, (limit - f0) / np.where(span > 0, span, 1.0), 0.0)
        found.append((t0 + (t1 - t0) * step) / n1)
    return np.stack([auc, *found], axis=1)


def _resampled_counts(rank: np.ndarray, u: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    draws = rank[rng.integers(0, len(rank), size=(rows, len(rank)))]
    flat = (draws + (np.arange(rows) * u)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * u).reshape(rows, u)


def attack_metrics(
    scores_members: np.ndarray,
    scores_nonmembers: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackMetrics:
    """AUC and TPR at 1% / 0.1% FPR with percentile bootstrap intervals (vectorised)."""
    s_in = np.asarray(scores_members, dtype=np.float64)
    s_out = np.asarray(scores_nonmembers, dtype=np.float64)
    if len(s_in) == 0 or len(s_out) == 0:
        raise ValueError("attack_metrics: needs at least one member and one non-member score")
    r_in, r_out, u = _distinct_rank(s_in, s_out)
    point_in = np.bincount(r_in, minlength=u)[None, :]
    point_out = np.bincount(r_out, minlength=u)[None, :]
    point = _summaries(point_in, point_out)[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // max(1, len(s_in) + len(s_out) + u))
    stats: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        c_in = _resampled_counts(r_in, u, rows, rng)
        c_out = _resampled_counts(r_out, u, rows, rng)
        stats.append(_summaries(c_in, c_out))
    alpha = (1 - confidence) / 2
    if stats:
        all_stats = np.vstack(stats)
        low, high = np.quantile(all_stats, [alpha, 1 - alpha], axis=0)
    else:
        low = high = point
    fpr, tpr = _curves(point_in.astype(np.float64), point_out.astype(np.float64))
    grid = np.unique(np.concatenate([np.geomspace(1 / len(s_out), 1, _ROC_POINTS), [1.0]]))
    roc = {"fpr": grid.tolist(), "tpr": [float(v) for v in _interp_rows(fpr, tpr, grid)]}
    return AttackMetrics(
        auc=float(point[0]),
        auc_ci=[float(low[0]), float(high[0])],
        tpr_at_1pct_fpr=float(point[1]),
        tpr_at_1pct_fpr_ci=[float(low[1]), float(high[1])],
        tpr_at_01pct_fpr=float(point[2]),
        tpr_at_01pct_fpr_ci=[float(low[2]), float(high[2])],
        roc=roc,
    )


def _interp_rows(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.array([_tpr_at(fpr, tpr, float(g))[0] for g in grid])
