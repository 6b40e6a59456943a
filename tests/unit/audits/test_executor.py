"""The executor: results in item order, capped threads per task, the same results whatever
the worker count, and the thread policy (``BASTION_THREADS`` wins) deciding the workers."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier

from bastion.audits.executor import LocalExecutor
from bastion.audits.membership import membership_audit


def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _blas_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info()), default=1)


def _boom(x: int) -> int:
    raise RuntimeError(f"task {x} failed")


def test_one_worker_runs_inline_in_order() -> None:
    out = LocalExecutor(1).map(_square, [3, 1, 2])
    assert [v for v, _ in out] == [9, 1, 4]
    assert {pid for _, pid in out} == {os.getpid()}


def test_two_workers_use_processes_and_keep_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    ex = LocalExecutor(2)
    assert ex.workers == 2
    out = ex.map(_square, list(range(6)))
    assert [v for v, _ in out] == [x * x for x in range(6)]
    assert os.getpid() not in {pid for _, pid in out}


@pytest.mark.parametrize("workers", [1, 2])
def test_each_task_has_capped_blas_threads(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    assert LocalExecutor(workers, threads_per_task=1).map(_blas_threads, [0, 1]) == [1, 1]


def test_env_wins_over_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_THREADS", "3")
    assert LocalExecutor(2).workers == 3
    assert LocalExecutor("auto").workers == 3


def test_bad_threads_per_task_is_refused() -> None:
    with pytest.raises(ValueError, match="threads_per_task: expected a whole number >= 1, got 0"):
        LocalExecutor(1, threads_per_task=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_task_raises(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    with pytest.raises(RuntimeError, match="task 0 failed"):
        LocalExecutor(workers).map(_boom, [0, 1])


def test_membership_audit_is_the_same_with_one_or_two_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(900, 6))
    y = (X[:, 0] + rng.normal(scale=1.0, size=900) > 0).astype(int)
    # random_state unset: the audit must seed each reference model itself
    model = RandomForestClassifier(n_estimators=10).fit(X[:300], y[:300])
    sets = ((X[:300], y[:300]), (X[300:600], y[300:600]), (X[600:], y[600:]))
    runs = [
        membership_audit(
            model,
            functools.partial(clone, model),
            *sets,
            executor=LocalExecutor(w),
            resamples=50,
            seed=7,
        ).to_json()
        for w in (1, 2)
    ]
    assert runs[0] == runs[1]
