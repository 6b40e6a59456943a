# Over 400 lines, because it is the one script that runs every comparison of issue 13 side by
# side in one process (robustness, membership, fairness, RMIA scoring), each with its goal.
"""The audits against the libraries they replace, side by side in one process (issue 13).

Each comparison gives both sides the same fitted model and the same rows. Bastion's
timings are the median of 3 runs; the other side's one run (it is the slow side). The whole
run caps scikit-learn's BLAS/OpenMP pools at Bastion's thread count (``BASTION_THREADS``,
else the idle cores), for both sides alike.

(a) **PGD** on a differentiable model: ``LogisticRegression`` on scikit-learn's digits (64
    pixels standard-scaled by Bastion's feature transformer; 500 rows), Bastion's batched
    ``pgd`` through the transformer vs. ART's ``ProjectedGradientDescent`` on the same
    standardised matrix (ℓ∞, ε = 0.3, 20 iterations, the same step, no random start).
    Success = share of correctly classified rows misclassified after the attack. Goal: the
    same success ±1 pp (a higher one is not a miss) and ≥ 3× faster.
(b) **Decision attack** on a tree ensemble: ``RandomForestClassifier(100)`` on the same
    digits (50 rows), Bastion's ``decision_attack`` vs. ART's ``HopSkipJump`` (ℓ2,
    untargeted, ``max_iter=3, max_eval=200, init_eval=20``: larger settings ran > 20 min).
    Success = an adversarial row within ℓ2 ≤ 3.0. Goal: ≥ 5× faster at equal or higher
    success.
(c) **Membership** on Adult: an overfit forest (100 trees, no depth limit, trained on
    6,000 ``adult.data`` rows, reading all 14 columns, ``fnlwgt`` included) and the
    example's own model (HistGradientBoosting behind the example's features, as
    ``pipeline.yaml`` builds it, trained on all of ``adult.data``); held-out rows are
    ``adult.test``. For contrast (not judged), the same forest behind the example's
    features (no ``fnlwgt``). All run ``MembershipAudit`` with the
    gate ``max_membership_tpr_at_1pct_fpr: 0.10`` (3,000 members and non-members, 4
    reference models on the held-out population half, 1,000 resamples). Goals: the forest's
    RMIA TPR at 1% FPR above LOSS's and above ART's ``MembershipInferenceBlackBox``
    (``input_type="prediction"``, trained on the 3,000 members the audit did not sample and
    3,000 population rows, scored on exactly the audit's members and non-members); the
    forest's release refused by the gate and the example's passed.
(d) **Fairness**: Adult-like rows drawn with a seed (race as text, Adult's five groups at
    85.4% down to 0.8%). Per-group selection rate, TPR, FPR, accuracy and the three gaps on
    1,000,000 rows, ``group_fairness`` vs. fairlearn's ``MetricFrame`` + its gap functions:
    equal to 1e-9 and ≥ 10× faster. Bootstrap intervals on 100,000 rows × 1,000 resamples:
    ≤ 2 s (fairlearn's ``MetricFrame(n_boot=20)`` timed and extrapolated, stated as such).
(e) **RMIA scoring** (``rmia_scores``: one sort, ``np.searchsorted``) of 50,000 targets ×
    50,000 population rows: < 1 s with a tracemalloc peak ≤ 64 bytes per row (O(N + Z));
    the dense N×Z form (Privacy Meter's) on 10,000 × 10,000 must give identical scores.

    python benchmarks/bench_audits.py [--smoke] [--json out.json]

``--smoke`` runs every comparison at tiny sizes (about 20 s) and judges no goal, only that
the answers agree (RMIA scores identical to the dense form, fairness equal to fairlearn's);
ART and fairlearn are optional there (their side is skipped). A full run needs both, prints
each figure with its goal and exits 1 when any goal is missed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bastion.threads import limit_threads

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"

EPS_LINF, BUDGET_L2, PGD_STEPS, HSJ_ITER = 0.3, 3.0, 20, 3
MEMBERSHIP_GATE = {"max_membership_tpr_at_1pct_fpr": 0.10}
SCORE_GOAL_S, BYTES_PER_ROW_GOAL = 1.0, 64.0
FAIR_SPEEDUP_GOAL, EQUAL_TOL, BOOT_GOAL_S = 10.0, 1e-9, 2.0
RACES = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]
SHARES = [0.854, 0.096, 0.032, 0.010, 0.008]
RATES = {"selection_rate": "sr", "tpr": "tpr", "fpr": "fpr", "accuracy": "acc"}
GAPS = ["demographic_parity_difference", "disparate_impact_ratio", "equalized_odds_difference"]


def median_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The median wall time of ``runs`` calls, and the last call's result."""
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    return median_of(1, fn)


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- (a), (b) robustness


