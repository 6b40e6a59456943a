"""The run report's plots, each drawn with matplotlib's Agg canvas (no pyplot, no global
state, no display) and returned as PNG bytes, or None when its data is missing.

Data text on a plot (group names, labels) is cut to 30 characters and its ``$`` escaped, so
it is never parsed as math.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

__all__ = ["plot_calibration", "plot_confusion", "plot_roc", "plot_screen", "plot_selection_rate"]


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
