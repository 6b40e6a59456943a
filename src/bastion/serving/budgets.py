"""Daily query budgets per deployment, sized from each model's signed extraction audit.

A thief who replays real rows from a public pool sends the same distribution as benign
traffic, so no detector can tell the two apart (docs/extraction-detection.md); what limits
them is the rows one principal may send a model in a day. The model's ``extraction`` audit
measured how many such queries copy it: ``extraction_queries_90pct``, the fewest at which
any strategy's surrogate agreed with it on 90% of rows. ``--daily-budget auto`` (the
default) gives each deployment

- the largest query count the audit tried at which NO strategy reached 90% (the largest
  count below ``extraction_queries_90pct``); half the smallest count (at least 1) when the
  smallest already reached it; never above :data:`DEFAULT_DAILY_BUDGET`;
- :data:`DEFAULT_DAILY_BUDGET` when the model's signed evaluation has no extraction result,
  or no strategy reached 90% (``details["lower_bound"]``).

The number is read from the audit result that the model's VERIFIED evaluation names by
digest (:meth:`Evaluations.current <bastion.pipeline.evaluation.Evaluations.current>`: the
signed statement, never a database row), and the blob is verified against that digest as it
is read. A result that cannot be read or parsed refuses the start: the server never
guesses a budget. An explicit budget (or a ``--principal-budget``) at or above
``extraction_queries_90pct`` lets one principal copy the model within a day: the start
summary says so in a WARNING, and ``serve.start`` records it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import ConfigError, IntegrityError, NotFound
from bastion.serving.auth import OIDC_PREFIX
from bastion.serving.ratelimit import DEFAULT_DAILY_BUDGET

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "AUTO",
    "EXTRACTION_RESULT",
    "Budget",
    "auto_budget",
    "check_budget_options",
    "deployment_budget",
    "extraction_counts",
    "parse_daily_budget",
    "parse_principal_budgets",
    "read_extraction_result",
]

log = logging.getLogger("bastion.serving")

AUTO: Literal["auto"] = "auto"
#: The gating stage whose stored result a signed evaluation names for the extraction audit.
EXTRACTION_RESULT = "audit.extraction"


@dataclass(frozen=True)
class Budget:
    """One deployment's daily budget per principal: rows (None: off) and why.

    ``copied_at`` is the model's ``extraction_queries_90pct`` when a strategy of its signed
    extraction audit reached 90% agreement (None: no audit, or none reached it);
    ``warnings`` name every budget (the deployment's, a principal's) at or above it.
    """

    rows: int | None
    reason: str
    copied_at: int | None = None
    warnings: tuple[str, ...] = ()
    principals: tuple[tuple[str, int], ...] = ()  # --principal-budget, by name
    _own: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_own", dict(self.principals))  # read on every request

    def for_principal(self, principal: str) -> int | None:
        """The budget of ``principal`` on this deployment."""
        return self._own.get(principal, self.rows)

    def has_own(self, principal: str) -> bool:
        """Whether ``principal`` has its own budget (``--principal-budget``)."""
        return principal in self._own

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reason": self.reason,
            "extraction_queries_90pct": self.copied_at,
            "principals": dict(self.principals),
            "warnings": list(self.warnings),
        }


def extraction_counts(result: Mapping[str, Any], where: str) -> tuple[int | None, list[int]]:
    """(``extraction_queries_90pct``, or None when no strategy reached 90%; the query counts
    the audit tried, ascending) from an extraction audit's result JSON
    (``AuditResult.to_json``). ConfigError naming the field when it is not that."""
    values = result.get("values")
    details = result.get("details")
    if not isinstance(values, Mapping) or not isinstance(details, Mapping):
        raise ConfigError(f"{where}: expected an audit result with values and details")
    strategies = details.get("strategies")
    if not isinstance(strategies, Mapping) or not strategies:
        raise ConfigError(f"{where}: details.strategies: expected one curve per strategy")
    counts: set[int] = set()
    for name, curve in strategies.items():
        queries = curve.get("queries") if isinstance(curve, Mapping) else None
        if not isinstance(queries, list) or not queries or not all(_count(q) for q in queries):
            raise ConfigError(
                f"{where}: details.strategies.{name}.queries: expected a list of query"
                f" counts >= 1, got {queries!r}"
            )
        counts.update(queries)
    lower_bound = details.get("lower_bound")
    if not isinstance(lower_bound, bool):
        raise ConfigError(f"{where}: details.lower_bound: expected true or false")
    if lower_bound:
        return None, sorted(counts)
    q90 = values.get("extraction_queries_90pct")
    if isinstance(q90, bool) or not isinstance(q90, int | float) or not math.isfinite(q90):
        raise ConfigError(f"{where}: values.extraction_queries_90pct: expected a number")
    if q90 < 1 or q90 != int(q90):
        raise ConfigError(f"{where}: values.extraction_queries_90pct: expected a count >= 1")
    return int(q90), sorted(counts)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def auto_budget(result: Mapping[str, Any] | None, where: str = "extraction result") -> Budget:
    """The ``auto`` budget of a model whose extraction audit result is ``result`` (None:
    its signed evaluation has none); see the module docstring."""
    default = f"the default {DEFAULT_DAILY_BUDGET}"
    if result is None:
        return Budget(DEFAULT_DAILY_BUDGET, f"auto: the model has no extraction audit; {default}")
    copied_at, counts = extraction_counts(result, where)
    if copied_at is None:
        return Budget(
            DEFAULT_DAILY_BUDGET,
            f"auto: no strategy of the extraction audit reached 90% agreement within"
            f" {counts[-1]} queries; {default}",
        )
    said = f"auto: the extraction audit copied this model to 90% agreement at {copied_at} queries"
    below = [q for q in counts if q < copied_at]
    if below:
        rows, why = below[-1], f"{said}; none reached it at {below[-1]}"
    else:
        rows = max(1, counts[0] // 2)
        why = f"{said}, its smallest count; half of {counts[0]}"
    if rows > DEFAULT_DAILY_BUDGET:
        rows, why = DEFAULT_DAILY_BUDGET, f"{why}, capped at {DEFAULT_DAILY_BUDGET}"
    return Budget(rows, why, copied_at)


def read_extraction_result(ws: Workspace, evaluation: Any, ref: str) -> dict[str, Any] | None:
    """The extraction audit result that a VERIFIED evaluation names (None when it names
    none); IntegrityError when the named blob is missing, fails verification or is not JSON
    of an audit result."""
    if evaluation is None:
        return None
    digest = (evaluation.results or {}).get(EXTRACTION_RESULT)
    if digest is None:
        return None
    where = f"refusing to serve {ref}: its signed extraction audit result {str(digest)[:12]}"
    try:
        result = json.loads(ws.store.read_bytes(str(digest)))
    except (IntegrityError, NotFound, ValueError) as exc:
        raise IntegrityError(f"{where} cannot be read ({exc}); no budget is guessed") from None
    if not isinstance(result, dict):
        raise IntegrityError(f"{where}: expected a JSON object")
    return result


def deployment_budget(
    ws: Workspace,
    evaluation: Any,
    ref: str,
    daily_budget: int | Literal["auto"] | None,
    principal_budgets: Mapping[str, int],
) -> Budget:
    """The budget of the model ``ref`` whose verified evaluation is ``evaluation``, with a
    warning for each budget at or above the count that copied it."""
    result = read_extraction_result(ws, evaluation, ref)
    where = f"{ref}: its signed extraction audit result"
    try:
        sized = auto_budget(result, where)
    except ConfigError as exc:
        raise IntegrityError(f"refusing to serve {exc}; no budget is guessed") from None
    if daily_budget is None:
        sized = Budget(None, "off (no daily budget)", sized.copied_at)
    elif daily_budget != AUTO:
        sized = Budget(int(daily_budget), f"--daily-budget {daily_budget}", sized.copied_at)
    principals = tuple(sorted(principal_budgets.items()))
    warnings = _warnings(sized, principals)
    for warning in warnings:
        log.warning("%s: %s", ref, warning)
    return Budget(sized.rows, sized.reason, sized.copied_at, tuple(warnings), principals)


def _warnings(budget: Budget, principals: Iterable[tuple[str, int]]) -> list[str]:
    at = budget.copied_at
    if at is None:
        return []
    copy = "one principal can copy this model within a day's budget (its extraction audit"
    copy += f" reached 90% agreement at {at} queries)"
    found = []
    if budget.rows is None:
        found.append(f"the daily budget is off: {copy}")
    elif budget.rows >= at:
        found.append(f"--daily-budget {budget.rows} is at or above {at}: {copy}")
    found += [
        f"--principal-budget {name}={rows} is at or above {at}: {copy}"
        for name, rows in principals
        if rows >= at
    ]
    return found


def parse_principal_budgets(values: Iterable[str]) -> dict[str, int]:
    """``NAME=ROWS`` flags as a mapping; ConfigError naming the flag and value."""
    found: dict[str, int] = {}
    for value in values:
        name, sep, rows = value.rpartition("=")
        if not sep or not name or not rows.strip().isdigit() or int(rows) < 1:
            raise ConfigError(
                f"--principal-budget {value!r}: expected NAME=ROWS with ROWS an integer >= 1"
            )
        if name in found:
            raise ConfigError(f"--principal-budget {value!r}: {name} is given twice")
        found[name] = int(rows)
    return found


def check_budget_options(
    daily_budget: object,
    principal_budgets: Mapping[str, int],
    known: Iterable[str] | None,
    *,
    oidc: bool = False,
) -> None:
    """ConfigError naming the flag for a bad ``--daily-budget`` or ``--principal-budget``;
    with ``known`` (the home's principals), for a principal the home does not know. A JWT
    caller is the principal ``oidc:<sub>`` (``serving/auth.py``): such a name is taken as
    it is when the server accepts OIDC tokens (``oidc``), and refused when it does not."""
    if daily_budget is not None and daily_budget != AUTO and not _count(daily_budget):
        raise ConfigError(
            f"--daily-budget: expected a positive integer or auto, got {daily_budget!r}"
        )
    for name, rows in principal_budgets.items():
        if not isinstance(name, str) or not name or not _count(rows):
            raise ConfigError(
                f"--principal-budget {name}={rows}: expected NAME=ROWS with ROWS an integer >= 1"
            )
    federated = sorted(n for n in principal_budgets if n.startswith(OIDC_PREFIX))
    if federated and not oidc:
        raise ConfigError(
            f"--principal-budget {federated[0]}: this server accepts no OIDC tokens, so no"
            " caller is ever named oidc:...; give --jwks, --issuer and --audience, or name a"
            " principal of this home"
        )
    if any(n == OIDC_PREFIX for n in federated):
        raise ConfigError("--principal-budget oidc:: expected oidc:<sub>, the token's subject")
    if known is not None:
        missing = sorted(set(principal_budgets) - set(known) - set(federated))
        if missing:
            raise ConfigError(
                f"--principal-budget: no principal named {', '.join(missing)} in this home"
                " (bastion principal list names them; a JWT caller is oidc:<sub>)"
            )


def parse_daily_budget(value: str) -> int | Literal["auto"]:
    """``--daily-budget``: ``auto`` or an integer >= 1; ConfigError naming the flag."""
    text = value.strip()
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--daily-budget: expected a positive integer or auto, got {value!r}")
    return int(text)
