# Over 400 lines, because the attack, its metrics with vectorised bootstrap intervals and the
# attribute-inference audit share one result model and are read together.
"""Membership and attribute inference: how much a trained model gives away about its rows.

:func:`membership_audit` attacks a fitted model with the rows it was trained on (members),
rows held out of training (non-members) and a population pool disjoint from both, and
scores every member and non-member with two attacks:

- ``loss``: the LOSS baseline (Yeom et al. 2018), score = −loss = log p(y|x) under the
  target model; members of an overfit model have a small loss;
- ``rmia``: RMIA (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference
  Attacks"). ``references`` reference models (default 4) are built by the model factory and
  trained, through the :mod:`~bastion.audits.executor`, on random halves of the
  population. ``Pr(x) = p(y|x | target) / Pr_ref(x)``, where ``Pr_ref(x)`` is the mean of
  ``p(y|x)`` over the reference models, with the paper's offline correction
  ``((1 + a)·mean + (1 − a)) / 2`` (``offline_a``, default 0.3; ``None`` uses the plain
  mean: on an overfit forest the correction raised TPR at 1% FPR from ~0.20 to ~0.47). The
  halves come in complementary pairs, so each population row ``z`` is out of half the
  reference models, and its ratio uses those only. The same ratio is computed for every
  population row ``z``; ``score(x)`` is the fraction of ``z`` with
  ``ratio(z) <= ratio(x) / gamma``, i.e. ``ratio(x) / ratio(z) >= gamma``. It is computed
  with a sort: the ``z`` ratios are sorted once and each ``x`` is placed with
  ``np.searchsorted`` — O((N + Z) log Z) time and O(N + Z) memory, never an N×Z matrix.
  Ties in the score (e.g. every ``x`` whose ratio is above all ``z``) are broken by the
  ratio itself, which the score is monotone in.

Metrics per attack (:func:`attack_metrics`): ROC AUC, and the TPR at 1% and at 0.1% FPR,
read off the ROC by linear interpolation between its two points that enclose the FPR (the
ROC is the step curve of every distinct score threshold, from (0, 0) to (1, 1)); each with
a percentile bootstrap interval (members and non-members resampled separately, all
resamples of a chunk drawn in one array). With fewer than 1,000 non-members the 0.1% figure
is an interpolation below the first step and ``warnings`` says so. ``roc`` holds the curve
at log-spaced FPRs, which the run report draws on log-log axes
(:func:`bastion.compliance.plots.plot_membership_roc`, from the result's JSON).

:func:`attribute_inference` measures, for one sensitive attribute, how much better an
attacker predicts it from the other features plus the model's output scores than from the
other features alone (cross-validated accuracy difference, with a paired bootstrap interval).

Measurements, not decisions: gates decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bastion.audits.executor import Executor, LocalExecutor

__all__ = [
    "OFFLINE_A",
    "AttackMetrics",
    "AttributeInferenceResult",
    "MembershipResult",
    "attack_metrics",
    "attribute_inference",
    "loss_scores",
    "membership_audit",
    "rmia_scores",
    "true_label_probability",
]

OFFLINE_A = 0.3
"""The default offline correction ``a`` of RMIA (the paper's offline setting, 0.3)."""
_EPS = 1e-12
_CHUNK_CELLS = 4_000_000
_ROC_POINTS = 200


def _take(data: Any, index: np.ndarray) -> Any:
    return data.iloc[index] if hasattr(data, "iloc") else np.asarray(data)[index]


def true_label_probability(model: Any, X: Any, y: Any) -> np.ndarray:
    """``p(y|x)`` under a fitted classifier, per row (0 for a label it never saw)."""
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = np.asarray(model.classes_)
    labels = np.asarray(y)
    pos = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    out = proba[np.arange(len(labels)), pos]
    out[classes[pos] != labels] = 0.0
    return out


def loss_scores(p_true: np.ndarray) -> np.ndarray:
    """The LOSS attack's score, −cross-entropy = log p(y|x) (higher: more likely a member)."""
    return np.log(np.maximum(np.asarray(p_true, dtype=np.float64), _EPS))


def rmia_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Per ``x``, the fraction of ``z`` with ``ratio_z <= ratio_x / gamma``, by one sort.

    O((N + Z) log Z) time, O(N + Z) memory.
    """
    if gamma <= 0:
        raise ValueError(f"gamma: expected a number > 0, got {gamma}")
    z_sorted = np.sort(np.asarray(ratio_z, dtype=np.float64))
    x = np.asarray(ratio_x, dtype=np.float64)
    placed = np.searchsorted(z_sorted, x if gamma == 1.0 else x / gamma, side="right")
    return placed / max(1, len(z_sorted))


# ---------------------------------------------------------------- metrics with intervals


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
    chunk = max(1, _CHUNK_CELLS // max(1, len(s_in) + len(s_out) + u))
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


# ---------------------------------------------------------------- the membership audit


@dataclass(frozen=True)
class MembershipResult:
    """The audit's numbers per attack (``loss``, ``rmia``) and how they were obtained."""

    attacks: dict[str, AttackMetrics]
    members: int
    nonmembers: int
    population: int
    references: int
    gamma: float
    offline_a: float | None
    resamples: int
    confidence: float
    seed: int
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (floats, lists, dicts), the ROC points included."""
        return asdict(self)


@dataclass(frozen=True)
class _ReferenceTask:
    factory: Callable[[], Any]
    X: Any
    y: Any
    seed: int
    evaluate: tuple[tuple[Any, Any], ...]


def _seeded(model: Any, seed: int) -> Any:
    """Fix every unset ``random_state`` so a reference model is the same on any worker."""
    params: dict[str, Any] = getattr(model, "get_params", dict)()
    fixed = {
        k: seed for k, v in params.items() if k.split("__")[-1] == "random_state" and v is None
    }
    if fixed:
        model.set_params(**fixed)
    return model


def _reference_run(task: _ReferenceTask) -> list[np.ndarray]:
    model = _seeded(task.factory(), task.seed)
    model.fit(task.X, task.y)
    return [true_label_probability(model, X, y) for X, y in task.evaluate]


def _check_sets(sets: Sequence[tuple[str, Any, Any]]) -> None:
    for name, X, y in sets:
        if len(X) != len(y):
            raise ValueError(f"{name}: {len(X)} rows but {len(y)} labels")
        if len(X) == 0:
            raise ValueError(f"{name}: expected at least one row")


def _halves(n: int, references: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Population halves in complementary pairs, so every row is out of half the models."""
    halves: list[np.ndarray] = []
    while len(halves) < references:
        order = rng.permutation(n)
        cut = max(1, n // 2)
        halves += [np.sort(order[:cut]), np.sort(order[cut:])]
    return [h for h in halves[:references] if len(h)] or [np.arange(n)]


def _out_mean(probs: list[np.ndarray], halves: list[np.ndarray], n: int) -> np.ndarray:
    """Per population row, mean p(y|z) over the references that did not train on it."""
    total = np.zeros(n)
    count = np.zeros(n)
    for p, h in zip(probs, halves, strict=True):
        out = np.ones(n, dtype=bool)
        out[h] = False
        total[out] += p[out]
        count[out] += 1
    all_mean = np.mean(probs, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), all_mean)


def _ranked(score: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """The RMIA score with its ties (e.g. every x above all z) broken by the ratio itself."""
    span = np.log(np.maximum(ratio, _EPS))
    lo, hi = float(span.min()), float(span.max())
    return np.asarray(score + (span - lo) / ((hi - lo) or 1.0) * 1e-9)


def membership_audit(
    model: Any,
    model_factory: Callable[[], Any],
    members: tuple[Any, Any],
    nonmembers: tuple[Any, Any],
    population: tuple[Any, Any],
    *,
    references: int = 4,
    gamma: float = 1.0,
    offline_a: float | None = OFFLINE_A,
    executor: Executor | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MembershipResult:
    """Attack ``model`` (fitted on ``members``) with LOSS and RMIA; see the module doc.

    ``model_factory()`` returns a fresh unfitted estimator like the target (e.g.
    ``functools.partial(sklearn.base.clone, model)``); each ``(X, y)`` pair is rows and
    labels; ``population`` must be disjoint from both members and non-members.
    """
    _check_sets([("members", *members), ("nonmembers", *nonmembers), ("population", *population)])
    if references < 1:
        raise ValueError(f"references: expected a whole number >= 1, got {references}")
    if offline_a is not None and not 0 <= offline_a <= 1:
        raise ValueError(f"offline_a: expected a number in 0..1, got {offline_a}")
    targets = (members, nonmembers, population)
    p_target = [true_label_probability(model, X, y) for X, y in targets]
    X_pop, y_pop = population
    halves = _halves(len(y_pop), references, np.random.default_rng(seed))
    tasks = [
        _ReferenceTask(model_factory, _take(X_pop, h), _take(y_pop, h), seed + k, targets)
        for k, h in enumerate(halves)
    ]
    runs = (executor or LocalExecutor(1)).map(_reference_run, tasks)
    p_ref = [np.mean([run[i] for run in runs], axis=0) for i in range(2)]
    p_ref.append(_out_mean([run[2] for run in runs], halves, len(y_pop)))
    if offline_a is not None:
        p_ref = [((1 + offline_a) * p + (1 - offline_a)) / 2 for p in p_ref]
    ratio = [
        np.maximum(t, _EPS) / np.maximum(r, _EPS) for t, r in zip(p_target, p_ref, strict=True)
    ]
    rmia = [_ranked(rmia_scores(ratio[i], ratio[2], gamma), ratio[i]) for i in range(2)]
    scores = {
        "loss": (loss_scores(p_target[0]), loss_scores(p_target[1])),
        "rmia": (rmia[0], rmia[1]),
    }
    attacks = {
        name: attack_metrics(s_in, s_out, resamples=resamples, confidence=confidence, seed=seed)
        for name, (s_in, s_out) in scores.items()
    }
    warnings = []
    if len(nonmembers[1]) < 1000:
        warnings.append(
            f"{len(nonmembers[1])} non-members: the TPR at 0.1% FPR is interpolated below the"
            " ROC's first step (needs >= 1000 non-members to be observed)"
        )
    return MembershipResult(
        attacks=attacks,
        members=len(members[1]),
        nonmembers=len(nonmembers[1]),
        population=len(population[1]),
        references=references,
        gamma=gamma,
        offline_a=offline_a,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        warnings=warnings,
    )


# ---------------------------------------------------------------- attribute inference


@dataclass(frozen=True)
class AttributeInferenceResult:
    """Attacker accuracy without and with the model's outputs, and the difference."""

    attribute: str
    rows: int
    majority_accuracy: float
    accuracy_without_model: float
    accuracy_with_model: float
    advantage: float
    advantage_ci: list[float]
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _features(X: Any) -> np.ndarray:
    if hasattr(X, "columns"):
        import pandas as pd

        return np.asarray(pd.get_dummies(X, dummy_na=True), dtype=np.float64)
    return np.asarray(X, dtype=np.float64)


def _cv_correct(X: np.ndarray, s: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    attacker = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    return np.asarray(cross_val_predict(attacker, X, s, cv=folds) == s)


def attribute_inference(
    other_features: Any,
    attribute: Any,
    model_outputs: np.ndarray,
    *,
    name: str = "attribute",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributeInferenceResult:
    """How much the model's outputs help an attacker infer one sensitive attribute.

    ``other_features`` are the held-out rows without the attribute (a DataFrame, one-hot
    encoded here, or a numeric array), ``attribute`` its values on those rows,
    ``model_outputs`` the model's scores on them (``predict_proba``). The attacker (gradient
    boosting, 5-fold cross-validated predictions) is trained twice; ``advantage`` is
    accuracy with the outputs minus accuracy without, with a paired bootstrap interval.
    """
    s = np.asarray(attribute).astype(str)
    base = _features(other_features)
    outputs = np.asarray(model_outputs, dtype=np.float64).reshape(len(s), -1)
    if len(base) != len(s):
        raise ValueError(f"{name}: {len(base)} feature rows but {len(s)} attribute values")
    without = _cv_correct(base, s, seed)
    with_model = _cv_correct(np.hstack([base, outputs]), s, seed)
    diff = with_model.astype(np.float64) - without.astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // len(s))
    means: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        means.append(diff[rng.integers(0, len(s), size=(rows, len(s)))].mean(axis=1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha]) if means else (0.0, 0.0)
    _, counts = np.unique(s, return_counts=True)
    return AttributeInferenceResult(
        attribute=name,
        rows=len(s),
        majority_accuracy=float(counts.max() / len(s)),
        accuracy_without_model=float(without.mean()),
        accuracy_with_model=float(with_model.mean()),
        advantage=float(diff.mean()),
        advantage_ci=[float(low), float(high)],
        confidence=confidence,
    )
