"""The defenses wired into the predict path as :class:`Control` checks.

:func:`~bastion.serving.app.create_app` builds them from :class:`ServeOptions` and runs them
in this order, after the request schema and before the model::

    Blocklist        403 ``EXTRACTION_SUSPECTED`` + block id for a principal blocked after an
                     extraction alarm, until an admin lifts it (:mod:`.blocks`: database
                     record, Redis mirror, survives restarts)
    RateLimit        token bucket per principal + daily budget per deployment and principal
                     (budgets.py), cost = rows: 429 + Retry-After and a code (RATE_LIMITED,
                     DAILY_BUDGET_EXHAUSTED, EXTRACTION_THROTTLED)
    ExtractionGuard  the extraction detector per principal and deployment; on alarm an audited
                     ``serve.extraction_alarm``, a log warning and the action
                     (block: a ``blocks`` row, audited ``serve.block`` | throttle: rate / 10
                     | notify)
    Screening        out-of-range / out-of-distribution rows against the training profile;
                     policy flag (noted in the audit entry, counted) or reject (422)

The detectors (:mod:`~bastion.serving.ratelimit`, :mod:`~bastion.monitoring.screening`,
:mod:`~bastion.monitoring.extraction`) return findings; these classes are the policy. A check
returns ``None`` or a small dict of notes that the server adds to the request's audit entry.
Every one works on the rows column by column, as the schema parsed them: no DataFrame on
the hot path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from bastion.errors import ConfigError
from bastion.monitoring.extraction import Alarm, ExtractionMonitor, Features
from bastion.monitoring.screening import InputScreen, RowFindings, RowsByColumn
from bastion.serving.auth import Caller
from bastion.serving.blocks import Blocked, Blocklist, CodedRefusal
from bastion.serving.budgets import Budget
from bastion.serving.metrics import ControlMetrics
from bastion.serving.ratelimit import RateLimiter
from bastion.serving.requests import RequestRefused
from bastion.serving.turns import PerTurn, row_count

__all__ = [
    "ACTIONS",
    "THROTTLE_FACTOR",
    "Blocklist",
    "Control",
    "ExtractionGuard",
    "RateLimit",
    "Screening",
]

log = logging.getLogger("bastion.serving")

ACTIONS: tuple[str, ...] = ("block", "throttle", "notify")
EXTRACTION_SUSPECTED = "EXTRACTION_SUSPECTED"  # the code of an extraction block
Audit = Callable[[str, str, str, str, Mapping[str, Any]], Awaitable[Any]]
THROTTLE_FACTOR = 10


class Control(Protocol):
    """A check every predict request passes after its schema (rate limit, screening, ...).

    ``check`` raises :class:`~bastion.serving.requests.RequestRefused` (e.g. 429 with a
    ``Retry-After`` header) to refuse; the refusal is audited with its ``decision``. To let
    the request through it returns ``None``, or a small dict of notes (JSON values) that
    go into the request's audit entry (e.g. screening's flagged rows).
    """

    async def check(
        self, caller: Caller, deployment: str, columns: dict[str, list[Any]]
    ) -> Mapping[str, Any] | None:
        """Refuse by raising RequestRefused; return None (or notes) to let it through."""


class RateLimit:
    """Rows per second for each principal, and per UTC day for each principal on each
    deployment (see :mod:`.ratelimit`; ``budgets``: each deployment's :class:`Budget`, from
    which a principal's own comes; a deployment without one gets the limiter's default).

    ``throttled`` is a limiter at a tenth of the rate, used *in addition* for principals
    that :meth:`throttle` named (after an extraction alarm). A request of more rows than
    ``burst`` could never pass; it is refused with 422 naming the most rows allowed.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        burst: int,
        throttled: RateLimiter,
        counters: ControlMetrics,
        budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        self.limiter = limiter
        self.burst = burst
        self.throttled_limiter = throttled
        self.throttled: set[str] = set()
        self.budgets = dict(budgets or {})
        self._counters = counters

    def throttle(self, principal: str) -> None:
        self.throttled.add(principal)

    def _never_fits(
        self, cost: int, deployment: str, principal: str
    ) -> tuple[Budget | None, int | None]:
        """The deployment's budget and the principal's rows a day in it (None: the
        limiter's default); 422 when the request alone is more than the burst or than that
        whole budget (no retry could pass)."""
        budget = self.budgets.get(deployment)
        rows = budget.for_principal(principal) if budget is not None else None
        if cost > self.burst:
            limit, why = self.burst, "the rate limit's burst"
        elif rows is not None and cost > rows:
            flag = _budget_flag(budget, principal)
            limit, why = rows, f"the daily budget per principal on {deployment}, "
            why += f"the server's {flag}"
        else:
            return budget, rows
        message = f"instances: expected at most {limit} rows ({why}), got {cost}"
        raise RequestRefused(422, message, decision="batch_too_large")

    async def check(self, caller: Caller, deployment: str, columns: RowsByColumn) -> None:
        cost = row_count(columns)
        principal = caller.principal
        budget, rows = self._never_fits(cost, deployment, principal)
        code = "RATE_LIMITED"
        try:
            if principal in self.throttled:
                decision = await self.throttled_limiter.acquire(principal, cost)
                if decision.allowed:
                    decision = await self.limiter.acquire(
                        principal, cost, scope=deployment, budget=rows
                    )
                else:
                    code = "EXTRACTION_THROTTLED"
            else:
                decision = await self.limiter.acquire(
                    principal, cost, scope=deployment, budget=rows
                )
        except Exception as exc:  # a shared limiter (Redis) is down: fail closed, not 500
            raise RequestRefused(
                503, "rate limiter unavailable", decision="limiter_unavailable"
            ) from exc
        if decision.allowed:
            return
        exhausted = decision.reason == "budget"
        code = "DAILY_BUDGET_EXHAUSTED" if exhausted else code
        self._counters.refused.labels(code).inc()
        wait = decision.retry_after
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 86_400
        if exhausted:
            message = _budget_message(budget, rows, deployment, principal, retry)
        elif code == "RATE_LIMITED":
            message = (
                f"rate limit exceeded: at most {self.burst} rows at once per principal, refilled"
                f" at the server's --rate (--burst and --rate raise it); retry after {retry} s"
            )
        else:  # throttled after an alarm: nothing that describes the detector
            message = "rate limit exceeded"
        raise CodedRefusal(
            429,
            message,
            code,
            decision="budget_exhausted" if exhausted else "rate_limited",
            headers={"Retry-After": str(retry)},
        )


