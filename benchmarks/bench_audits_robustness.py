"""Robustness audit against ART, side by side in one process, on scikit-learn's digits.

Both sides attack the same fitted model on the same rows; the inputs are digits' 64 pixels
standard-scaled by Bastion's feature transformer (so every budget is in standard deviations),
and ART is given that same standardised matrix (it cannot attack a raw DataFrame through a
``ColumnTransformer``), wrapped in its ``SklearnClassifier``. Bastion attacks the raw rows
through the transformer and pays for it inside its timing.

1. **White-box**: ``LogisticRegression`` (10 classes); Bastion's batched ``pgd`` against ART's
   ``ProjectedGradientDescent`` (ℓ∞, ε = 0.3, 20 iterations, the same step, no random start,
   ART's default batch size). Success = the share of correctly classified rows misclassified
   after the attack. Goal: the same success (±1 pp; higher is not a miss) and ≥ 3× faster.
   Bastion keeps each row's first adversarial iterate, ART its last, so Bastion's success
   can be a little higher at the same step.
2. **Black-box**: ``RandomForestClassifier`` (100 trees); Bastion's ``decision_attack`` (start
   from the nearest training row of another class, binary search, boundary walk) against
   ART's ``HopSkipJump`` (ℓ2, untargeted, ``HSJ_ITER`` iterations), on ``BLACK_BOX_ROWS``
   rows. Success = the share of correctly classified rows given an adversarial row within
   ℓ2 ≤ ``BUDGET_L2``. Goal: ≥ 5× faster at equal or higher success.

    python benchmarks/bench_audits_robustness.py [--smoke] [--json out.json]

``--smoke`` attacks 20 rows with few iterations and does not judge the goals; without ART
installed it runs Bastion's side only. Exit 1 on a missed goal (not in smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from bastion.audits.constraints import Constraints
from bastion.audits.robustness import decision_attack, pgd
from bastion.spec.config import ColumnSpec, FeaturesConfig
from bastion.stages.features import build_transformer

EPS_LINF = 0.3
BUDGET_L2 = 3.0
PGD_STEPS = 20
HSJ_ITER = 3  # ART's default is 50 (max_eval 10,000); 20 (1,000) ran > 20 min here
BLACK_BOX_ROWS = 50  # the 50 digits


def _data(n_test: int) -> dict[str, Any]:
    digits = load_digits()
    cols = [f"p{i}" for i in range(64)]
    frame = pd.DataFrame(digits.data, columns=cols)
    train, test, y_train, y_test = train_test_split(
        frame, digits.target, test_size=0.4, random_state=0, stratify=digits.target
    )
    tf = build_transformer(FeaturesConfig.model_validate({"numeric": {"columns": cols}}))
    X_train = tf.fit_transform(train)
    test, y_test = test.iloc[:n_test], y_test[:n_test]
    schema = {c: ColumnSpec(type="float") for c in cols}
    return {
        "train": train,
        "test": test,
        "y_train": y_train,
        "y_test": y_test,
        "tf": tf,
        "X_train": X_train,
        "X_test": tf.transform(test),
        "constraints": Constraints.from_schema(schema, tf),
    }


def _art() -> Any:
    try:
        from art.estimators.classification import SklearnClassifier
    except ImportError:
        return None
    return SklearnClassifier


def white_box(d: dict[str, Any], smoke: bool) -> dict[str, Any]:
    model = LogisticRegression(max_iter=2000).fit(d["X_train"], d["y_train"])
    steps = 5 if smoke else PGD_STEPS
    alpha = 2.5 * EPS_LINF / steps
    correct = model.predict(d["X_test"]) == d["y_test"]
    t0 = time.perf_counter()
    ours = pgd(
        model,
        d["tf"],
        d["constraints"],
        d["test"],
        d["y_test"],
        eps=EPS_LINF,
        steps=steps,
        step_size=alpha,
    )
    ours_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "rows": len(d["test"]),
        "bastion_s": ours_s,
        "bastion_success": float(ours.flipped[correct].mean()),
        "bastion_max_linf": float(ours.linf.max()),
    }
    wrap = _art()
    if wrap is None:
        return out
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(
        wrap(model=model),
        norm=np.inf,
        eps=EPS_LINF,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=0,
        verbose=False,
    )
    t0 = time.perf_counter()
    adv = attack.generate(x=np.asarray(d["X_test"], dtype=np.float32))
    out["art_s"] = time.perf_counter() - t0
    out["art_success"] = float((model.predict(adv) != d["y_test"])[correct].mean())
    out["speedup"] = out["art_s"] / ours_s
    return out


def black_box(d: dict[str, Any], smoke: bool) -> dict[str, Any]:
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    model.fit(d["X_train"], d["y_train"])
    correct = model.predict(d["X_test"]) == d["y_test"]
    t0 = time.perf_counter()
    ours = decision_attack(
        model,
        d["tf"],
        d["constraints"],
        d["test"],
        d["y_test"],
        d["train"],
        norm="l2",
        steps=10 if smoke else 100,
    )
    ours_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "rows": len(d["test"]),
        "bastion_s": ours_s,
        "bastion_success": float((ours.flipped & (ours.l2 <= BUDGET_L2))[correct].mean()),
        "bastion_median_l2": float(np.median(ours.l2[correct & ours.flipped])),
    }
    wrap = _art()
    if wrap is None:
        return out
    from art.attacks.evasion import HopSkipJump

    attack = HopSkipJump(
        wrap(model=model),
        norm=2,
        max_iter=2 if smoke else HSJ_ITER,
        max_eval=100 if smoke else 200,
        init_eval=10 if smoke else 20,
        verbose=False,
    )
    x = np.asarray(d["X_test"], dtype=np.float32)
    t0 = time.perf_counter()
    adv = attack.generate(x=x)
    out["art_s"] = time.perf_counter() - t0
    dist = np.linalg.norm(adv - x, axis=1)
    flipped = model.predict(adv) != d["y_test"]
    out["art_success"] = float((flipped & (dist <= BUDGET_L2))[correct].mean())
    out["art_median_l2"] = float(np.median(dist[correct & flipped]))
    out["speedup"] = out["art_s"] / ours_s
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    d = _data(20 if args.smoke else 500)
    wb = white_box(d, args.smoke)
    m = 20 if args.smoke else BLACK_BOX_ROWS
    few = {**d, "test": d["test"].iloc[:m], "y_test": d["y_test"][:m], "X_test": d["X_test"][:m]}
    bb = black_box(few, args.smoke)
    print(f"load average {load:.2f} ({os.cpu_count()} cores)")
    print(f"PGD linf eps={EPS_LINF} on {wb['rows']} digits, LogisticRegression:")
    print(f"  bastion {wb['bastion_s']:.3f}s success {wb['bastion_success']:.3f}")
    if "art_s" in wb:
        print(
            f"  ART     {wb['art_s']:.3f}s success {wb['art_success']:.3f}"
            f"  -> {wb['speedup']:.1f}x faster"
        )
    print(f"decision attack l2<= {BUDGET_L2} on {bb['rows']} digits, RandomForest:")
    print(
        f"  bastion {bb['bastion_s']:.3f}s success {bb['bastion_success']:.3f}"
        f" median l2 {bb['bastion_median_l2']:.2f}"
    )
    if "art_s" in bb:
        print(
            f"  ART HopSkipJump {bb['art_s']:.3f}s success {bb['art_success']:.3f}"
            f" median l2 {bb['art_median_l2']:.2f}  -> {bb['speedup']:.1f}x faster"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"load": load, "pgd": wb, "decision": bb}, fh, indent=2)
    if args.smoke:
        print("smoke: goals not judged")
        return 0
    missed = []
    if "art_s" not in wb or "art_s" not in bb:
        missed.append("ART is not installed: the comparison could not run")
    else:
        # "the same success (±1 pp)": a stronger attack is not a miss, a weaker one is
        if wb["bastion_success"] < wb["art_success"] - 0.01:
            missed.append("PGD success more than 1 pp below ART's")
        if wb["speedup"] < 3:
            missed.append(f"PGD only {wb['speedup']:.1f}x faster than ART (goal 3x)")
        if bb["bastion_success"] < bb["art_success"]:
            missed.append("decision attack less successful than HopSkipJump")
        if bb["speedup"] < 5:
            missed.append(f"decision attack only {bb['speedup']:.1f}x faster (goal 5x)")
    for m in missed:
        print(f"MISSED: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
