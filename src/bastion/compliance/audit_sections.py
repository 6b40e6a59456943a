"""The audits in the run report: one section per audit, drawn from its result JSON alone.

Each result is :meth:`bastion.audits.base.AuditResult.to_json` (``audit``, ``values``,
``intervals``, ``details``, ``sanity``, ``warnings``, ``gates``, ``passed``, ``seconds``).
Every section shows the verdict and the seconds, the values with their intervals, the gates
(threshold, value, PASS/FAIL), the sanity checks and the warnings, and then what its audit
measured in detail:

- ``fairness``: per attribute (and crossed, when measured) a table of groups with intervals
  and a plot of selection rate per group with interval error bars; mitigation before/after;
- ``robustness``: robust accuracy against budget (table and plot);
- ``membership``: AUC and TPR at 1% / 0.1% FPR per attack, and the log-log ROC;
- ``attribute_inference``: per attribute, the attacker's accuracy without and with the
  model, and the advantage;
- ``extraction``: fidelity against queries per strategy (plot with the 0.9 line) and the
  queries each needed for 90% agreement.

A result is data, maybe from an older or newer version: an audit this module does not know
gets the common part, and a key that is missing or malformed is named on the page
("not in this result") while the rest is rendered. Every value is escaped by
:mod:`bastion.compliance.sections`. :func:`audit_plots` lists the plots to draw (file name,
the data it depends on for the plot cache, the drawer) and :func:`audit_sections` embeds
the ones that were drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from bastion.compliance.audit_summary import (
    GATE_HEADER,
    fmt_level,
    fmt_seconds,
    gate_rows,
    with_interval,
)
from bastion.compliance.plots import (
    plot_extraction,
    plot_group_selection,
    plot_membership_roc,
    plot_robustness,
)
from bastion.compliance.sections import esc, fairness_text, figure, num, slug, table

__all__ = ["audit_plots", "audit_sections"]

Drawer = Callable[[], bytes | None]
_GAPS = (
    ("demographic_parity_difference", "demographic parity difference"),
    ("disparate_impact_ratio", "disparate impact ratio"),
    ("equalized_odds_difference", "equalized odds difference"),
)
_RATES = ("selection_rate", "tpr", "fpr", "accuracy")
_ATTACK_KEYS = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr")
_INFERENCE_KEYS = ("majority_accuracy", "accuracy_without_model", "accuracy_with_model")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _need(found: Mapping[str, Any], key: str, where: str, missing: list[str]) -> Any:
    """``found[key]``, or None with ``where.key`` recorded as missing."""
    value = found.get(key) if isinstance(found, Mapping) else None
    if value is None:
        missing.append(f"{where}.{key}")
    return value


# -- plots ------------------------------------------------------------------------------


def _fairness_parts(details: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(file name, title, measurement) for each attribute and the crossed groups."""
    parts = [
        (f"audit_fairness_{i}_{slug(attr)}.png", str(attr), found)
        for i, (attr, found) in enumerate(_map(details.get("attributes")).items())
        if isinstance(found, Mapping)
    ]
    crossed = details.get("intersectional")
    if isinstance(crossed, Mapping):
        names = " & ".join(str(a) for a in _list(crossed.get("attributes"))) or "crossed"
        parts.append(("audit_fairness_intersectional.png", names, crossed))
    return parts


def audit_plots(audits: Mapping[str, Any]) -> list[tuple[str, Any, Drawer]]:
    """The plots of every audit: ``(file name, what the plot shows, drawer)``; the middle
    item keys the plot cache (a change in it redraws the plot)."""
    out: list[tuple[str, Any, Drawer]] = []
    for name, result in audits.items():
        details = _map(_map(result).get("details"))
        if name == "fairness":
            for file, title, found in _fairness_parts(details):
                out.append((file, [title, found], partial(plot_group_selection, title, found)))
        elif name in _SINGLE_PLOTS:
            file, draw, _caption = _SINGLE_PLOTS[name]
            out.append((file, details, partial(draw, details)))
    return out