def _budget_flag(budget: Budget | None, principal: str) -> str:
    """The flag a principal's budget comes from."""
    own = budget is not None and budget.has_own(principal)
    return "--principal-budget" if own else "--daily-budget"


def _budget_message(
    budget: Budget | None, rows: int | None, deployment: str, principal: str, retry: int
) -> str:
    """What a budget refusal says: the budget in rows, where it comes from, the reset."""
    flag = _budget_flag(budget, principal)
    size = f"{rows} rows per principal per UTC day" if rows is not None else "the budget"
    return (
        f"daily query budget exhausted: {size} on {deployment} (the server's {flag}); it"
        f" resets at 00:00 UTC, retry after {retry} s"
    )


class ExtractionGuard:
    """Feeds every admitted request's rows to its deployment's :class:`ExtractionMonitor`.

    On an alarm: one ``serve.extraction_alarm`` audit entry (awaited: if it cannot be
    written the request fails closed), a log warning, a counter, and the ``action``:
    ``block`` records a block in the :class:`Blocklist` (a ``blocks`` row and its audit
    entry; this request already gets the 403 with the block id), ``throttle`` divides its
    rate by 10, ``notify`` does nothing more. Exact repeats of earlier rows are not counted
    by the monitor (:mod:`~bastion.monitoring.extraction`).
    """

    def __init__(
        self,
        monitors: Mapping[str, ExtractionMonitor],
        action: Literal["block", "throttle", "notify"],
        *,
        audit: Audit,
        blocklist: Blocklist,
        rate_limit: RateLimit | None,
        counters: ControlMetrics,
    ) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"on_extraction: expected one of {list(ACTIONS)}, got {action!r}")
        if action == "throttle" and rate_limit is None:
            raise ConfigError("on_extraction: 'throttle' needs the rate limit")
        self.monitors = dict(monitors)
        self.action = action
        blocklist.on_lift = self.forget  # a lifted principal starts afresh
        self._audit = audit
        self._blocklist = blocklist
        self._rate_limit = rate_limit
        self._counters = counters
        self._turns: PerTurn[Features, Alarm | None] = PerTurn(self._features, self._observe)

    def _features(self, deployment: str, columns: RowsByColumn) -> Features:
        return self.monitors[deployment].features(columns)

    def _observe(
        self, deployment: str, features: Features, start: int, stop: int, principal: str
    ) -> Alarm | None:
        return self.monitors[deployment].observe_features(principal, features.rows(start, stop))

    def forget(self, principal: str) -> None:
        """Drop the principal's history in every monitor (its block was lifted)."""
        for monitor in self.monitors.values():
            monitor.forget(principal)

    async def check(
        self, caller: Caller, deployment: str, columns: RowsByColumn
    ) -> dict[str, Any] | None:
        monitor = self.monitors.get(deployment)
        if monitor is None:
            return None
        principal = caller.principal
        if not row_count(columns):
            return None
        # the features of every request of this turn in one vectorised call; then each
        # request's rows, in arrival order, through its principal's history
        alarm = await self._turns.submit(deployment, columns, principal)
        if alarm is None:
            return None
        self._counters.alarms.labels(alarm.reason, self.action).inc()
        log.warning(
            "extraction alarm on %s: principal %s, %s = %.3f after %d queries; action %s",
            deployment,
            principal,
            alarm.reason,
            alarm.statistic,
            alarm.queries,
            self.action,
        )
        await self._audit(
            principal,
            "serve.extraction_alarm",
            f"deployment:{deployment}",
            "denied" if self.action == "block" else "ok",
            {
                "reason": alarm.reason,
                "statistic": round(alarm.statistic, 6),
                "queries": alarm.queries,
                "action": self.action,
            },
        )
        if self.action == "block":
            detail = {
                "deployment": deployment,
                "detector": alarm.reason,
                "statistic": round(alarm.statistic, 6),
                "queries": alarm.queries,
            }
            raise Blocked(await self._blocklist.block(principal, EXTRACTION_SUSPECTED, detail))
        if self.action == "throttle" and self._rate_limit is not None:
            self._rate_limit.throttle(principal)
        return {"extraction_alarm": alarm.reason}


