"""`bastion --help` latency: the CLI must answer in <= 0.3 s (heavy modules load lazily).

Runs `bastion --help` N times in fresh processes (the way a person types it) and, for
contrast, `python -c pass`, then prints the median, the best and the interpreter's own
start-up cost.

    python benchmarks/bench_cli.py [--runs 20]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
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
    print(f"goal <= 300 ms: {'PASS' if median <= 0.3 else 'FAIL'}")


if __name__ == "__main__":
    main()
