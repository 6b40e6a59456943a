"""How many threads the heavy work (fit, cross-validation, predict) may use.

scikit-learn's OpenMP and BLAS pools start one thread per core and their workers spin at
every barrier. On a machine that another process keeps busy, a pool as large as the core
count waits on its descheduled thread at each barrier: on this project's 2-core VM a 2.0 s
fit took 6.8–9.0 s beside one busy process, while the same fit on one thread took 3.3 s.

So Bastion sizes the pools itself, around each piece of heavy work, with threadpoolctl:

- ``threads: auto`` (the default) looks at the machine when the work starts: the usable
  cores (the process's CPU affinity) less the other runnable threads, sampled three times
  from ``/proc/loadavg`` over about 2 ms (this process's own running threads are not
  counted), never below 1. A quiet machine gets every core; one competing busy process
  takes one core away.
- ``threads: N`` (1 ≤ N ≤ 1024) uses N threads whatever the machine is doing.

The setting comes from the pipeline file's top-level ``threads`` key, or the environment
variable ``BASTION_THREADS``, which wins when set (the operator of the machine knows it
better than the author of the pipeline). The thread count never changes a result; it is
recorded (e.g. in the training summary) but is not part of any cache key.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from bastion.errors import ConfigError

__all__ = ["ENV_VAR", "MAX_THREADS", "ThreadSetting", "limit_threads", "resolve_threads"]

ENV_VAR = "BASTION_THREADS"
MAX_THREADS = 1024
ThreadSetting = int | Literal["auto"]
"""A pipeline file's ``threads``: a count, or ``"auto"``."""

_SAMPLES = 3
_SAMPLE_GAP_S = 0.001


def _parse(value: object, where: str) -> ThreadSetting:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS:
        return value
    raise ConfigError(f"{where}: expected 'auto' or a whole number 1..{MAX_THREADS}, got {value!r}")


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _own_running() -> int:
    """This process's threads that are running now (they are not competition)."""
    count = 0
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return 1
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        # the state follows the parenthesised name, which may itself hold spaces
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
            count += 1
    return max(1, count)


def _others_running() -> int:
    """Runnable threads of other processes, the median of a few quick samples."""
    loadavg = Path("/proc/loadavg")
    samples: list[int] = []
    for i in range(_SAMPLES):
        if i:
            time.sleep(_SAMPLE_GAP_S)
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0  # not Linux: assume a quiet machine
        samples.append(max(0, running - _own_running()))
    return round(statistics.median(samples))


def resolve_threads(setting: ThreadSetting | str | None = None) -> int:
    """The thread count to use now: ``BASTION_THREADS`` if set, else ``setting``, else auto.

    Raises :class:`~bastion.errors.ConfigError` for a value that is neither ``auto`` nor a
    whole number in 1..1024, naming where it came from.
    """
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        chosen = _parse(env, ENV_VAR)
    elif setting is None:
        chosen = "auto"
    else:
        chosen = _parse(setting, "threads")
    if chosen != "auto":
        return chosen
    cores = _usable_cores()
    return max(1, cores - min(cores - 1, _others_running()))


@contextlib.contextmanager
def limit_threads(setting: ThreadSetting | str | None = None) -> Iterator[int]:
    """Cap scikit-learn's OpenMP and BLAS pools for the block; yields the count used."""
    from threadpoolctl import threadpool_limits

    n = resolve_threads(setting)
    with threadpool_limits(limits=n):
        yield n