def digits(n_test: int) -> dict[str, Any]:
    """Digits split 60/40, standardised by Bastion's transformer, with schema constraints."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from bastion.audits.constraints import Constraints
    from bastion.spec.config import ColumnSpec, FeaturesConfig
    from bastion.stages.features import build_transformer

    found = load_digits()
    cols = [f"p{i}" for i in range(64)]
    train, test, y_train, y_test = train_test_split(
        pd.DataFrame(found.data, columns=cols),
        found.target,
        test_size=0.4,
        random_state=0,
        stratify=found.target,
    )
    tf = build_transformer(FeaturesConfig.model_validate({"numeric": {"columns": cols}}))
    X_train = tf.fit_transform(train)
    test, y_test = test.iloc[:n_test], y_test[:n_test]
    return {
        "train": train,
        "test": test,
        "y_train": y_train,
        "y_test": y_test,
        "tf": tf,
        "X_train": X_train,
        "X_test": tf.transform(test),
        "constraints": Constraints.from_schema({c: ColumnSpec(type="float") for c in cols}, tf),
    }


def bench_pgd(d: dict[str, Any], smoke: bool, art: bool) -> dict[str, Any]:
    """(a): Bastion's ``pgd`` vs. ART's ``ProjectedGradientDescent``."""
    from sklearn.linear_model import LogisticRegression

    from bastion.audits.robustness import pgd

    model = LogisticRegression(max_iter=2000).fit(d["X_train"], d["y_train"])
    steps = 5 if smoke else PGD_STEPS
    alpha = 2.5 * EPS_LINF / steps
    correct = model.predict(d["X_test"]) == d["y_test"]
    args = (model, d["tf"], d["constraints"], d["test"], d["y_test"])
    ours_s, ours = median_of(3, lambda: pgd(*args, eps=EPS_LINF, steps=steps, step_size=alpha))
    out: dict[str, Any] = {
        "rows": len(d["test"]),
        "bastion_s": ours_s,
        "bastion_success": float(ours.flipped[correct].mean()),
    }
    if not art:
        return out
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import SklearnClassifier

    attack = ProjectedGradientDescent(
        SklearnClassifier(model=model),
        norm=np.inf,
        eps=EPS_LINF,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=0,
        verbose=False,
    )
    art_s, adv = once(lambda: attack.generate(x=np.asarray(d["X_test"], dtype=np.float32)))
    out["art_s"] = art_s
    out["art_success"] = float((model.predict(adv) != d["y_test"])[correct].mean())
    out["speedup"] = art_s / ours_s
    return out


def bench_decision(d: dict[str, Any], smoke: bool, art: bool) -> dict[str, Any]:
    """(b): Bastion's ``decision_attack`` vs. ART's ``HopSkipJump`` on a forest."""
    from sklearn.ensemble import RandomForestClassifier

    from bastion.audits.robustness import decision_attack

    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    model.fit(d["X_train"], d["y_train"])
    correct = model.predict(d["X_test"]) == d["y_test"]
    args = (model, d["tf"], d["constraints"], d["test"], d["y_test"], d["train"])
    steps = 10 if smoke else 100
    ours_s, ours = median_of(3, lambda: decision_attack(*args, norm="l2", steps=steps))
    out: dict[str, Any] = {
        "rows": len(d["test"]),
        "bastion_s": ours_s,
        "bastion_success": float((ours.flipped & (ours.l2 <= BUDGET_L2))[correct].mean()),
        "bastion_median_l2": float(np.median(ours.l2[correct & ours.flipped])),
    }
    if not art:
        return out
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import SklearnClassifier

    attack = HopSkipJump(
        SklearnClassifier(model=model),
        norm=2,
        max_iter=2 if smoke else HSJ_ITER,
        max_eval=100 if smoke else 200,
        init_eval=10 if smoke else 20,
        verbose=False,
    )
    x = np.asarray(d["X_test"], dtype=np.float32)
    art_s, adv = once(lambda: attack.generate(x=x))
    dist = np.linalg.norm(adv - x, axis=1)
    flipped = model.predict(adv) != d["y_test"]
    out["art_s"] = art_s
    out["art_success"] = float((flipped & (dist <= BUDGET_L2))[correct].mean())
    out["art_median_l2"] = float(np.median(dist[correct & flipped]))
    out["speedup"] = art_s / ours_s
    return out


# ---------------------------------------------------------------- (c) membership on Adult


def adult(name: str) -> pd.DataFrame:
    """One Adult file as the pipeline reads it (``?`` is missing, the label's ``.`` dropped)."""
    frame = pd.read_csv(
        EXAMPLE.parent / "data" / name, skipinitialspace=True, na_values="?", comment="|"
    )
    frame["Y"] = frame["Y"].str.rstrip(".")
    return frame


def every_column() -> Any:
    """Features reading all 14 Adult columns (``fnlwgt``, near unique per row, included)."""
    from bastion.spec.config import FeaturesConfig

    return FeaturesConfig.model_validate(
        {
            "numeric": {
                "columns": [
                    "age",
                    "fnlwgt",
                    "education-num",
                    "capital-gain",
                    "capital-loss",
                    "hours-per-week",
                ],
                "impute": "median",
            },
            "categorical": {
                "columns": [
                    "workclass",
                    "education",
                    "marital-status",
                    "occupation",
                    "relationship",
                    "race",
                    "sex",
                    "native-country",
                ]
            },
            "use_sensitive": True,
        }
    )


def adult_audit(
    estimator: Any, train: pd.DataFrame, test: pd.DataFrame, features: Any = None
) -> Any:
    """AuditData for ``estimator`` fitted on ``train`` behind ``features`` (default: the
    example's)."""
    from sklearn.pipeline import Pipeline

    from bastion.audits.base import AuditData
    from bastion.audits.executor import LocalExecutor
    from bastion.pipeline.loader import load_pipeline
    from bastion.stages.features import build_transformer

    cfg = load_pipeline(EXAMPLE)[0]
    features = features or cfg.features
    cols = [*features.numeric.columns, *features.categorical.columns]
    model = Pipeline([("features", build_transformer(features)), ("model", estimator)])
    model.fit(train[cols], (train["Y"] == ">50K").astype(int))
    return AuditData(
        model=model,
        train=train,
        test=test,
        label="Y",
        positive=">50K",
        sensitive=tuple(cfg.data.sensitive),
        schema=cfg.data.schema_,
        seed=cfg.seed,
        executor=LocalExecutor(),
    )


def art_membership(data: Any, samples: int) -> dict[str, Any]:
    """ART's black-box attack on the audit's own members and non-members (see (c))."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import SklearnClassifier

    from bastion.audits.membership import attack_metrics
    from bastion.audits.suite.membership import membership_split

    X_tr, y_tr = data.xy(data.train)
    X_te, y_te = data.xy(data.test)
    mem, non, pop = membership_split(len(y_tr), len(y_te), samples, data.seed)
    spare = np.setdiff1d(np.arange(len(y_tr)), mem)[:samples]
    pop = pop[:samples]
    tf = data.transformer
    attack = MembershipInferenceBlackBox(
        SklearnClassifier(model=data.estimator), input_type="prediction", attack_model_type="rf"
    )
    start = time.perf_counter()
    attack.fit(tf.transform(X_tr.iloc[spare]), y_tr[spare], tf.transform(X_te.iloc[pop]), y_te[pop])
    p_in = attack.infer(tf.transform(X_tr.iloc[mem]), y_tr[mem], probabilities=True)
    p_out = attack.infer(tf.transform(X_te.iloc[non]), y_te[non], probabilities=True)
    seconds = time.perf_counter() - start
    m = attack_metrics(np.ravel(p_in), np.ravel(p_out), resamples=200)
    return {"tpr_at_1pct_fpr": m.tpr_at_1pct_fpr, "auc": m.auc, "seconds": seconds}


def bench_membership(smoke: bool, art: bool) -> dict[str, Any]:
    """(c): the overfit forest and the example's model through ``MembershipAudit``."""
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier

    from bastion.audits.suite.membership import MembershipAudit
    from bastion.pipeline.loader import load_pipeline
    from bastion.spec.audits import MembershipAuditConfig
    from bastion.stages.train import make_estimator

    train, test = adult("adult.data"), adult("adult.test")
    samples = 300 if smoke else 3_000
    if smoke:
        train, test = train.iloc[:4_000], test.iloc[:1_500]
    config = MembershipAuditConfig(gates=MEMBERSHIP_GATE, samples=samples, resamples=1000)
    order = np.random.default_rng(13).permutation(len(train))
    forest = RandomForestClassifier(n_estimators=20 if smoke else 100, random_state=0, n_jobs=1)
    cfg = load_pipeline(EXAMPLE)[0]
    example = make_estimator(cfg.model, cfg.seed)
    if smoke:
        example.set_params(max_iter=20)
    out: dict[str, Any] = {"samples": samples}
    forest_rows = train.iloc[np.sort(order[: 2 * samples])]
    for name, estimator, rows, features in (
        ("forest", forest, forest_rows, every_column()),
        ("forest_example_features", clone(forest), forest_rows, None),
        ("example", example, train, None),
    ):
        data = adult_audit(estimator, rows, test, features)
        X_tr, y_tr = data.xy(rows)
        X_te, y_te = data.xy(test)
        seconds, result = once(functools.partial(MembershipAudit(config).run, data))
        attacks = result.details["attacks"]
        out[name] = {
            "train_rows": len(rows),
            "train_accuracy": float(data.model.score(X_tr, y_tr)),
            "test_accuracy": float(data.model.score(X_te, y_te)),
            "audit_s": seconds,
            "values": result.values,
            "intervals": result.intervals,
            "passed": result.passed,
            "strongest": result.details["strongest"],
            **{
                a: {k: attacks[a][k] for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_ci")}
                for a in attacks
            },
        }
        if name == "forest" and art:
            out[name]["art"] = art_membership(data, samples)
    return out


# ---------------------------------------------------------------- (d) fairness


def fair_rows(n: int, seed: int = 13) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """``n`` Adult-like rows: the race column (text), labels and decisions."""
    rng = np.random.default_rng(seed)
    race = np.asarray(RACES, dtype=object)[rng.choice(len(RACES), size=n, p=SHARES)]
    y = (rng.random(n) < 0.24).astype(np.int64)
    lean = pd.Series(race).map(dict(zip(RACES, [0.10, 0.04, 0.12, 0.03, 0.05], strict=True)))
    pred = np.where(rng.random(n) < 0.82, y, rng.random(n) < lean.to_numpy()).astype(np.int64)
    return pd.Series(race, name="race"), y, pred


def fairlearn_side(race: pd.Series, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from fairlearn import metrics as fm
    from sklearn.metrics import accuracy_score

    frame = fm.MetricFrame(
        metrics={
            "sr": fm.selection_rate,
            "tpr": fm.true_positive_rate,
            "fpr": fm.false_positive_rate,
            "acc": accuracy_score,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=race,
    )
    return {
        "by_group": frame.by_group,
        "demographic_parity_difference": fm.demographic_parity_difference(
            y, pred, sensitive_features=race
        ),
        "disparate_impact_ratio": fm.demographic_parity_ratio(y, pred, sensitive_features=race),
        "equalized_odds_difference": fm.equalized_odds_difference(y, pred, sensitive_features=race),
    }


def bench_fairness(smoke: bool, fairlearn: bool) -> dict[str, Any]:
    """(d): per-group numbers vs. ``MetricFrame``, and the bootstrap's time."""
    from bastion.audits.fairness import group_fairness

    rows, boot_rows, resamples, theirs = (
        (20_000, 5_000, 50, 2) if smoke else (1_000_000, 100_000, 1_000, 20)
    )
    race, y, pred = fair_rows(rows)
    ours_s, ours = median_of(3, lambda: group_fairness(race, y, pred, min_group_size=1))
    compare: dict[str, Any] = {"rows": rows, "bastion_s": ours_s}
    if fairlearn:
        compare["fairlearn_s"], found = once(lambda: fairlearn_side(race, y, pred))
        compare["speedup"] = compare["fairlearn_s"] / ours_s
        gaps = [abs(ours[k] - found[k]) for k in GAPS]
        for g in ours["groups"]:
            gaps += [abs(g[k] - found["by_group"].loc[g["group"], v]) for k, v in RATES.items()]
        compare["max_abs_difference"] = float(max(gaps))
    race, y, pred = fair_rows(boot_rows, seed=14)
    boot_s, found = median_of(
        3, lambda: group_fairness(race, y, pred, n_boot=resamples, seed=0, min_group_size=1)
    )
    boot: dict[str, Any] = {
        "rows": boot_rows,
        "resamples": resamples,
        "bastion_s": boot_s,
        "dp_difference": found["demographic_parity_difference"],
        "dp_difference_interval": found["intervals"]["demographic_parity_difference"],
    }
    if fairlearn:
        from fairlearn import metrics as fm

        spent, _ = once(
            lambda: fm.MetricFrame(
                metrics={"sr": fm.selection_rate, "tpr": fm.true_positive_rate},
                y_true=y,
                y_pred=pred,
                sensitive_features=race,
                n_boot=theirs,
                ci_quantiles=[0.025, 0.975],
                random_state=0,
            )
        )
        boot |= {
            "fairlearn_resamples_run": theirs,
            "fairlearn_s_measured": spent,
            "fairlearn_s_extrapolated": spent * resamples / theirs,
        }
    return {"compare": compare, "bootstrap": boot}


# ---------------------------------------------------------------- (e) RMIA scoring


def _dense(rx: np.ndarray, rz: np.ndarray) -> np.ndarray:
    """Privacy Meter's form: the N×Z likelihood-ratio matrix, then a mean per row."""
    return np.asarray((rx[:, None] / rz[None, :] >= 1.0).mean(axis=1))


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return int(peak)


def bench_scoring(smoke: bool) -> dict[str, Any]:
    """(e): the sort-based RMIA score's time and memory; identical to the dense form."""
    from bastion.audits.membership import rmia_scores

    n, dense_n = (2_000, 1_000) if smoke else (50_000, 10_000)
    rng = np.random.default_rng(13)
    rx, rz = rng.lognormal(size=n), rng.lognormal(size=n)
    sort_s, _ = median_of(3, lambda: rmia_scores(rx, rz))
    peak = _peak(lambda: rmia_scores(rx, rz))
    sx, sz = rx[:dense_n], rz[:dense_n]
    dense_s, dense = once(lambda: _dense(sx, sz))
    return {
        "n": n,
        "sort_s": sort_s,
        "sort_peak_bytes": peak,
        "bytes_per_row": peak / (2 * n),
        "dense_n": dense_n,
        "dense_s": dense_s,
        "dense_peak_bytes": _peak(lambda: _dense(sx, sz)),
        "identical": bool(np.array_equal(dense, rmia_scores(sx, sz))),
    }


# ---------------------------------------------------------------- report and goals


def goals(r: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every goal of the issue with whether it was met (a full run only)."""
    a, b, f = r["pgd"], r["decision"], r["membership"]["forest"]
    ex, s = r["membership"]["example"], r["scoring"]
    fc, fb = r["fairness"]["compare"], r["fairness"]["bootstrap"]
    return [
        (
            "(a) PGD success not more than 1 pp below ART's",
            a["bastion_success"] >= a["art_success"] - 0.01,
        ),
        ("(a) PGD >= 3x faster than ART", a["speedup"] >= 3),
        ("(b) decision attack success >= HopSkipJump's", b["bastion_success"] >= b["art_success"]),
        ("(b) decision attack >= 5x faster than HopSkipJump", b["speedup"] >= 5),
        (
            "(c) RMIA TPR@1%FPR above LOSS",
            f["rmia"]["tpr_at_1pct_fpr"] > f["loss"]["tpr_at_1pct_fpr"],
        ),
        (
            "(c) RMIA TPR@1%FPR above ART's black box",
            f["rmia"]["tpr_at_1pct_fpr"] > f["art"]["tpr_at_1pct_fpr"],
        ),
        ("(c) the overfit forest's release refused by the gate", not f["passed"]),
        ("(c) the example's model passes the same gate", ex["passed"]),
        ("(d) fairness equal to fairlearn to 1e-9", fc["max_abs_difference"] <= EQUAL_TOL),
        ("(d) fairness >= 10x faster than fairlearn", fc["speedup"] >= FAIR_SPEEDUP_GOAL),
        ("(d) bootstrap 100k rows x 1000 resamples <= 2 s", fb["bastion_s"] <= BOOT_GOAL_S),
        ("(e) RMIA scoring 50k x 50k < 1 s", s["sort_s"] < SCORE_GOAL_S),
        ("(e) RMIA scoring <= 64 B per row", s["bytes_per_row"] <= BYTES_PER_ROW_GOAL),
        ("(e) sort scores identical to the dense N x Z", s["identical"]),
    ]


def correctness(r: dict[str, Any]) -> list[str]:
    """What must hold at any size, smoke included: equal answers, not speed."""
    fc = r["fairness"]["compare"]
    broken = [] if r["scoring"]["identical"] else ["(e) sort scores differ from the dense N x Z"]
    if fc.get("max_abs_difference", 0.0) > EQUAL_TOL:
        broken.append("(d) fairness differs from fairlearn's by more than 1e-9")
    return broken


def report(r: dict[str, Any]) -> None:
    a, b, s = r["pgd"], r["decision"], r["scoring"]
    print(
        f"(a) PGD linf eps={EPS_LINF}, {a['rows']} digits, LogisticRegression: Bastion"
        f" {a['bastion_s']:.3f} s success {a['bastion_success']:.3f}"
        + (
            f"; ART {a['art_s']:.3f} s success {a['art_success']:.3f} ({a['speedup']:.1f}x)"
            if "art_s" in a
            else "; ART skipped"
        )
    )
    print(
        f"(b) decision attack l2 <= {BUDGET_L2}, {b['rows']} digits, RandomForest: Bastion"
        f" {b['bastion_s']:.3f} s success {b['bastion_success']:.3f} median l2"
        f" {b['bastion_median_l2']:.2f}"
        + (
            f"; ART HopSkipJump {b['art_s']:.2f} s success {b['art_success']:.3f} median l2"
            f" {b['art_median_l2']:.2f} ({b['speedup']:.1f}x)"
            if "art_s" in b
            else "; ART skipped"
        )
    )
    m = r["membership"]
    print(
        f"(c) membership on Adult, {m['samples']:,} members and non-members, gate {MEMBERSHIP_GATE}"
    )
    for name in ("forest", "forest_example_features", "example"):
        x = m[name]
        ci = x["rmia"]["tpr_at_1pct_fpr_ci"]
        print(
            f"    {name}: {x['train_rows']:,} training rows, accuracy train"
            f" {x['train_accuracy']:.3f} test {x['test_accuracy']:.3f}; audit {x['audit_s']:.1f} s;"
            f" RMIA TPR@1%FPR {x['rmia']['tpr_at_1pct_fpr']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) AUC"
            f" {x['rmia']['auc']:.3f}; LOSS {x['loss']['tpr_at_1pct_fpr']:.3f} AUC"
            f" {x['loss']['auc']:.3f}"
            + (
                f"; ART {x['art']['tpr_at_1pct_fpr']:.3f} AUC {x['art']['auc']:.3f}"
                if "art" in x
                else ""
            )
            + f"; gate {'passed' if x['passed'] else 'REFUSED'}"
        )
    fc, fb = r["fairness"]["compare"], r["fairness"]["bootstrap"]
    print(
        f"(d) fairness, {fc['rows']:,} rows: Bastion {fc['bastion_s'] * 1000:.1f} ms"
        + (
            f"; fairlearn {fc['fairlearn_s']:.2f} s ({fc['speedup']:.0f}x), largest difference"
            f" {fc['max_abs_difference']:.1e}"
            if "fairlearn_s" in fc
            else "; fairlearn skipped"
        )
    )
    print(
        f"    bootstrap {fb['rows']:,} rows x {fb['resamples']:,}: Bastion"
        f" {fb['bastion_s'] * 1000:.1f} ms"
        + (
            f"; fairlearn n_boot={fb['fairlearn_resamples_run']} {fb['fairlearn_s_measured']:.2f}"
            f" s, extrapolated to {fb['resamples']:,}: {fb['fairlearn_s_extrapolated']:.0f} s"
            if "fairlearn_s_measured" in fb
            else ""
        )
    )
    print(
        f"(e) RMIA scoring {s['n']:,} x {s['n']:,}: {s['sort_s'] * 1000:.1f} ms, peak"
        f" {s['sort_peak_bytes'] / 1e6:.2f} MB = {s['bytes_per_row']:.1f} B per row; dense"
        f" {s['dense_n']:,} x {s['dense_n']:,}: {s['dense_s']:.2f} s, peak"
        f" {s['dense_peak_bytes'] / 1e9:.2f} GB; identical {s['identical']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; goals not judged")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    smoke = args.smoke
    art, fairlearn = have("art"), have("fairlearn")
    if not smoke and not (art and fairlearn):
        print(
            "a full run needs ART and fairlearn: pip install adversarial-robustness-toolbox"
            " fairlearn"
        )
        return 1
    with limit_threads() as threads:
        r = run_all(smoke, art, fairlearn)
    print(
        f"load average at start {r['load'][0][0]:.2f}, at end {r['load'][1][0]:.2f}"
        f" ({os.cpu_count()} cores, {threads} thread(s) per BLAS/OpenMP pool)"
    )
    report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=float))
    if smoke:
        print("smoke: goals not judged")
        broken = correctness(r)
        for what in broken:
            print(f"FAILED {what}")
        return 1 if broken else 0
    judged = goals(r)
    for what, met in judged:
        print(f"{'PASS  ' if met else 'MISSED'} {what}")
    return 0 if all(met for _, met in judged) else 1


def run_all(smoke: bool, art: bool, fairlearn: bool) -> dict[str, Any]:
    """Every comparison, in this process, with the load average before and after."""
    load = [os.getloadavg()]
    d = digits(20 if smoke else 500)
    few = 20 if smoke else 50
    r: dict[str, Any] = {"pgd": bench_pgd(d, smoke, art)}
    d |= {"test": d["test"].iloc[:few], "y_test": d["y_test"][:few], "X_test": d["X_test"][:few]}
    r["decision"] = bench_decision(d, smoke, art)
    r["membership"] = bench_membership(smoke, art)
    r["fairness"] = bench_fairness(smoke, fairlearn)
    r["scoring"] = bench_scoring(smoke)
    load.append(os.getloadavg())
    r["load"] = load
    return r


if __name__ == "__main__":
    sys.exit(main())