# -- sections ---------------------------------------------------------------------------


def audit_sections(audits: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    """The HTML of every audit's section, in the order given; ``plots`` are those drawn."""
    out: list[str] = []
    for name, result in audits.items():
        out.append(f"<h2>Audit: {esc(name)}</h2>")
        if not isinstance(result, Mapping):
            out.append(f'<p class="warn">The result of audit {esc(name)} is not a JSON object.</p>')
            continue
        missing: list[str] = []
        out += _common(result, missing)
        details = _map(_need(result, "details", "result", missing))
        body = _BODIES.get(name)
        if body is None:
            out.append(
                f"<p>This report has no section for an audit named {esc(name)}; its details"
                " are in report.json.</p>"
            )
        else:
            # with no details at all, that is said once, not once per detail
            out += body(details, plots, missing if "result.details" not in missing else [])
        if name in _SINGLE_PLOTS:
            file, _draw, caption = _SINGLE_PLOTS[name]
            if file in plots:
                out.append(figure(file, caption, plots[file]))
        out += _sanity(result)
        warnings = _list(result.get("warnings"))
        warnings += [w for w in _list(details.get("warnings")) if w not in warnings]
        out += [f'<p class="warn">Warning: {esc(w)}</p>' for w in warnings]
        if missing:
            out.append(
                '<p class="warn">Not in this result (shown without it): '
                f"{esc(', '.join(missing))}.</p>"
            )
    return out


def _common(result: Mapping[str, Any], missing: list[str]) -> list[str]:
    """Verdict and seconds, values with intervals, gates."""
    gates = [g for g in _list(result.get("gates")) if isinstance(g, Mapping)]
    passed = result.get("passed")
    if passed is None:
        missing.append("result.passed")
    verdict = "passed" if passed else "FAILED" if passed is not None else "unknown"
    if passed and not gates:
        verdict = "measured (no gates)"
    css = "pass" if passed else "fail"
    out = [
        f'<p>Verdict: <span class="{css}">{esc(verdict)}</span>;'
        f" ran {esc(fmt_seconds(result.get('seconds')))} s.</p>"
    ]
    values = _map(_need(result, "values", "result", missing))
    intervals = _map(result.get("intervals"))
    if values:
        measured = [[k, with_interval(v, intervals.get(k))] for k, v in values.items()]
        out.append(table(["Value", "Measured [interval]"], measured))
    if gates:
        out.append(table(list(GATE_HEADER), gate_rows(gates)))
    else:
        out.append("<p>No gates were configured for this audit.</p>")
    return out


def _sanity(result: Mapping[str, Any]) -> list[str]:
    """The checks that must hold for the numbers to be trusted (also read from details)."""
    found = result.get("sanity") or _map(result.get("details")).get("sanity")
    sanity = [s for s in _list(found) if isinstance(s, Mapping)]
    if not sanity:
        return []
    rows = [
        [s.get("check"), "PASS" if s.get("passed") else "FAIL", s.get("detail")] for s in sanity
    ]
    return ["<h3>Sanity checks</h3>", table(["Check", "Result", "Detail"], rows)]


def _fairness(
    details: Mapping[str, Any], plots: Mapping[str, bytes], missing: list[str]
) -> list[str]:
    out: list[str] = []
    if not isinstance(details.get("attributes"), Mapping):
        missing.append("details.attributes")
    for file, title, found in _fairness_parts(details):
        out += [f"<h3>Groups: {esc(title)}</h3>", *_groups(found, file, title, plots)]
    mitigation = details.get("mitigation")
    if isinstance(mitigation, Mapping):
        out += _mitigation(mitigation)
    return out


def _groups(
    found: Mapping[str, Any], file: str, title: str, plots: Mapping[str, bytes]
) -> list[str]:
    rows = []
    for g in _list(found.get("groups")):
        g = _map(g)
        if g.get("too_small"):
            rows.append([g.get("group"), g.get("count"), "too small", "", "", ""])
            continue
        ci = _map(g.get("interval"))
        rows.append(
            [g.get("group"), g.get("count")] + [with_interval(g.get(k), ci.get(k)) for k in _RATES]
        )
    intervals = _map(found.get("intervals"))
    gaps = "; ".join(
        f"{label} {with_interval(found.get(k), intervals.get(k))}" for k, label in _GAPS
    )
    out = [
        table(["Group", "Count", "Selection rate", "TPR", "FPR", "Accuracy"], rows),
        f"<p>{esc(gaps)}.</p>",
    ]
    boot = _map(found.get("bootstrap"))
    if boot:
        out.append(
            f"<p>Intervals: {esc(fmt_level(boot.get('confidence')))} percentile bootstrap,"
            f" {esc(num(boot.get('resamples')))} resamples.</p>"
        )
    if "attributes" in found:  # the crossed groups: each attribute's binning is said above
        found = {**found, "binning": None}
    for sentence in fairness_text(found):
        css = ' class="warn"' if sentence.startswith("Warning: ") else ""
        out.append(f"<p{css}>{esc(sentence)}</p>")
    if file in plots:
        out.append(figure(file, f"Selection rate by group: {title}", plots[file]))
    return out


def _mitigation(found: Mapping[str, Any]) -> list[str]:
    out = [
        f"<h3>Mitigation: {esc(found.get('method', '?'))}, {esc(found.get('constraint', '?'))}"
        + (f" on {esc(found['attribute'])}" if found.get("attribute") else "")
        + "</h3>",
        "<p>A mitigated copy, measured on the same rows; the released model is unchanged.</p>",
    ]
    if isinstance(found.get("error"), str):
        return [*out, f'<p class="warn">Not measured: {esc(found["error"])}</p>']
    if isinstance(found.get("note"), str):
        out.append(f"<p>{esc(found['note'])}.</p>")
    before, after = _map(found.get("before")), _map(found.get("after"))
    # each side holds the group measurement itself, or under "fairness"
    fb, fa = (_map(side.get("fairness", side)) for side in (before, after))
    rows = [["accuracy", num(before.get("accuracy")), num(after.get("accuracy"))]]
    rows += [[label, num(fb.get(k)), num(fa.get(k))] for k, label in _GAPS]
    after_groups = {_map(g).get("group"): _map(g) for g in _list(fa.get("groups"))}
    for g in _list(fb.get("groups")):
        g = _map(g)
        rate_after = after_groups.get(g.get("group"), {}).get("selection_rate")
        rows.append(
            [f"selection rate: {g.get('group')}", num(g.get("selection_rate")), num(rate_after)]
        )
    return [*out, table(["Measure", "Before", "After"], rows)]


def _robustness(
    details: Mapping[str, Any], plots: Mapping[str, bytes], missing: list[str]
) -> list[str]:
    immutable = ", ".join(str(c) for c in _list(details.get("immutable"))) or "none"
    out = [
        f"<p>Attack {esc(details.get('attack', '?'))}, norm {esc(details.get('norm', '?'))},"
        f" {esc(num(details.get('n')))} rows attacked, up to {esc(num(details.get('categorical')))}"
        f" categorical column(s) changed; columns the attacker may not change:"
        f" {esc(immutable)}. Clean accuracy {esc(num(details.get('clean_accuracy')))};"
        f" majority-class rate {esc(num(details.get('majority_rate')))}; the gate reads the"
        f" curve at budget {esc(num(details.get('budget')))}.</p>"
    ]
    curve = [_map(p) for p in _list(_need(details, "curve", "details", missing))]
    if curve:
        rows = [[num(p.get("budget")), num(p.get("robust_accuracy"))] for p in curve]
        out.append(table(["Budget", "Robust accuracy"], rows))
    return out


def _membership(
    details: Mapping[str, Any], plots: Mapping[str, bytes], missing: list[str]
) -> list[str]:
    out = [
        f"<p>{esc(num(details.get('members')))} members (training rows),"
        f" {esc(num(details.get('nonmembers')))} non-members,"
        f" {esc(num(details.get('population')))} population rows for"
        f" {esc(num(details.get('references')))} reference models; intervals at"
        f" {esc(fmt_level(details.get('confidence')))} from {esc(num(details.get('resamples')))}"
        " bootstrap resamples. Chance is AUC 0.5 and TPR equal to the FPR.</p>"
    ]
    attacks = _map(_need(details, "attacks", "details", missing))
    strongest = details.get("strongest")
    rows = [
        [f"{name} (strongest)" if name == strongest else name]
        + [with_interval(_map(a).get(k), _map(a).get(f"{k}_ci")) for k in _ATTACK_KEYS]
        for name, a in attacks.items()
    ]
    if rows:
        out.append(table(["Attack", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"], rows))
    return out


def _inference_rows(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Per attribute results, given as ``attributes`` (a mapping or a list) or directly."""
    found = details.get("attributes", details)
    if isinstance(found, Mapping):
        return [{"attribute": k, **v} for k, v in found.items() if isinstance(v, Mapping)]
    return [r for r in _list(found) if isinstance(r, Mapping)]


def _attribute_inference(
    details: Mapping[str, Any], plots: Mapping[str, bytes], missing: list[str]
) -> list[str]:
    rows = [
        [r.get("attribute"), num(r.get("rows"))]
        + [num(r.get(k)) for k in _INFERENCE_KEYS]
        + [with_interval(r.get("advantage"), r.get("advantage_ci"))]
        for r in _inference_rows(details)
    ]
    if not rows:
        if not isinstance(details.get("attributes"), Mapping | list):
            missing.append("details.attributes")
        return ["<p>No attribute was attacked.</p>"]
    headers = ["Attribute", "Rows", "Majority", "Without model", "With model", "Advantage"]
    return [
        "<p>Cross-validated accuracy of an attacker guessing the attribute from the other"
        " features, without and with the model's outputs; the advantage is the difference.</p>",
        table(headers, rows),
    ]


def _extraction(
    details: Mapping[str, Any], plots: Mapping[str, bytes], missing: list[str]
) -> list[str]:
    out = [
        f"<p>The server answers {esc(details.get('output', '?'))}"
        + (
            f" rounded to {esc(details['round'])} decimals"
            if details.get("round") is not None
            else ""
        )
        + f"; fidelity is agreement with the model on {esc(num(details.get('evaluation_rows')))}"
        f" held-out rows; the pool strategy drew from {esc(num(details.get('pool_rows')))}"
        " public rows.</p>"
    ]
    strategies = _map(_need(details, "strategies", "details", missing))
    rows = []
    for name, found in strategies.items():
        found = _map(found)
        fidelity, cis = _list(found.get("fidelity")), _list(found.get("fidelity_ci"))
        queries = _list(found.get("queries"))
        best = (
            with_interval(fidelity[-1], cis[-1] if len(cis) == len(fidelity) else None)
            if fidelity
            else "n/a"
        )
        reached = found.get("queries_90pct")
        rows.append(
            [
                name,
                num(reached) if reached is not None else "not reached",
                best,
                num(queries[-1] if queries else None),
            ]
        )
    if rows:
        out.append(
            table(["Strategy", "Queries to 90%", "Fidelity at most queries", "Most queries"], rows)
        )
    if details.get("lower_bound"):
        out.append(
            '<p class="warn">No strategy reached 90% agreement: the gated query count is the'
            " largest tried, a lower bound.</p>"
        )
    return out


_BODIES: dict[str, Callable[[Mapping[str, Any], Mapping[str, bytes], list[str]], list[str]]] = {
    "fairness": _fairness,
    "robustness": _robustness,
    "membership": _membership,
    "attribute_inference": _attribute_inference,
    "extraction": _extraction,
}
_SINGLE_PLOTS: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes | None], str]] = {
    "robustness": ("audit_robustness.png", plot_robustness, "Robust accuracy against budget"),
    "membership": ("audit_membership_roc.png", plot_membership_roc, "Membership ROC (log-log)"),
    "extraction": ("audit_extraction.png", plot_extraction, "Extraction fidelity against queries"),
}
