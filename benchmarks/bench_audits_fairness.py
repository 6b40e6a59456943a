"""Fairness measurement, side by side with fairlearn (issue 13, item 1).

Data: Adult-like rows drawn with a fixed seed: ``race`` with Adult's five groups and their
shares (85% to 0.8%, as object-dtype text), a 0/1 label (24% positive) and decisions
that differ by group.

- **Per-group numbers**: fairlearn's ``MetricFrame`` (selection rate, TPR, FPR, accuracy by
  group) plus its ``demographic_parity_difference``, ``demographic_parity_ratio`` and
  ``equalized_odds_difference``, against one call of Bastion's ``group_fairness``, on
  1,000,000 rows. Goal: every value equal to 1e-9 and Bastion ≥ 10× faster.
- **Bootstrap intervals**: Bastion's ``group_fairness(n_boot=1000)`` (95% intervals for
  every rate and every gap) on 100,000 rows; goal ≤ 2 s. Against fairlearn's own bootstrap
  (``MetricFrame(n_boot=...)``, which recomputes the frame per resample), run with few
  resamples (20) and **extrapolated linearly to 1,000** (stated in the output).

Each side runs in this one process; Bastion's timings are the best of 3, fairlearn's one
run (it is the slow side; one run flatters it less than it would us).

    python benchmarks/bench_audits_fairness.py [--json out.json] [--smoke]

``--smoke`` uses 20,000 rows, 5,000 × 50 resamples and 2 fairlearn resamples, and does not
judge the goals. fairlearn is optional: without it the comparison is skipped (in smoke) or
the run fails (a full run needs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bastion.audits.fairness import group_fairness

RACES = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]
SHARES = [0.854, 0.096, 0.032, 0.010, 0.008]
SPEEDUP_GOAL, EQUAL_TOL, BOOT_GOAL_S = 10.0, 1e-9, 2.0
RATES = {"selection_rate": "sr", "tpr": "tpr", "fpr": "fpr", "accuracy": "acc"}


def make_rows(n: int, seed: int = 13) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """``n`` Adult-like rows: the race column (text), labels and decisions."""
    rng = np.random.default_rng(seed)
    race = np.asarray(RACES, dtype=object)[rng.choice(len(RACES), size=n, p=SHARES)]
    y = (rng.random(n) < 0.24).astype(np.int64)
    lean = pd.Series(race).map(dict(zip(RACES, [0.10, 0.04, 0.12, 0.03, 0.05], strict=True)))
    pred = np.where(rng.random(n) < 0.82, y, rng.random(n) < lean.to_numpy()).astype(np.int64)
    return pd.Series(race, name="race"), y, pred


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def fairlearn_side(race: pd.Series, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from fairlearn import metrics as fm
    from sklearn.metrics import accuracy_score

    by_group = fm.MetricFrame(
        metrics={
            "sr": fm.selection_rate,
            "tpr": fm.true_positive_rate,
            "fpr": fm.false_positive_rate,
            "acc": accuracy_score,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=race,
    ).by_group
    return {
        "by_group": by_group,
        "demographic_parity_difference": fm.demographic_parity_difference(
            y, pred, sensitive_features=race
        ),
        "disparate_impact_ratio": fm.demographic_parity_ratio(y, pred, sensitive_features=race),
        "equalized_odds_difference": fm.equalized_odds_difference(y, pred, sensitive_features=race),
    }


def largest_gap(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """The largest absolute difference between any of our numbers and fairlearn's."""
    gaps = [abs(ours[k] - theirs[k]) for k in RATES_GAPS]
    for g in ours["groups"]:
        gaps += [abs(g[k] - theirs["by_group"].loc[g["group"], v]) for k, v in RATES.items()]
    return float(max(gaps))


RATES_GAPS = [
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "equalized_odds_difference",
]


