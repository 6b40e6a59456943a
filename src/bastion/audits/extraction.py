"""Model extraction: how many queries an attacker needs to copy the model as it is served.

:func:`extraction_audit` plays a scripted extraction (Tramèr et al., "Stealing Machine
Learning Models via Prediction APIs", USENIX Security 2016) against the prediction function
AS SERVED: every answer goes through the server's own output hardening
(:class:`bastion.defenses.hardening.OutputPolicy`), so ``output="label"`` gives the attacker
the best class only and ``output="probability"`` the scores, rounded to ``round`` decimals
when set (:func:`served_answers`).

The held-out rows are split in two halves by the seed: the **pool** (public rows like the
data, which the ``pool`` strategy queries) and the **evaluation** half, never queried, on
which fidelity is measured. Strategies, one query stream each:

- ``synthetic``: rows drawn within the schema (:func:`synthetic_queries`): numbers uniform
  within the declared ``min``/``max`` (the training rows' observed range where undeclared),
  integers whole, categories uniform among the declared ones (the observed ones where
  undeclared);
- ``pool``: pool rows in a seeded order.

For each strategy and each query count ``k`` (ascending), a surrogate
(``HistGradientBoostingClassifier`` on the schema-encoded columns, categories native) is
trained on the first ``k`` queries of that strategy's stream (prefix-nested, so counts are
comparable) and the answers the attacker saw: the labels, or with scores the soft labels
(each query once per class, weighted by its score: the cross-entropy on the scores). Its
**fidelity** is the fraction of evaluation rows on which it agrees with the model's own
label, with a percentile bootstrap interval; for a 0/1 agreement vector the bootstrap mean
is exactly ``Binomial(n, p̂) / n``, drawn in one call. The fits run through the
:mod:`~bastion.audits.executor`, each task with its own seed, so the numbers never depend
on the worker count.

``queries_90pct`` is the fewest queries at which a strategy reached :data:`TARGET` (0.90)
fidelity (``None`` if it did not). Measurements, not decisions: gates decide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.audits.executor import Executor, LocalExecutor
from bastion.defenses.hardening import OutputPolicy

__all__ = [
    "STRATEGIES",
    "TARGET",
    "ExtractionResult",
    "StrategyCurve",
    "extraction_audit",
    "served_answers",
    "synthetic_queries",
]

TARGET = 0.90
"""The fidelity a strategy must reach for ``queries_90pct``."""
STRATEGIES: tuple[str, ...] = ("synthetic", "pool")
_MAX_NATIVE_CATEGORIES = 250  # HistGradientBoosting's native categories need < max_bins

Output = Literal["label", "probability"]


# ---------------------------------------------------------------- what the server answers


def served_answers(
    model: Any, rows: pd.DataFrame, *, output: Output = "label", round: int | None = None
) -> np.ndarray:
    """What an attacker reads for ``rows``, as a (rows × classes) matrix over
    ``model.classes_``: one-hot of the served label (``output="label"``), or the served
    scores (``"probability"``, rounded to ``round`` decimals when set) — through the
    server's :class:`~bastion.defenses.hardening.OutputPolicy`."""
    proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
    names = [str(c) for c in model.classes_]
    if output == "label":
        served = OutputPolicy("label").apply(proba, names)
        index = {n: i for i, n in enumerate(names)}
        hot = np.zeros_like(proba)
        hot[np.arange(len(served)), [index[s] for s in served]] = 1.0
        return hot
    if output != "probability":
        raise ValueError(f"output: expected 'label' or 'probability', got {output!r}")
    if round is None:
        return proba
    answers = OutputPolicy("rounded", decimals=round).apply(proba, names)
    return np.array([[a[n] for n in names] for a in answers], dtype=np.float64)


# ---------------------------------------------------------------- queries within the schema


def _declared(spec: Any, key: str) -> Any:
    return getattr(spec, key, None) if spec is not None else None


def _values(spec: Any, observed: pd.Series) -> list[Any]:
    declared = _declared(spec, "categories")
    if declared:
        return list(declared)
    seen = pd.unique(observed.dropna())
    return sorted(seen, key=str) if len(seen) else [""]


def _is_numeric(spec: Any, observed: pd.Series) -> bool:
    kind = _declared(spec, "type")
    if kind is not None:
        return bool(kind in ("int", "float"))
    return bool(
        pd.api.types.is_numeric_dtype(observed) and not pd.api.types.is_bool_dtype(observed)
    )


def _range(spec: Any, observed: pd.Series) -> tuple[float, float]:
    seen = pd.to_numeric(observed, errors="coerce").dropna()
    low, high = _declared(spec, "min"), _declared(spec, "max")
    lo = float(low) if low is not None else (float(seen.min()) if len(seen) else 0.0)
    hi = float(high) if high is not None else (float(seen.max()) if len(seen) else lo)
    if low is not None and high is None:
        hi = max(hi, lo)
    if high is not None and low is None:
        lo = min(lo, hi)
    return lo, hi


