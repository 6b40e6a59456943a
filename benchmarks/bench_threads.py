"""Thread policy under contention: the old behaviour (a pool per core) vs ``threads: auto``.

One process run, both policies, on a quiet machine and beside one competing process that
keeps one core busy (a Python spin loop started by this script), measured alternately:

- **train**: the Adult example's HistGradientBoosting fit on the fitted features (what the
  train stage does);
- **screen**: the whole poisoning screen of the Adult training table with the example's
  screen settings (encode, 5-fold cross-validation, detectors).

"old" caps the pools at one thread per usable core, which is what scikit-learn does when
nothing caps it; "auto" is Bastion's default (:mod:`bastion.threads`). Medians of
``--repeat`` runs.

Goals: with one competing process, auto is at least 1.5x faster than old on each task,
and on the quiet machine auto is within 15% of old (it must still use every idle core).

    python benchmarks/bench_threads.py [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"
BUSY_GOAL = 1.5  # auto at least this much faster than old beside one busy process
QUIET_SLACK = 1.15  # auto at most this much slower than old on a quiet machine


@contextmanager
def competing_process() -> Iterator[None]:
    """One other process spinning on one core for the duration of the block."""
    program = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"
    spin = subprocess.Popen([sys.executable, "-c", program])
    try:
        time.sleep(0.5)  # let the scheduler see it
        yield
    finally:
        spin.kill()
        spin.wait()


def load(rows: int | None) -> tuple[pd.DataFrame, Any, Any, Any]:
    from bastion.pipeline.loader import load_pipeline
    from bastion.stages.features import build_transformer

    cfg, _ = load_pipeline(EXAMPLE)
    read = {"skipinitialspace": True, "na_values": ["?"]}
    frame = pd.read_csv(EXAMPLE.parent / "data" / "adult.data", nrows=rows, **read)
    label = cfg.data.label
    frame[label.column] = frame[label.column].replace(label.map)
    used = [*cfg.features.numeric.columns, *cfg.features.categorical.columns]
    transformer = build_transformer(cfg.features).fit(frame[used])
    return frame, cfg, transformer.transform(frame[used]), (frame[label.column] == label.positive)


def tasks(rows: int | None) -> dict[str, Callable[[int | str], tuple[float, int]]]:
    from bastion.defenses.poisoning import screen_table
    from bastion.stages.train import make_estimator
    from bastion.threads import limit_threads, resolve_threads

    frame, cfg, features, y = load(rows)

    def train(threads: int | str) -> tuple[float, int]:
        model = make_estimator(cfg.model, cfg.seed)
        t0 = time.perf_counter()
        with limit_threads(threads) as used:
            model.fit(features, y)
        return time.perf_counter() - t0, used

    def screen(threads: int | str) -> tuple[float, int]:
        t0 = time.perf_counter()
        used = resolve_threads(threads)  # what screen_table would resolve, recorded
        screen_table(
            frame,
            label=cfg.data.label.column,
            positive=cfg.data.label.positive,
            cfg=cfg.data.screen,
            seed=cfg.seed,
            shift=False,
            threads=used,
        )
        return time.perf_counter() - t0, used

    return {"train": train, "screen": screen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; goals not judged")
    args = parser.parse_args()
    os.environ.pop("BASTION_THREADS", None)  # the policies under test, not the caller's
    repeat = 1 if args.smoke else args.repeat
    cores = len(os.sched_getaffinity(0))
    old: int | str = cores
    work = tasks(1_000 if args.smoke else None)
    times: dict[tuple[str, str, str], list[float]] = {}
    chosen: dict[tuple[str, str, str], list[int]] = {}  # thread counts used
    scenes = ("quiet",) if args.smoke else ("quiet", "busy")
    for scene in scenes:
        ctx = competing_process() if scene == "busy" else _nothing()
        with ctx:
            for _ in range(repeat):
                for task, fn in work.items():
                    policies = (
                        (("one", 1), ("auto", "auto"))
                        if args.smoke
                        else (
                            ("old", old),
                            ("auto", "auto"),
                        )
                    )
                    for policy, setting in policies:
                        seconds, used = fn(setting)
                        times.setdefault((task, scene, policy), []).append(seconds)
                        chosen.setdefault((task, scene, policy), []).append(used)
    ok = True
    load1 = os.getloadavg()[0]
    print(f"{cores} usable cores; load average at the end {load1:.2f}; medians of {repeat}")
    med = {k: statistics.median(v) for k, v in times.items()}
    if args.smoke:
        for (task, scene, policy), value in sorted(med.items()):
            print(f"{task:8} {policy:6} {scene:6} {value:8.2f} s")
        print("smoke: goals not judged")
        return 0
    print(f"{'task':8} {'policy':6} {'quiet s':>8} {'busy s':>8} {'busy/quiet':>10}")
    for task in work:
        for policy in ("old", "auto"):
            q, b = med[(task, "quiet", policy)], med[(task, "busy", policy)]
            counts = chosen[(task, "quiet", policy)], chosen[(task, "busy", policy)]
            print(
                f"{task:8} {policy:6} {q:8.2f} {b:8.2f} {b / q:10.2f}"
                f"   threads quiet {counts[0]}, busy {counts[1]}"
            )
        speedup = med[(task, "busy", "old")] / med[(task, "busy", "auto")]
        quiet = med[(task, "quiet", "auto")] / med[(task, "quiet", "old")]
        good = speedup >= BUSY_GOAL and quiet <= QUIET_SLACK
        ok = ok and good
        print(
            f"{task}: busy, auto is {speedup:.2f}x faster than old (goal >= {BUSY_GOAL});"
            f" quiet, auto/old {quiet:.2f} (goal <= {QUIET_SLACK}) {'PASS' if good else 'FAIL'}"
        )
    if cores < 2:
        print("one usable core: nothing to compare, goals not judged")
        return 0
    return 0 if ok else 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
