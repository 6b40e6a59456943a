"""The run report's plots, each drawn with matplotlib's Agg canvas (no pyplot, no global
state, no display) and returned as PNG bytes, or None when its data is missing.

Data text on a plot (group names, labels) is cut to 30 characters and its ``$`` escaped, so
it is never parsed as math.

The audits' plots (``plot_group_selection``, ``plot_robustness``, ``plot_membership_roc``,
``plot_extraction``) draw from an audit result's JSON ``details`` alone; a series whose
numbers are missing or malformed is left out, and a plot with no series is None.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "plot_calibration",
    "plot_confusion",
    "plot_extraction",
    "plot_group_selection",
    "plot_membership_roc",
    "plot_robustness",
    "plot_roc",
    "plot_screen",
    "plot_selection_rate",
]


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _label(value: Any) -> str:
    """Data text for a plot: short, and with ``$`` escaped so it is never parsed as math."""
    return str(value)[:30].replace("$", r"\$")


def plot_roc(metrics: Mapping[str, Any]) -> bytes | None:
    roc = metrics.get("roc_curve")
    if not roc or not roc.get("fpr"):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    auc = (metrics.get("metrics") or {}).get("roc_auc")
    ax.plot(roc["fpr"], roc["tpr"], label=f"model (AUC {auc:.3f})" if auc else "model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(
        xlabel="False positive rate",
        ylabel="True positive rate",
        title="ROC curve",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    return _png(fig)


def plot_calibration(metrics: Mapping[str, Any]) -> bytes | None:
    cal = metrics.get("calibration")
    if not cal or not cal.get("prob_pred"):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(cal["prob_pred"], cal["prob_true"], marker="o", label="model")
    ece = cal.get("ece")
    ax.set(
        xlabel="Mean predicted probability",
        ylabel="Observed positive rate",
        title=f"Calibration (ECE {ece:.3f})" if ece is not None else "Calibration",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return _png(fig)


def plot_confusion(metrics: Mapping[str, Any]) -> bytes | None:
    cm = metrics.get("confusion_matrix")
    if not cm or not cm.get("matrix"):
        return None
    fig = _figure(4.2, 3.8)
    ax = fig.add_subplot()
    matrix = cm["matrix"]
    ax.imshow(matrix, cmap="Blues")
    labels = [_label(label) for label in cm.get("labels", ["0", "1"])]
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=labels,
        yticklabels=labels,
        xlabel="Predicted",
        ylabel="Actual",
        title="Confusion matrix",
    )
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="white" if value > top / 2 else "black",
            )
    return _png(fig)


def plot_selection_rate(metrics: Mapping[str, Any]) -> bytes | None:
    groups = {
        a: [r for r in g.get("groups", []) if not r.get("too_small")]  # only scored groups
        for a, g in (metrics.get("groups") or {}).items()
    }
    groups = {a: rows for a, rows in groups.items() if rows}
    if not groups:
        return None
    fig = _figure(5.0, 2.0 + 1.6 * len(groups))
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (attr, rows) in zip(axes, groups.items(), strict=True):
        names = [_label(r.get("group")) for r in rows]
        rates = [r.get("selection_rate") or 0.0 for r in rows]
        ax.barh(names, rates, color="#4c72b0")
        ax.set(xlim=(0, 1), xlabel="Selection rate (predicted positive)", title=_label(attr))
        ax.invert_yaxis()
    return _png(fig)


def plot_screen(report: Mapping[str, Any]) -> bytes | None:
    counts = report.get("counts") or {}
    policies = report.get("policies") or {}
    bars = [
        (f"{det}: {reason}", k, policies.get(det, "flag"))
        for det, reasons in counts.items()
        for reason, k in (reasons or {}).items()
    ]
    if not bars:
        return None
    colors = {"flag": "#4c72b0", "quarantine": "#dd8452", "fail": "#c44e52"}
    fig = _figure(6.0, 1.2 + 0.45 * len(bars))
    ax = fig.subplots()
    ax.barh(
        [b[0] for b in bars], [b[1] for b in bars], color=[colors.get(b[2], "#888") for b in bars]
    )
    for i, b in enumerate(bars):
        ax.text(b[1], i, f" {b[1]} ({b[2]})", va="center", fontsize=8)
    ax.set(
        xlabel="Rows with a finding",
        title="Poisoning screen findings",
        xlim=(0, 1.3 * max(b[1] for b in bars) + 1),
    )
    ax.invert_yaxis()
    return _png(fig)


# -- audits ---------------------------------------------------------------------------


def _floats(values: Any) -> list[float] | None:
    """``values`` as a list of finite floats, or None if it is not a list of numbers."""
    if not isinstance(values, list | tuple) or not values:
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


def _pair(value: Any) -> tuple[float, float] | None:
    pair = _floats(value)
    return (pair[0], pair[1]) if pair is not None and len(pair) == 2 else None


def plot_group_selection(title: str, found: Mapping[str, Any]) -> bytes | None:
    """One attribute's scored groups: selection rate with its interval as an error bar."""
    rows = [
        r
        for r in found.get("groups") or []
        if isinstance(r, Mapping) and not r.get("too_small") and _floats([r.get("selection_rate")])
    ]
    if not rows:
        return None
    names = [_label(r.get("group")) for r in rows]
    rates = [float(r["selection_rate"]) for r in rows]
    low, high = [], []
    for r, rate in zip(rows, rates, strict=True):
        ci = _pair((r.get("interval") or {}).get("selection_rate"))
        low.append(max(0.0, rate - ci[0]) if ci else 0.0)
        high.append(max(0.0, ci[1] - rate) if ci else 0.0)
    fig = _figure(5.5, 1.4 + 0.32 * len(rows))
    ax = fig.subplots()
    ax.barh(names, rates, xerr=[low, high], color="#4c72b0", ecolor="#1b1f24", capsize=3)
    ax.set(xlim=(0, 1), xlabel="Selection rate (predicted positive)", title=_label(title))
    ax.invert_yaxis()
    return _png(fig)