def synthetic_queries(
    schema: Mapping[str, Any],
    features: Sequence[str],
    train: pd.DataFrame,
    n: int,
    seed: int,
) -> pd.DataFrame:
    """``n`` rows of ``features`` drawn within ``schema`` (see the module docstring);
    ``train`` supplies only the observed range or values of what the schema leaves open."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for col in features:
        spec = schema.get(col)
        observed = train[col] if col in train.columns else pd.Series([], dtype=object)
        kind = _declared(spec, "type")
        if kind == "bool" or (kind is None and pd.api.types.is_bool_dtype(observed)):
            out[col] = rng.integers(0, 2, n).astype(bool)
        elif _is_numeric(spec, observed):
            lo, hi = _range(spec, observed)
            whole = kind == "int" or (kind is None and pd.api.types.is_integer_dtype(observed))
            if whole:
                a, b = int(np.ceil(lo)), int(np.floor(hi))
                out[col] = rng.integers(a, max(a, b) + 1, n, dtype=np.int64)
            else:
                out[col] = rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
        else:
            choices = _values(spec, observed)
            out[col] = np.asarray(choices, dtype=object)[rng.integers(0, len(choices), n)]
    return pd.DataFrame(out, columns=list(features))


# ---------------------------------------------------------------- the attacker's encoding


def _encoding(
    schema: Mapping[str, Any], features: Sequence[str], train: pd.DataFrame
) -> dict[str, list[Any] | None]:
    """Per column, its category list (native categorical) or ``None`` (a number)."""
    plan: dict[str, list[Any] | None] = {}
    for col in features:
        spec = schema.get(col)
        observed = train[col] if col in train.columns else pd.Series([], dtype=object)
        kind = _declared(spec, "type")
        if kind == "bool" or _is_numeric(spec, observed):
            plan[col] = None
        else:
            plan[col] = [str(v) for v in _values(spec, observed)]
    return plan


def _encode(rows: pd.DataFrame, plan: Mapping[str, list[Any] | None]) -> np.ndarray:
    cols = []
    for col, cats in plan.items():
        if cats is None:
            cols.append(pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=np.float64))
        else:
            codes = {c: float(i) for i, c in enumerate(cats)}
            values = rows[col].astype(object)
            mapped = [codes.get(str(v), np.nan) if pd.notna(v) else np.nan for v in values]
            cols.append(np.asarray(mapped, dtype=np.float64))
    return np.column_stack(cols) if cols else np.zeros((len(rows), 0))


# ---------------------------------------------------------------- one surrogate per task


@dataclass(frozen=True)
class _Fit:
    X: np.ndarray  # the first k queries, encoded
    answers: np.ndarray  # what the attacker saw, rows × classes
    categorical: np.ndarray  # bool per column
    X_eval: np.ndarray
    y_eval: np.ndarray  # the model's own label index per evaluation row
    soft: bool
    seed: int
    resamples: int
    confidence: float


def _fit_one(task: _Fit) -> tuple[float, list[float]]:
    """Train one surrogate and measure its fidelity with its interval (a module-level task
    for the executor)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    labels = np.argmax(task.answers, axis=1)
    if task.soft:
        rows, cls = np.nonzero(task.answers > 0)
        weights = task.answers[rows, cls]
    else:
        rows, cls, weights = np.arange(len(labels)), labels, None
    seen = np.unique(cls)
    if len(seen) < 2:
        guess = np.full(len(task.y_eval), seen[0] if len(seen) else 0)
    else:
        model = HistGradientBoostingClassifier(
            categorical_features=task.categorical if task.categorical.any() else None,
            min_samples_leaf=int(np.clip(len(task.X) // 20, 2, 20)),
            random_state=task.seed,
            early_stopping=False,
        )
        model.fit(task.X[rows], cls, sample_weight=weights)
        guess = np.asarray(model.classes_)[np.argmax(model.predict_proba(task.X_eval), axis=1)]
    agree = guess == task.y_eval
    n = len(agree)
    point = float(agree.mean()) if n else float("nan")
    if task.resamples and n:
        rng = np.random.default_rng(task.seed)
        means = rng.binomial(n, point, size=task.resamples) / n
        alpha = (1 - task.confidence) / 2
        low, high = np.quantile(means, [alpha, 1 - alpha])
        return point, [float(low), float(high)]
    return point, [point, point]


# ---------------------------------------------------------------- the audit


@dataclass(frozen=True)
class StrategyCurve:
    """One strategy's fidelity against query count (``fidelity_ci``: ``[low, high]``)."""

    queries: list[int]
    fidelity: list[float]
    fidelity_ci: list[list[float]]
    queries_90pct: int | None


@dataclass(frozen=True)
class ExtractionResult:
    """Every strategy's curve and how it was measured (see the module docstring)."""

    strategies: dict[str, StrategyCurve]
    output: str
    round: int | None
    evaluation_rows: int
    pool_rows: int
    constant_fidelity: float  # a surrogate that always answers the model's commonest label
    soft_labels: bool
    resamples: int
    confidence: float
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def _task_seed(seed: int, strategy: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, strategy, k]).generate_state(1)[0])


