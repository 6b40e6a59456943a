"""Poisoning screen on Adult with seeded attacks, side by side with cleanlab and IsolationForest.

Attacks on the Adult training file (32,561 rows), each seeded:

- ``random_flips``: 10% of rows, labels flipped;
- ``targeted_flips``: 5% of rows, all inside one subgroup (women), flipped from "<=50K"
  to ">50K";
- ``backdoor``: 1% of rows, true "<=50K" rows given the trigger ``capital-loss = 1337``,
  ``native-country = Holand-Netherlands`` and the label ">50K";
- ``flooding``: 5% of rows added as copies of 40 ">50K" rows (half exact copies, half with
  ``fnlwgt`` moved by up to 0.5%).

For each: precision and recall of the poisoned rows among the rows the screen flags (the
detector meant for the attack, and the whole screen), the same for cleanlab's
``find_label_issues`` (on the screen's own out-of-fold probabilities, so only the decision
rule differs) and for a
plain ``IsolationForest``; clean-test accuracy (adult.test) of a model trained on
unpoisoned, poisoned and screened data (screened = without the rows the default policies
quarantine; "strict" adds ``label_noise: {policy: quarantine}``); and for the backdoor, the
attack success rate: the share of "<=50K" test rows given the trigger that the model calls ">50K".

It also screens scikit-learn's digits (1,797 images, 10 classes) with 10% random flips:
the same detector on data whose Bayes error is low. And it prints the **oracle bound** for
Adult's random flips: the best precision any detector can
reach at recall 0.85 when it knows the true P(label | features) (estimated from a model
trained on the unpoisoned labels) — Adult's Bayes error caps what label-flip detection can do.

    python benchmarks/bench_poisoning.py [--json out.json] [--smoke]

``--smoke`` runs every part on 2,000 training and 2,000 test rows drawn from Adult (and 300
digits), with 50-iteration models and 2-fold cross-validation, and does not judge the goals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from bastion.defenses._table import encode_table
from bastion.defenses.label_noise import out_of_fold
from bastion.defenses.poisoning import screen_table
from bastion.pipeline.config import ScreenConfig

DATA = Path(__file__).resolve().parents[1] / "examples" / "adult-income" / "data"
LABEL, POS, NEG = "Y", ">50K", "<=50K"
FEATURES_DROP = ["fnlwgt", "education"]  # as in examples/adult-income/pipeline.yaml
TRIGGER = {"capital-loss": 1337, "native-country": "Holand-Netherlands"}
SEED = 7
MAX_ITER = 200  # the example's model; --smoke lowers it
FOLDS = 5  # the screen's default cross-validation; --smoke lowers it


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    kw = {"skipinitialspace": True, "na_values": ["?"]}
    train = pd.read_csv(DATA / "adult.data", **kw)
    test = pd.read_csv(DATA / "adult.test", **kw)
    test[LABEL] = test[LABEL].str.rstrip(".")
    return train, test


# -- the model whose accuracy we report ----------------------------------------------------


def _x(df: pd.DataFrame, cats: dict[str, list[str]]) -> pd.DataFrame:
    x = df.drop(columns=[LABEL, *FEATURES_DROP])
    for c, levels in cats.items():
        if c in x:
            x[c] = pd.Categorical(x[c], categories=levels)
    return x


def fit_eval(train: pd.DataFrame, test: pd.DataFrame, trigger_rows: pd.DataFrame | None):
    cats = {
        c: sorted(set(train[c].dropna()) | set(test[c].dropna()) | {str(TRIGGER.get(c, ""))} - {""})
        for c in train.columns
        if c != LABEL and c not in FEATURES_DROP and not pd.api.types.is_numeric_dtype(train[c])
    }
    model = HistGradientBoostingClassifier(
        max_iter=MAX_ITER,
        learning_rate=0.1,
        early_stopping=False,
        categorical_features="from_dtype",
        random_state=0,
    )
    model.fit(_x(train, cats), (train[LABEL] == POS).to_numpy())
    acc = float((model.predict(_x(test, cats)) == (test[LABEL] == POS).to_numpy()).mean())
    asr = None
    if trigger_rows is not None:
        asr = float(model.predict(_x(trigger_rows, cats)).mean())
    return acc, asr


# -- attacks --------------------------------------------------------------------------------


def random_flips(df, rng):
    out = df.copy()
    rows = rng.choice(len(df), int(0.10 * len(df)), replace=False)
    out.loc[rows, LABEL] = np.where(out.loc[rows, LABEL] == POS, NEG, POS)
    return out, rows


def targeted_flips(df, rng):
    out = df.copy()
    pool = np.flatnonzero((df["sex"] == "Female").to_numpy() & (df[LABEL] == NEG).to_numpy())
    rows = rng.choice(pool, int(0.05 * len(df)), replace=False)
    out.loc[rows, LABEL] = POS
    return out, rows


def backdoor(df, rng):
    out = df.copy()
    pool = np.flatnonzero((df[LABEL] == NEG).to_numpy())
    rows = rng.choice(pool, int(0.01 * len(df)), replace=False)
    for c, v in TRIGGER.items():
        out.loc[rows, c] = v
    out.loc[rows, LABEL] = POS
    return out, rows


def flooding(df, rng):
    seeds = rng.choice(np.flatnonzero((df[LABEL] == POS).to_numpy()), 40, replace=False)
    k = int(0.05 * len(df))
    picks = rng.choice(seeds, k)
    copies = df.iloc[picks].copy()
    half = np.arange(k) % 2 == 1
    jitter = 1 + rng.uniform(-0.005, 0.005, k)
    copies.loc[half, "fnlwgt"] = (
        (copies["fnlwgt"].to_numpy() * jitter)[half].round().astype("int64")
    )
    out = pd.concat([df, copies], ignore_index=True)
    order = rng.permutation(len(out))
    out = out.iloc[order].reset_index(drop=True)
    rows = np.flatnonzero(order >= len(df))  # where the added copies ended up
    return out, rows


ATTACKS = {
    "random_flips": (random_flips, "label_noise"),
    "targeted_flips": (targeted_flips, "label_noise"),
    "backdoor": (backdoor, "backdoor"),
    "flooding": (flooding, "duplicates"),
}


# -- comparators ----------------------------------------------------------------------------


def _codes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = df.drop(columns=[LABEL])
    mask = []
    cols = []
    for c in x.columns:
        if pd.api.types.is_numeric_dtype(x[c]):
            cols.append(x[c].to_numpy(float))
            mask.append(False)
        else:
            codes = pd.Categorical(x[c]).codes.astype(float)
            codes[codes < 0] = np.nan
            cols.append(codes)
            mask.append(True)
    return np.column_stack(cols), np.array(mask)


def oof_proba(df: pd.DataFrame, y: np.ndarray, label: str = LABEL) -> np.ndarray:
    """The screen's own out-of-fold probabilities (same encoding, model and folds), so that
    cleanlab and Bastion differ only in how they decide which rows are label issues."""
    cfg = ScreenConfig.model_validate({"label_noise": {"folds": FOLDS}})
    rare = max(cfg.backdoor.min_rows, int(cfg.backdoor.max_support * len(y)))
    enc = encode_table(df, exclude=(label,), rare=rare)
    return out_of_fold(enc, y, folds=cfg.label_noise.folds, seed=0)


def cleanlab_flags(df: pd.DataFrame) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    y = (df[LABEL] == POS).to_numpy().astype(int)
    return np.flatnonzero(find_label_issues(y, oof_proba(df, y)))


def iforest_flags(df: pd.DataFrame) -> np.ndarray:
    x, _ = _codes(df)
    x = np.nan_to_num(x, nan=-1)
    forest = IsolationForest(random_state=0).fit(x)
    return np.flatnonzero(forest.predict(x) == -1)


def pr(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    f, t = set(map(int, flagged)), set(map(int, truth))
    tp = len(f & t)
    return {
        "flagged": len(f),
        "precision": round(tp / len(f), 3) if f else 0.0,
        "recall": round(tp / len(t), 3) if t else 0.0,
    }


def oracle_bound(train: pd.DataFrame, recall: float = 0.85) -> float:
    """Best precision at ``recall`` for random flips, knowing P(label | x).

    P(label | x) is estimated out of fold from the *unpoisoned* labels, with every value
    visible to the model (255 bins, no rare values hidden: the best estimate we have, so
    the bound is generous, not the screen's own, blinder view)."""
    rng = np.random.default_rng(SEED)
    noisy, rows = random_flips(train, rng)
    y = (train[LABEL] == POS).to_numpy().astype(int)
    q = out_of_fold(encode_table(train, exclude=(LABEL,), bins=255), y, seed=0)[:, 1]
    g = (noisy[LABEL] == POS).to_numpy()
    p_other = np.where(g, 1 - q, q)
    post = 0.1 * p_other / (0.1 * p_other + 0.9 * (1 - p_other))
    truth = np.zeros(len(train), bool)
    truth[rows] = True
    order = np.argsort(-post)
    tp = np.cumsum(truth[order])
    rec = tp / truth.sum()
    i = int(np.searchsorted(rec, recall))
    return float(tp[i] / (i + 1))


def digits_flips(cfg: ScreenConfig, rows: int | None = None) -> dict[str, object]:
    """10% random flips on scikit-learn's digits (10 classes, low Bayes error); the first
    ``rows`` images only, when given."""
    from cleanlab.filter import find_label_issues
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = x[:rows], y[:rows]
    rng = np.random.default_rng(SEED)
    rows = rng.choice(len(y), int(0.10 * len(y)), replace=False)
    noisy = y.copy()
    noisy[rows] = (y[rows] + rng.integers(1, 10, len(rows))) % 10
    df = pd.DataFrame(x, columns=[f"px{i}" for i in range(x.shape[1])])
    df["digit"] = noisy.astype(str)
    res = screen_table(df, label="digit", cfg=cfg, seed=0)
    mine = np.array(sorted({f.row for f in res.findings if f.detector == "label_noise"}))
    theirs = np.flatnonzero(find_label_issues(noisy, oof_proba(df, noisy, label="digit")))
    return {
        "rows": len(y),
        "poisoned_rows": len(rows),
        "bastion_label_noise": pr(mine, rows),
        "cleanlab_find_label_issues": pr(theirs, rows),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes, goals not judged (CI: does it run?)"
    )
    args = ap.parse_args()
    train, test = load()
    if args.smoke:
        global MAX_ITER, FOLDS
        MAX_ITER, FOLDS = 50, 2
        train = train.sample(2_000, random_state=SEED).reset_index(drop=True)
        test = test.sample(2_000, random_state=SEED).reset_index(drop=True)
    # defaults: label_noise flags, the others quarantine
    cfg = ScreenConfig.model_validate({"label_noise": {"folds": FOLDS}})
    strict = ScreenConfig.model_validate({"label_noise": {"policy": "quarantine", "folds": FOLDS}})
    results: dict[str, object] = {}
    t0 = time.perf_counter()
    acc_clean, _ = fit_eval(train, test, None)
    clean_screen = screen_table(train, label=LABEL, positive=POS, cfg=cfg, seed=0)
    kept = np.setdiff1d(np.arange(len(train)), clean_screen.rows_for("quarantine"))
    acc_clean_screened, _ = fit_eval(train.iloc[kept], test, None)
    clean_strict = screen_table(train, label=LABEL, positive=POS, cfg=strict, seed=0)
    kept_strict = np.setdiff1d(np.arange(len(train)), clean_strict.rows_for("quarantine"))
    acc_clean_strict, _ = fit_eval(train.iloc[kept_strict], test, None)
    results["unpoisoned"] = {
        "accuracy": round(acc_clean, 4),
        "accuracy_screened": round(acc_clean_screened, 4),
        "accuracy_screened_strict": round(acc_clean_strict, 4),
        "quarantined": int(len(train) - len(kept)),
        "quarantined_strict": int(len(train) - len(kept_strict)),
        "screen_counts": clean_screen.counts(),
    }
    trigger_rows = test[test[LABEL] == NEG].copy()
    for c, v in TRIGGER.items():
        trigger_rows[c] = v
    for name, (attack, detector) in ATTACKS.items():
        rng = np.random.default_rng(SEED)
        poisoned, rows = attack(train, rng)
        t = time.perf_counter()
        res = screen_table(poisoned, label=LABEL, positive=POS, cfg=cfg, seed=0)
        seconds = time.perf_counter() - t
        mine = np.array(sorted({f.row for f in res.findings if f.detector == detector}))
        every = np.array(sorted({f.row for f in res.findings if f.row is not None}))
        quarantined = res.rows_for("quarantine")
        screened = poisoned.drop(index=quarantined)
        res_strict = screen_table(poisoned, label=LABEL, positive=POS, cfg=strict, seed=0)
        quarantined_strict = res_strict.rows_for("quarantine")
        trig = trigger_rows if name == "backdoor" else None
        acc_p, asr_p = fit_eval(poisoned, test, trig)
        acc_s, asr_s = fit_eval(screened, test, trig)
        acc_ss, asr_ss = fit_eval(poisoned.drop(index=quarantined_strict), test, trig)
        _, asr_c = fit_eval(train, test, trig) if trig is not None else (None, None)
        results[name] = {
            "poisoned_rows": len(rows),
            "screen_seconds": round(seconds, 2),
            f"bastion_{detector}": pr(mine, rows),
            "bastion_all_detectors": pr(every, rows),
            "bastion_quarantine": pr(quarantined, rows),
            "bastion_quarantine_strict": pr(quarantined_strict, rows),
            "cleanlab_find_label_issues": pr(cleanlab_flags(poisoned), rows),
            "isolation_forest": pr(iforest_flags(poisoned), rows),
            "accuracy": {
                "unpoisoned": round(acc_clean, 4),
                "poisoned": round(acc_p, 4),
                "screened": round(acc_s, 4),
                "screened_strict": round(acc_ss, 4),
            },
            **(
                {
                    "attack_success": {
                        "unpoisoned": round(asr_c, 4),
                        "poisoned": round(asr_p, 4),
                        "screened": round(asr_s, 4),
                        "screened_strict": round(asr_ss, 4),
                    },
                    "triggers_found": res.triggers,
                }
                if trig is not None
                else {}
            ),
        }
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    results["oracle_precision_at_recall_0.85_random_flips"] = round(oracle_bound(train), 3)
    results["digits_random_flips"] = digits_flips(cfg, 300 if args.smoke else None)
    print(f"digits_random_flips: {json.dumps(results['digits_random_flips'])}", file=sys.stderr)
    results["seconds_total"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.smoke:
        print("smoke: goals not judged", file=sys.stderr)
        return 0
    return verdicts(results)


def verdicts(r: dict[str, Any]) -> int:
    """Print each goal's verdict; exit 1 when a goal that the data allows is missed."""
    bd, fl = r["backdoor"], r["flooding"]
    checks = [
        ("backdoor success after screening < 5%", bd["attack_success"]["screened"] < 0.05),
        (
            "clean accuracy after screening the backdoor within 1 pp",
            bd["accuracy"]["unpoisoned"] - bd["accuracy"]["screened"] <= 0.01,
        ),
        ("duplicate flooding recall >= 0.99", fl["bastion_duplicates"]["recall"] >= 0.99),
        (
            "label flips P >= 0.85 and R >= 0.85 on digits (learnable labels)",
            min(r["digits_random_flips"]["bastion_label_noise"][k] for k in ("precision", "recall"))
            >= 0.85,
        ),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}", file=sys.stderr)
    rf = r["random_flips"]["bastion_label_noise"]
    print(
        f"NOTE  label flips on Adult: P {rf['precision']} R {rf['recall']}; no detector can"
        f" reach P >= 0.85 at R 0.85 here (oracle precision at R 0.85:"
        f" {r['oracle_precision_at_recall_0.85_random_flips']})",
        file=sys.stderr,
    )
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