def compare(n: int, have_fairlearn: bool) -> dict[str, Any]:
    race, y, pred = make_rows(n)
    ours_s, ours = best_of(3, lambda: group_fairness(race, y, pred, min_group_size=1))
    out: dict[str, Any] = {"rows": n, "bastion_s": ours_s}
    if have_fairlearn:
        start = time.perf_counter()
        theirs = fairlearn_side(race, y, pred)
        out["fairlearn_s"] = time.perf_counter() - start
        out["speedup"] = out["fairlearn_s"] / ours_s
        out["max_abs_difference"] = largest_gap(ours, theirs)
    return out


def bootstrap(n: int, resamples: int, theirs: int, have_fairlearn: bool) -> dict[str, Any]:
    race, y, pred = make_rows(n, seed=14)
    ours_s, found = best_of(
        3, lambda: group_fairness(race, y, pred, n_boot=resamples, seed=0, min_group_size=1)
    )
    out: dict[str, Any] = {
        "rows": n,
        "resamples": resamples,
        "bastion_s": ours_s,
        "dp_difference": found["demographic_parity_difference"],
        "dp_difference_interval": found["intervals"]["demographic_parity_difference"],
    }
    if have_fairlearn:
        from fairlearn import metrics as fm

        start = time.perf_counter()
        fm.MetricFrame(
            metrics={"sr": fm.selection_rate, "tpr": fm.true_positive_rate},
            y_true=y,
            y_pred=pred,
            sensitive_features=race,
            n_boot=theirs,
            ci_quantiles=[0.025, 0.975],
            random_state=0,
        )
        spent = time.perf_counter() - start
        out |= {
            "fairlearn_resamples_run": theirs,
            "fairlearn_s_measured": spent,
            "fairlearn_s_extrapolated": spent * resamples / theirs,
            "speedup_extrapolated": spent * resamples / theirs / ours_s,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; goals not judged")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    try:
        import fairlearn  # noqa: F401

        have = True
    except ImportError:
        have = False
        if not args.smoke:
            print("fairlearn is not installed: pip install 'bastion-ml[fairness]'")
            return 1
        print("fairlearn is not installed: comparison skipped (smoke)")
    rows, boot_rows, resamples, theirs = (
        (20_000, 5_000, 50, 2) if args.smoke else (1_000_000, 100_000, 1_000, 20)
    )
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    first = compare(rows, have)
    second = bootstrap(boot_rows, resamples, theirs, have)
    print(f"load average {' '.join(load)}")
    print(f"per-group numbers, {rows:,} rows: Bastion {first['bastion_s'] * 1000:.1f} ms")
    if have:
        print(
            f"  fairlearn MetricFrame + 3 gap functions {first['fairlearn_s']:.2f} s;"
            f" ratio {first['speedup']:.1f}x (goal >= {SPEEDUP_GOAL:g}x);"
            f" largest difference {first['max_abs_difference']:.2e} (goal <= {EQUAL_TOL:g})"
        )
    print(
        f"bootstrap, {boot_rows:,} rows x {resamples:,} resamples: Bastion"
        f" {second['bastion_s']:.3f} s (goal <= {BOOT_GOAL_S:g} s); DP difference"
        f" {second['dp_difference']:.4f}, 95% interval {second['dp_difference_interval']}"
    )
    if have:
        print(
            f"  fairlearn MetricFrame(n_boot={theirs}) {second['fairlearn_s_measured']:.2f} s,"
            f" extrapolated to {resamples:,} resamples {second['fairlearn_s_extrapolated']:.0f} s;"
            f" ratio {second['speedup_extrapolated']:.0f}x (extrapolated)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"load": load, "compare": first, "bootstrap": second}, handle, indent=2)
    if args.smoke:
        return 0
    missed = [
        *(["speed"] if first["speedup"] < SPEEDUP_GOAL else []),
        *(["equality"] if first["max_abs_difference"] > EQUAL_TOL else []),
        *(["bootstrap time"] if second["bastion_s"] > BOOT_GOAL_S else []),
    ]
    print("goals: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