def extraction_audit(
    model: Any,
    *,
    features: Sequence[str],
    train: pd.DataFrame,
    test: pd.DataFrame,
    schema: Mapping[str, Any],
    strategies: Sequence[str] = STRATEGIES,
    queries: Sequence[int] = (100, 300, 1000, 3000),
    output: Output = "label",
    round: int | None = None,
    soft: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    executor: Executor | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ExtractionResult:
    """Extract ``model`` (a fitted pipeline on raw rows) as served, per strategy and query
    count; ``soft`` trains on the served scores when there are any (see the module
    docstring). ``train`` supplies only what the schema leaves open (ranges, values)."""
    counts = [int(k) for k in queries]
    if not counts or sorted(set(counts)) != counts or counts[0] < 1:
        raise ValueError(f"queries: expected positive counts, strictly ascending; got {counts}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"strategies: expected some of {list(STRATEGIES)}, got {list(strategies)}")
    report = progress or (lambda _d, _t, _w: None)
    features = list(features)
    order = np.random.default_rng([seed, 0xE7]).permutation(len(test))
    half = len(test) // 2
    pool = test.iloc[order[:half]][features]
    evaluation = test.iloc[order[half:]][features]
    if len(evaluation) == 0:
        raise ValueError("test: expected held-out rows to measure fidelity on, got none")
    plan = _encoding(schema, features, train)
    categorical = np.array(
        [c is not None and len(c) <= _MAX_NATIVE_CATEGORIES for c in plan.values()], dtype=bool
    )
    X_eval = _encode(evaluation, plan)
    y_eval = np.argmax(np.asarray(model.predict_proba(evaluation), dtype=np.float64), axis=1)
    soft_now = bool(soft and output == "probability")
    warnings: list[str] = []
    if len(evaluation) < 200:
        warnings.append(
            f"only {len(evaluation)} evaluation rows (half the held-out rows): the fidelity"
            " intervals are wide"
        )
    tasks: list[_Fit] = []
    layout: list[tuple[str, int]] = []
    total = len(strategies) * len(counts)
    for si, name in enumerate(strategies):
        report(len(layout), total, f"extraction: querying the served model ({name})")
        if name == "synthetic":
            stream = synthetic_queries(schema, features, train, counts[-1], _task_seed(seed, si, 0))
        else:
            stream = pool
            if len(pool) < counts[-1]:
                warnings.append(
                    f"the pool has {len(pool)} rows: pool query counts above that are not measured"
                )
        answers = served_answers(model, stream, output=output, round=round)
        X = _encode(stream, plan)
        for k in counts:
            if k > len(stream):
                continue
            layout.append((name, k))
            tasks.append(
                _Fit(
                    X=X[:k],
                    answers=answers[:k],
                    categorical=categorical,
                    X_eval=X_eval,
                    y_eval=y_eval,
                    soft=soft_now,
                    seed=_task_seed(seed, si, k),
                    resamples=resamples,
                    confidence=confidence,
                )
            )
    report(0, len(tasks), "extraction: training surrogates")
    found = (executor or LocalExecutor(1)).map(_fit_one, tasks)
    report(len(tasks), len(tasks), "extraction: training surrogates")
    curves: dict[str, StrategyCurve] = {}
    for name in strategies:
        pairs = [(k, r) for (s, k), r in zip(layout, found, strict=True) if s == name]
        reached = [k for k, (fid, _ci) in pairs if fid >= TARGET]
        curves[name] = StrategyCurve(
            queries=[k for k, _ in pairs],
            fidelity=[_r6(r[0]) for _, r in pairs],
            fidelity_ci=[[_r6(v) for v in r[1]] for _, r in pairs],
            queries_90pct=reached[0] if reached else None,
        )
    return ExtractionResult(
        strategies=curves,
        output=output,
        round=round,
        evaluation_rows=len(evaluation),
        pool_rows=len(pool),
        constant_fidelity=_r6(np.bincount(y_eval).max() / len(y_eval)),
        soft_labels=soft_now,
        resamples=resamples,
        confidence=confidence,
        warnings=warnings,
    )


def _r6(value: float) -> float:
    return float(np.round(value, 6))
