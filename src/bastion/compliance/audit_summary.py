"""The audits in the model card: per audit, its verdict, one line of what the numbers
mean, its values with their intervals, and each gate with its threshold, value and
PASS/FAIL.

:func:`audit_summary` returns plain blocks, the arguments of
:class:`bastion.compliance.model_card.Block` (``("text", sentence)`` or ``("table", "",
headers, rows)``), which the card escapes when it renders them as Markdown or HTML. It
reads the result JSON only (:meth:`bastion.audits.base.AuditResult.to_json`): a value that
is missing is ``n/a``, and an audit this module does not know is summarised by its values
and gates alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "GATE_HEADER",
    "audit_summary",
    "fmt_level",
    "fmt_seconds",
    "fmt_value",
    "gate_rows",
    "meaning",
    "with_interval",
]

SummaryBlock = tuple[Any, ...]


def fmt_value(value: Any) -> str:
    """A measured number as shown: ``n/a`` for None, a whole count such as a query count as
    ``300`` (not ``300.0000``), any other float to four decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 2:
            return str(int(value))
        return f"{value:.4f}"
    return str(value)


_fmt = fmt_value


GATE_HEADER = ("Gate", "Threshold", "Value", "Result")


def gate_rows(gates: list[Mapping[str, Any]]) -> list[list[Any]]:
    """One row per gate: name, threshold, value, PASS or FAIL (the report and the card)."""
    return [
        [
            g.get("gate"),
            fmt_value(g.get("threshold")),
            fmt_value(g.get("value")),
            "PASS" if g.get("passed") else "FAIL",
        ]
        for g in gates
    ]


def fmt_seconds(value: Any) -> str:
    """Seconds to two decimals."""
    return f"{value:.2f}" if isinstance(value, float) else _fmt(value)


def fmt_level(value: Any) -> str:
    """A confidence level as a percentage (``95%``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.0%}" if round(value * 100, 6).is_integer() else f"{value:.1%}"
    return _fmt(value)


def with_interval(value: Any, interval: Any) -> str:
    """``0.1234 [0.1000, 0.1500]``, or the value alone when no interval was measured."""
    text = _fmt(value)
    if isinstance(interval, list | tuple) and len(interval) == 2:
        return f"{text} [{_fmt(interval[0])}, {_fmt(interval[1])}]"
    return text


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pct(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.1%}"


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _interval(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{_fmt(value[0])} to {_fmt(value[1])}"
    return ""


def audit_summary(audits: Mapping[str, Any]) -> list[SummaryBlock]:
    """The card's "Audits" blocks, one group per audit in the order given."""
    if not audits:
        return [("text", "No audits were configured.")]
    out: list[SummaryBlock] = [
        (
            "text",
            "Each audit attacks or measures the released model on held-out data; every number"
            " has its interval where one was measured, and a gate is the threshold it must meet.",
        )
    ]
    for name, result in audits.items():
        if not isinstance(result, Mapping):
            out.append(("text", f"{name}: the result is not a JSON object."))
            continue
        values, gates = _map(result.get("values")), result.get("gates") or []
        gates = [g for g in gates if isinstance(g, Mapping)] if isinstance(gates, list) else []
        passed = result.get("passed")
        verdict = "PASSED" if passed else "FAILED" if passed is not None else "verdict unknown"
        if passed and not gates:
            verdict = "measured, no gates"
        out.append(
            (
                "text",
                # no timing here: the card is the same for the same model (the report has it)
                f"{name}: {verdict}. {meaning(name, values, _map(result.get('details')))}",
            )
        )
        intervals = _map(result.get("intervals"))
        rows = [[k, _fmt(v), _interval(intervals.get(k))] for k, v in values.items()]
        if rows:
            out.append(("table", "", ["Value", "Measured", "Interval"], rows))
        if gates:
            out.append(("table", "", list(GATE_HEADER), gate_rows(gates)))
        insane = [s for s in result.get("sanity") or [] if isinstance(s, Mapping)]
        insane = [s for s in insane if not s.get("passed")]
        if insane:
            checks = "; ".join(str(s.get("check")) for s in insane)
            out.append(("text", f"Sanity check(s) failed, so the numbers are suspect: {checks}."))
        for warning in result.get("warnings") or []:
            out.append(("text", f"Warning: {warning}"))
    return out


def meaning(name: str, values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    """One sentence of what an audit's numbers say, for a reader who does not know it."""
    explain = _MEANINGS.get(name)
    if explain is None:
        return "This card does not describe this audit; its numbers are as measured."
    return explain(values, details)


def _fairness(values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    attrs = ", ".join(str(a) for a in _map(details.get("attributes"))) or "the sensitive attributes"
    return (
        f"Across the groups of {attrs}, the share given a positive decision differs by up to"
        f" {_fmt(values.get('demographic_parity_difference'))} (0 is parity); the least"
        f" favoured group gets {_fmt(values.get('disparate_impact_ratio'))} times the most"
        " favoured group's rate (1 is parity, under 0.8 fails the four-fifths rule); true and"
        " false positive rates differ by up to"
        f" {_fmt(values.get('equalized_odds_difference'))}."
    )


def _robustness(values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    clean, robust = _number(values.get("clean_accuracy")), _number(values.get("robust_accuracy"))
    drop = _pct(clean - robust) if clean is not None and robust is not None else "n/a"
    return (
        f"An attacker who may move each row by {_fmt(details.get('budget'))} standard"
        f" deviations ({details.get('norm', '?')}) within the schema's limits brings accuracy"
        f" from {_fmt(clean)} to {_fmt(robust)}: the decision changes on {drop} of the rows."
    )


def _membership(values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    return (
        "How well an outsider can tell the training rows from other rows: the strongest attack"
        f" finds {_pct(values.get('membership_tpr_at_1pct_fpr'))} of the training rows while"
        " wrongly accusing 1% of the others (chance would find 1%), with AUC"
        f" {_fmt(values.get('membership_auc'))} (chance: 0.5)."
    )


def _attribute_inference(values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    return (
        "The model's outputs let an attacker guess a sensitive attribute up to"
        f" {_pct(values.get('attribute_inference_advantage'))} more accurately than the other"
        " features alone do (0 means the model gives nothing more away)."
    )


def _extraction(values: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    queries, fidelity = values.get("extraction_queries_90pct"), values.get("extraction_fidelity")
    if details.get("lower_bound"):
        return (
            f"No copy built from up to {_fmt(queries)} queries agreed with the model on 90% of"
            f" held-out rows (the count is a lower bound); the best agreed on {_pct(fidelity)}."
        )
    return (
        f"A copy of the model that agrees with it on 90% of held-out rows took {_fmt(queries)}"
        f" queries to the served model; with the most queries tried it agreed on"
        f" {_pct(fidelity)}."
    )


_MEANINGS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    "fairness": _fairness,
    "robustness": _robustness,
    "membership": _membership,
    "attribute_inference": _attribute_inference,
    "extraction": _extraction,
}
