"""Serve options that agree with each other: the rows of one request are bounded once, by a
limit the refusal names, and never above what the rate limit's burst lets through."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.serving.deployment import (
    DEFAULT_MAX_BATCH,
    ServeOptions,
    batch_limit,
    check_options,
)


def options(**kw: object) -> ServeOptions:
    return ServeOptions(operator_token="bst_x", **kw)  # type: ignore[arg-type]


def test_the_default_batch_is_the_burst_when_the_burst_is_lower() -> None:
    rows, why = batch_limit(options())  # burst 200 by default
    assert rows == 200 and "--burst" in why
    rows, why = batch_limit(options(burst=5000))
    assert rows == DEFAULT_MAX_BATCH and "--max-batch" in why


def test_an_explicit_max_batch_is_named_in_the_refusal() -> None:
    rows, why = batch_limit(options(max_batch=50))
    assert rows == 50 and why.startswith("the server's --max-batch")


def test_a_max_batch_above_the_burst_is_refused_at_start_naming_both_flags() -> None:
    with pytest.raises(ConfigError) as info:
        check_options(["adult-income"], options(max_batch=1000))
    message = str(info.value)
    assert "--max-batch 1000" in message and "--burst 200" in message
    assert "raise --burst to at least 1000" in message
    check_options(["adult-income"], options(max_batch=1000, burst=1000))  # consistent: fine


@pytest.mark.parametrize("bad", [0, -3])
def test_a_non_positive_max_batch_is_refused(bad: int) -> None:
    with pytest.raises(ConfigError, match="--max-batch"):
        check_options(["adult-income"], options(max_batch=bad))
