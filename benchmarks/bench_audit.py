"""Audit log throughput: durable group-commit appends, and verification of a large log.

Run: ``python benchmarks/bench_audit.py`` (about a minute). It prints each figure and
PASS or FAIL against the goals, and exits 1 if any goal is missed:

1. durable appends/s with group commit on a SQLite file (``synchronous=FULL``): 256 asyncio
   tasks each await ``arecord`` in a loop, as an async server's request handlers do; goal
   >= 20,000/s. For contrast it also prints 32 OS threads blocking in ``record`` (bounded
   by CPython's thread hand-offs, not by the database), 32 threads each keeping 16
   ``submit`` futures in flight, and ``record`` from one thread (one commit per entry).
2. ``verify()`` of 1,000,000 entries with a signed checkpoint every 1,000; goal <= 5 s.
   The log is built through the writer's own chaining code, in batches of 5,000.

``--smoke`` runs every part with a few thousand entries in seconds and does not judge the
goals; lost entries or a failed verification still exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from bastion.security.audit import AuditLog
from bastion.security.audit.entry import validated
from bastion.security.keys import LocalKeyring
from bastion.store.db import make_engine, migrate

APPEND_GOAL = 20_000.0
VERIFY_GOAL = 5.0


def _verdict(passed: bool, smoke: bool) -> str:
    return "(not judged)" if smoke else "PASS" if passed else "FAIL"


def _open(folder: Path, name: str, keys: LocalKeyring, every: int = 1000) -> AuditLog:
    engine = make_engine(f"sqlite:///{folder / name}")
    migrate(engine)
    return AuditLog(engine, keys, checkpoint_every=every)


def bench_group_commit(
    folder: Path, keys: LocalKeyring, total: int, threads: int, window: int = 1
) -> float:
    """Durable appends/s: each thread submits ``window`` entries, waits for them, repeats.

    ``window=1`` is ``record()`` from every thread: one entry in flight per caller.
    """
    per_thread = total // threads // window * window
    start_line = threading.Barrier(threads + 1)

    def produce(worker: int) -> None:
        start_line.wait()
        for i in range(0, per_thread, window):
            if window == 1:
                log.record(f"svc-{worker}", "model.predict", "deployment:fraud", details={"i": i})
                continue
            futures = [
                log.submit(f"svc-{worker}", "model.predict", "deployment:fraud", details={"i": j})
                for j in range(i, i + window)
            ]
            for future in futures:
                future.result()

    with _open(folder, f"group-{window}.db", keys) as log:
        pool = [threading.Thread(target=produce, args=(w,)) for w in range(threads)]
        for t in pool:
            t.start()
        start_line.wait()
        began = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - began
        if log.verify().entries != per_thread * threads:
            raise SystemExit("group commit lost entries")
    return per_thread * threads / elapsed


def bench_async(folder: Path, keys: LocalKeyring, total: int, tasks: int) -> float:
    """Durable appends/s from asyncio: ``tasks`` coroutines each await ``arecord`` in a loop,
    the way request handlers of an async server do."""
    import asyncio

    per_task = total // tasks

    async def produce(log: AuditLog, worker: int) -> None:
        for i in range(per_task):
            await log.arecord(
                f"svc-{worker}", "model.predict", "deployment:fraud", details={"i": i}
            )

    async def run(log: AuditLog) -> float:
        began = time.perf_counter()
        await asyncio.gather(*(produce(log, w) for w in range(tasks)))
        return time.perf_counter() - began

    with _open(folder, "async.db", keys) as log:
        elapsed = asyncio.run(run(log))
        if log.verify().entries != per_task * tasks:
            raise SystemExit("async group commit lost entries")
    return per_task * tasks / elapsed


def bench_one_at_a_time(folder: Path, keys: LocalKeyring, total: int) -> float:
    with _open(folder, "single.db", keys) as log:
        began = time.perf_counter()
        for i in range(total):
            log.record("alice", "model.promote", f"model:{i}")
        return total / (time.perf_counter() - began)


def bench_verify(folder: Path, keys: LocalKeyring, total: int) -> tuple[float, float]:
    with _open(folder, "verify.db", keys) as log:
        began = time.perf_counter()
        for low in range(0, total, 5000):
            batch = [
                validated(
                    f"user-{i % 97}",
                    "model.predict",
                    f"deployment:d{i % 7}",
                    "ok",
                    {"i": i, "label": "approved", "score": 0.25},
                )
                for i in range(low, min(low + 5000, total))
            ]
            log._write(batch, want_checkpoint=False)  # the writer's own batch path
        built = time.perf_counter() - began
        began = time.perf_counter()
        report = log.verify()
        elapsed = time.perf_counter() - began
    if report.entries != total or report.checkpoints != total // 1000:
        raise SystemExit(f"verify checked {report}, expected {total} entries")
    return built, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, goals not judged (CI: does it run?)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.appends, args.threads, args.tasks, args.window = 2_000, 8, 32, 4
        args.single, args.verify_entries = 100, 20_000
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        folder = Path(tmp)
        keys = LocalKeyring.create(
            folder / "keyring.json", "a long benchmark passphrase", scrypt_log_n=14
        )
        rate = bench_async(folder, keys, args.appends, args.tasks)
        passed = rate >= APPEND_GOAL
        ok &= passed
        print(
            f"group commit: {rate:,.0f} durable appends/s ({args.tasks} asyncio tasks awaiting"
            f" arecord(), {args.appends:,} entries; goal >= {APPEND_GOAL:,.0f})"
            f" {_verdict(passed, args.smoke)}"
        )
        threaded = bench_group_commit(folder, keys, args.appends, args.threads)
        print(
            f"group commit: {threaded:,.0f} durable appends/s ({args.threads} OS threads"
            " blocking in record(); for contrast: thread hand-offs cost more than the SQL)"
        )
        windowed = bench_group_commit(folder, keys, args.appends, args.threads, args.window)
        print(
            f"group commit: {windowed:,.0f} durable appends/s ({args.threads} threads, each"
            f" with {args.window} submit() futures in flight; for contrast)"
        )
        single = bench_one_at_a_time(folder, keys, args.single)
        print(
            f"one at a time: {single:,.0f} durable appends/s (1 thread, {args.single:,}"
            " entries, one commit each; for contrast)"
        )
        built, elapsed = bench_verify(folder, keys, args.verify_entries)
        passed = elapsed <= VERIFY_GOAL
        ok &= passed
        print(
            f"verify: {args.verify_entries:,} entries and {args.verify_entries // 1000:,}"
            f" checkpoints in {elapsed:.2f} s (goal <= {VERIFY_GOAL:.0f} s; built in"
            f" {built:.1f} s) {_verdict(passed, args.smoke)}"
        )
    if args.smoke:
        print("smoke: goals not judged")
        return 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