def plot_robustness(details: Mapping[str, Any]) -> bytes | None:
    """Robust accuracy against the perturbation budget, with the clean accuracy, the
    majority-class rate and the gated budget marked."""
    curve = [p for p in details.get("curve") or [] if isinstance(p, Mapping)]
    budgets = _floats([p.get("budget") for p in curve])
    accuracy = _floats([p.get("robust_accuracy") for p in curve])
    if budgets is None or accuracy is None:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(budgets, accuracy, marker="o", label="robust accuracy")
    for key, label, style in (
        ("clean_accuracy", "clean accuracy", "--"),
        ("majority_rate", "majority-class rate", ":"),
    ):
        if _floats([details.get(key)]):
            ax.axhline(details[key], linestyle=style, color="grey", label=label)
    if _floats([details.get("budget")]):
        ax.axvline(details["budget"], linestyle="-.", color="#c44e52", label="gated budget")
    norm = _label(details.get("norm", "?"))
    ax.set(
        xlabel=f"Perturbation budget ({norm}, standard deviations)",
        ylabel="Accuracy under attack",
        title=f"Robustness ({_label(details.get('attack', '?'))} attack)",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", fontsize="small")
    return _png(fig)


def plot_membership_roc(details: Mapping[str, Any]) -> bytes | None:
    """Each attack's ROC on log-log axes (the low-FPR region is what matters)."""
    found_attacks = details.get("attacks")
    attacks: Mapping[str, Any] = found_attacks if isinstance(found_attacks, Mapping) else {}
    series = []
    for name, found in attacks.items():
        roc = found.get("roc") if isinstance(found, Mapping) else None
        fpr = _floats(roc.get("fpr")) if isinstance(roc, Mapping) else None
        tpr = _floats(roc.get("tpr")) if isinstance(roc, Mapping) else None
        if fpr and tpr and len(fpr) == len(tpr):
            series.append((name, found, fpr, tpr))
    if not series:
        return None
    nonmembers = details.get("nonmembers")
    smallest = min((f for _, _, fpr, _ in series for f in fpr if f > 0), default=0.5)
    floor = 1 / max(2, nonmembers) if isinstance(nonmembers, int) else min(0.5, smallest)
    fig = _figure()
    ax = fig.add_subplot()
    for name, found, fpr, tpr in series:
        auc, tpr1 = found.get("auc"), found.get("tpr_at_1pct_fpr")
        label = _label(name)
        if _floats([auc, tpr1]):
            label += f" (AUC {auc:.3f}, TPR@1% {tpr1:.3f})"
        points = [(f, max(t, floor)) for f, t in zip(fpr, tpr, strict=True) if f > 0]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
    ax.plot([floor, 1], [floor, 1], linestyle="--", color="grey", label="chance")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="False positive rate",
        ylabel="True positive rate",
        title="Membership inference ROC (log-log)",
        xlim=(floor, 1),
        ylim=(floor, 1.01),
    )
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def plot_extraction(details: Mapping[str, Any]) -> bytes | None:
    """Surrogate fidelity against queries, per strategy, with its interval and the 0.9 line."""
    strategies = details.get("strategies")
    if not isinstance(strategies, Mapping):
        return None
    series = []
    for name, found in strategies.items():
        if not isinstance(found, Mapping):
            continue
        queries, fidelity = _floats(found.get("queries")), _floats(found.get("fidelity"))
        if queries and fidelity and len(queries) == len(fidelity):
            bands = [_pair(ci) for ci in found.get("fidelity_ci") or []]
            band = bands if len(bands) == len(queries) and all(bands) else None
            series.append((name, queries, fidelity, band))
    if not series:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for name, queries, fidelity, band in series:
        (line,) = ax.plot(queries, fidelity, marker="o", label=_label(name))
        if band:
            lows = [b[0] for b in band if b]
            highs = [b[1] for b in band if b]
            ax.fill_between(queries, lows, highs, color=line.get_color(), alpha=0.2)
    ax.axhline(0.9, linestyle="--", color="#c44e52", label="90% agreement")
    ax.set(
        xscale="log",
        xlabel="Queries to the served model",
        ylabel="Agreement with the model (held-out rows)",
        title="Model extraction",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)