def _why(result: RowFindings, threshold: float) -> str:
    parts = []
    if result.out_of_range:
        parts.append("outside the training range: " + ", ".join(result.out_of_range))
    if result.unseen_categories:
        parts.append("categories unseen in training: " + ", ".join(result.unseen_categories))
    if result.ood_score > threshold:
        parts.append(f"out-of-distribution score {result.ood_score:.2f} > {threshold:g} bits")
    return "; ".join(parts)


class Screening:
    """Screens rows against each deployment's training profile (monitoring's InputScreen).

    Policy ``flag``: the request passes; the flagged rows are counted and noted in its
    audit entry. Policy ``reject``: 422 naming the first flagged instance and why.

    The requests of one deployment that reach screening in the same event-loop turn are
    screened in ONE vectorized call over their rows (a row's findings depend on that row
    and the profile only, so each request gets exactly the findings it would get alone);
    the per-call numpy overhead, not the rows, is what a single-row request pays.
    """

    def __init__(self, screens: Mapping[str, InputScreen], counters: ControlMetrics) -> None:
        self.screens = dict(screens)
        self._counters = counters
        self._turns: PerTurn[list[RowFindings], list[RowFindings]] = PerTurn(self._screen, _slice)

    def _screen(self, deployment: str, columns: RowsByColumn) -> list[RowFindings]:
        return self.screens[deployment].screen_columns(columns)

    async def check(
        self, caller: Caller, deployment: str, columns: RowsByColumn
    ) -> dict[str, Any] | None:
        screen = self.screens.get(deployment)
        if screen is None:
            return None
        results = await self._turns.submit(deployment, columns)
        flagged = [i for i, r in enumerate(results) if r.flagged]
        if not flagged:
            return None
        first = flagged[0]
        why = _why(results[first], screen.threshold)
        if screen.policy == "reject":
            self._counters.screen_rejected.inc()
            problems: Sequence[dict[str, Any]] = [
                {"instance": i, "field": None, "expected": _why(results[i], screen.threshold)}
                for i in flagged[:20]
            ]
            raise RequestRefused(
                422,
                f"instances[{first}]: unlike the training data ({why})",
                list(problems),
                decision="screened_out",
            )
        self._counters.flagged.inc(len(flagged))
        return {"screen": {"flagged_rows": len(flagged), "first": first, "why": why}}


def _slice(
    deployment: str, results: list[RowFindings], start: int, stop: int, tag: Any
) -> list[RowFindings]:
    """One request's findings out of its turn's."""
    return results[start:stop]
