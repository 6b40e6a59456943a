"""The HTML pieces of the run report: escaping, tables and cells, number formatting, the
report's JSON encoding, embedded figures, the per-source sections (validation, personal
data, poisoning screen, shift) and the per-attribute fairness section. Every value is
HTML-escaped here, once.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "cell",
    "esc",
    "fairness_section",
    "fairness_text",
    "figure",
    "num",
    "pii_section",
    "report_json",
    "scalar",
    "screen_section",
    "shift_section",
    "slug",
    "table",
    "validation_section",
]

_MAX_VIOLATIONS = 20


def fairness_text(found: Mapping[str, Any]) -> list[str]:
    """Plain sentences about one attribute's groups: how a numeric one was binned, which
    groups were too small to score, and its warnings (shared by the report and the card)."""
    out = []
    binning = found.get("binning")
    if isinstance(binning, Mapping):
        edges = ", ".join(_edge(e) for e in binning.get("edges") or []) or "none"
        if binning.get("method") == "quantile":
            out.append(
                f"Numeric attribute, cut into {binning.get('bins')} quantile bins of the test"
                f" set (no bins declared; edges rounded): edges {edges}."
            )
        else:
            out.append(f"Numeric attribute, cut at the declared bin edges {edges}.")
    groups = found.get("groups")
    groups = groups if isinstance(groups, list) else []
    small = [g for g in groups if isinstance(g, Mapping) and g.get("too_small")]
    if small:
        out.append(
            f"{len(small)} group(s) of fewer than {found.get('min_group_size')} rows are marked"
            " too small: counted, not scored, and left out of the differences."
        )
    warnings = found.get("warnings")
    warnings = warnings if isinstance(warnings, list) else []
    out += [f"Warning: {w}" for w in warnings]
    return out


def fairness_section(attr: str, found: Mapping[str, Any]) -> list[str]:
    """One sensitive attribute: its groups (too-small ones marked), the gaps, any warning."""
    rows = []
    for g in found.get("groups") or []:
        if g.get("too_small"):
            rows.append([g.get("group"), g.get("count"), "too small", "", "", ""])
            continue
        rates = [num(g.get(k)) for k in ("accuracy", "selection_rate", "tpr", "fpr")]
        rows.append([g.get("group"), g.get("count"), *rates])
    out = [
        f"<h2>Groups: {esc(attr)}</h2>",
        table(["Group", "Count", "Accuracy", "Selection rate", "TPR", "FPR"], rows),
        f"<p>Demographic parity difference {num(found.get('demographic_parity_difference'))};"
        f" disparate impact ratio {num(found.get('disparate_impact_ratio'))};"
        f" equalized odds difference {num(found.get('equalized_odds_difference'))}.</p>",
    ]
    for sentence in fairness_text(found):
        css = ' class="warn"' if sentence.startswith("Warning: ") else ""
        out.append(f"<p{css}>{esc(sentence)}</p>")
    return out


def pii_section(report: Mapping[str, Any]) -> list[str]:
    hits = report.get("hits") or []
    applied = report.get("applied") or {}
    out = [
        f"<p>Scan {'ran' if report.get('scanned') else 'was skipped (unsafe_skip)'};"
        f" {len(hits)} column(s) hold personal data; {len(applied)} rule(s) applied.</p>"
    ]
    if applied:
        out.append(
            table(
                ["column", "policy", "details"],
                [
                    [
                        c,
                        r.get("policy"),
                        ", ".join(f"{k}={v}" for k, v in r.items() if k != "policy"),
                    ]
                    for c, r in applied.items()
                ],
            )
        )
    if hits:
        keys = ["column", "pattern", "fraction", "examples"]
        out.append(table(keys, [[h.get(k) for k in keys] for h in hits if isinstance(h, Mapping)]))
    return out


def screen_section(report: Mapping[str, Any]) -> list[str]:
    rows: list[list[Any]] = [
        ["rows", report.get("rows")],
        ["rows flagged (any detector)", report.get("rows_flagged")],
        ["rows quarantined", report.get("rows_quarantined")],
        ["detectors run", ", ".join(report.get("ran") or [])],
        ["detectors not run", ", ".join(report.get("skipped") or []) or "none"],
        ["shift baseline", report.get("baseline") or "none (first accepted run)"],
    ]
    policies = report.get("policies") or {}
    counts = report.get("counts") or {}
    for det, reasons in counts.items():
        for reason, k in (reasons or {"(none)": 0}).items():
            rows.append([f"{det}: {reason} ({policies.get(det, '?')})", k])
    out = [table(["", ""], rows)]
    triggers = report.get("triggers") or []
    if triggers:
        keys = ["column", "value", "label", "rows", "observed", "expected", "surprise"]
        out += [
            "<h4>Suspected backdoor triggers</h4>",
            table(keys, [[t.get(k) for k in keys] for t in triggers]),
        ]
    examples = report.get("examples") or {}
    ex_rows = [
        [f.get("row"), f.get("detector"), f.get("reason"), num(f.get("score")), f.get("detail")]
        for fs in examples.values()
        for f in fs
    ]
    if ex_rows:
        out += [
            "<h4>Examples (strongest findings per detector)</h4>",
            table(["row", "detector", "reason", "score", "detail"], ex_rows),
        ]
    return out


def shift_section(report: Mapping[str, Any]) -> list[str]:
    if not report.get("ran"):
        why = "no earlier passed run to compare with" if not report.get("baseline") else "skipped"
        return [f"<p>Not measured: {why}.</p>"]
    found = report.get("findings") or []
    out = [
        f"<p>Against the last passed run: {len(found)} finding(s)"
        f" (policy {esc(report.get('policy'))}).</p>"
    ]
    if found:
        keys = ["column", "reason", "score", "detail"]
        out.append(table(keys, [[f.get(k) for k in keys] for f in found]))
    cols = report.get("columns") or {}
    out.append(
        table(
            ["column", "statistics"],
            [[c, ", ".join(f"{k}={num(v)}" for k, v in st.items())] for c, st in cols.items()],
        )
    )
    return out


def validation_section(report: Any) -> list[str]:
    if not isinstance(report, Mapping):
        return [f"<pre>{esc(report_json(report))}</pre>"]
    rows = [[k, v] for k, v in report.items() if scalar(v)]
    checks = report.get("checks")
    if isinstance(checks, Mapping):
        rows += [[f"check {k}", v] for k, v in checks.items() if v]
    out = [table(["", ""], rows)]
    violations = report.get("violations") or []
    if violations and isinstance(violations, list):
        keys = sorted({k for v in violations if isinstance(v, Mapping) for k in v})
        out.append(
            table(
                keys,
                [
                    [v.get(k) for k in keys]
                    for v in violations[:_MAX_VIOLATIONS]
                    if isinstance(v, Mapping)
                ],
            )
        )
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"
    )


def figure(name: str, caption: str, png: bytes) -> str:
    """A plot embedded as a ``data:`` URI (the page's CSP allows no other image), with a
    link to its PNG file beside the report."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}"><figcaption>'
        f'<a href="{esc(name)}">{esc(name)}</a></figcaption></figure>'
    )


def slug(text: Any) -> str:
    """``text`` as a file-name part: letters, digits, ``-`` and ``_`` kept, the rest ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


def cell(value: Any) -> str:
    """One table cell; ``pass``/``PASS`` and ``FAIL`` are coloured."""
    text = "" if value is None else str(value)
    css = {"pass": "pass", "PASS": "pass", "FAIL": "fail"}.get(text)
    return f'<td class="{css}">{esc(text)}</td>' if css else f"<td>{esc(text)}</td>"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def report_json(value: Any) -> str:
    """Canonical, readable JSON; a non-finite number (never expected) becomes null."""
    return json.dumps(
        _finite(value), sort_keys=True, indent=2, ensure_ascii=False, default=str, allow_nan=False
    )


def _edge(value: Any) -> str:
    """A bin edge as written: ``40``, ``60.5``."""
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
