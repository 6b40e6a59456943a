"""`bastion --help` latency: the CLI must answer in <= 0.3 s (heavy modules load lazily).

Runs `bastion --help` N times in fresh processes (the way a person types it) and, for
contrast, `python -c pass`, then prints the median, the best and the interpreter's own
start-up cost.

    python benchmarks/bench_cli.py [--runs 20] [--smoke]

``--smoke`` runs it 3 times and does not judge the goal. Exit code 0 on PASS (and in smoke
mode), 1 on FAIL or when `bastion --help` itself fails.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--smoke", action="store_true", help="3 runs, goal not judged (CI: does it run?)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.runs = 3
    if args.runs < 1:
        parser.error("--runs: at least 1")
    exe = shutil.which("bastion") or str(Path(sys.executable).with_name("bastion"))
    _time([exe, "--help"], 2)  # warm the page cache
    help_times = _time([exe, "--help"], args.runs)
    bare = _time([sys.executable, "-c", "pass"], args.runs)
    median = statistics.median(help_times)
    print(
        f"bastion --help: median {median * 1000:.0f} ms, best {min(help_times) * 1000:.0f} ms"
        f" over {args.runs} runs"
    )
    print(f"python -c pass: median {statistics.median(bare) * 1000:.0f} ms")
    if args.smoke:
        print("smoke: goals not judged")
        return 0
    print(f"goal <= 300 ms: {'PASS' if median <= 0.3 else 'FAIL'}")
    return 0 if median <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
