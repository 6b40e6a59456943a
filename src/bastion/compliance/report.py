"""The run report: one self-contained HTML page, its JSON twin, and the plots as PNG files.

:func:`render_run_report` draws four plots with matplotlib's Agg canvas (no pyplot, no
global state, no display): ``roc_curve.png``, ``calibration.png``, ``confusion_matrix.png``
and ``selection_rate.png`` (per-group selection rate, one panel per sensitive attribute).
A plot whose data is missing (a failed run, an estimator without probabilities) is left out.
Each file is written atomically (temporary file, fsync, rename); ``report.json`` comes next
and ``report.html`` last, so a complete HTML file means a complete report. The HTML embeds
the PNGs as ``data:`` URIs, so it can be mailed on its own, and also links the files.
Every value from the run, the config or the data is HTML-escaped, and the page carries a
Content-Security-Policy that forbids scripts.

The ``run`` mapping the runner passes (every key optional; unknown keys go to the JSON
unchanged and to the HTML's run table when they are scalars):

- ``run_id``, ``pipeline``, ``pipeline_file``, ``status`` (``passed`` / ``failed`` /
  ``error``), ``actor``, ``started``, ``finished``, ``seed``, ``config_digest``, ``error``;
- ``model`` (or ``model_ref``): ``NAME:VERSION`` of the registered model, or None;
- ``stages``: a list of ``{name, status, cached, seconds, outputs: {name: digest},
  statement}``;
- ``gates``: a list of ``{gate, metric, threshold, value, passed}`` (default:
  ``metrics["gates"]``);
- ``environment``: ``{python, platform, packages: {name: version}, git_commit}``.

``metrics`` is the evaluate stage's output (empty when the run ended before it), and
``validation`` maps each validated source to its validate-stage report (``rows_in``,
``rows_out``, ``quarantined``, ``checks``, ``violations``...), or is None.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bastion._fs import atomic_write, private_dir
from bastion.compliance.model_card import html_page

__all__ = ["PLOTS", "render_run_report"]

PLOTS = ("roc_curve.png", "calibration.png", "confusion_matrix.png", "selection_rate.png")
_RUN_KEYS = (
    "run_id",
    "pipeline",
    "pipeline_file",
    "status",
    "model",
    "model_ref",
    "actor",
    "started",
    "finished",
    "seed",
    "config_digest",
    "error",
)
_MAX_VIOLATIONS = 20
_PLOT_VERSION = "2"  # bump when a drawer changes, so cached plots are redrawn


def render_run_report(
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    out_dir: Path,
    *,
    plot_cache: Path | None = None,
) -> Path:
    """Write ``report.html``, ``report.json`` and the PNG plots into ``out_dir``.

    Returns the path of ``report.html``. ``out_dir`` is created (0700) if missing. With
    ``plot_cache``, each plot is drawn once per distinct input (the metrics, or a screen's
    counts and policies) and reused: a no-change rerun draws nothing.
    """
    private_dir(out_dir)
    metrics = metrics or {}
    plots: dict[str, bytes] = {}

    def plot(name: str, inputs: Any, draw: Callable[[], bytes | None]) -> None:
        png = _cached_png(plot_cache, {"v": _PLOT_VERSION, "plot": name, "inputs": inputs}, draw)
        if png is not None:
            atomic_write(out_dir / name, png)
            plots[name] = png

    drawers: dict[str, Callable[[Mapping[str, Any]], bytes | None]] = {
        "roc_curve.png": _plot_roc,
        "calibration.png": _plot_calibration,
        "confusion_matrix.png": _plot_confusion,
        "selection_rate.png": _plot_selection_rate,
    }
    for name, draw in drawers.items():
        plot(name, metrics, partial(draw, metrics))
    for source, report in (validation or {}).items():
        screen = report.get("screen") if isinstance(report, Mapping) else None
        if isinstance(screen, Mapping) and screen.get("counts"):
            shown = {k: screen.get(k) for k in ("counts", "policies")}  # all the plot uses
            plot(f"screen_{_slug(source)}.png", shown, partial(_plot_screen, screen))
    gates = run.get("gates") or metrics.get("gates") or []
    document = {
        "run": dict(run),
        "gates": gates,
        "metrics": dict(metrics),
        "validation": dict(validation) if validation else None,
        "plots": sorted(plots),
    }
    atomic_write(out_dir / "report.json", _json(document).encode("utf-8"))
    page = _html(run, metrics, validation, gates, plots)
    atomic_write(out_dir / "report.html", page.encode("utf-8"))
    return out_dir / "report.html"


# -- HTML -------------------------------------------------------------------------------


def _html(
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    gates: Sequence[Mapping[str, Any]],
    plots: Mapping[str, bytes],
) -> str:
    title = f"Run report: {run.get('pipeline', '?')} {run.get('run_id', '')}".strip()
    status = str(run.get("status", "unknown"))
    css = "pass" if status == "passed" else "fail"
    parts = [f"<h1>{_e(title)}</h1>", f'<p>Status: <span class="{css}">{_e(status)}</span></p>']
    keys = [k for k in _RUN_KEYS if run.get(k) is not None]
    keys += [k for k in run if k not in _RUN_KEYS and _scalar(run[k])]
    parts += ["<h2>Run</h2>", _table(["", ""], [[k, run[k]] for k in keys])]
    if run.get("stages"):
        parts += [
            "<h2>Stages</h2>",
            _table(
                ["Stage", "Status", "Cached", "Seconds", "Outputs"],
                [
                    [
                        s.get("name"),
                        s.get("status"),
                        "yes" if s.get("cached") else "no",
                        s.get("seconds"),
                        ", ".join(
                            f"{k}={str(v)[:12]}" for k, v in (s.get("outputs") or {}).items()
                        ),
                    ]
                    for s in run["stages"]
                ],
            ),
        ]
    parts.append("<h2>Release gates</h2>")
    if gates:
        parts.append(
            _table(
                ["Gate", "Metric", "Threshold", "Value", "Result"],
                [
                    [
                        g.get("gate"),
                        g.get("metric"),
                        _f(g.get("threshold")),
                        _f(g.get("value")),
                        "pass" if g.get("passed") else "FAIL",
                    ]
                    for g in gates
                ],
            )
        )
    else:
        parts.append("<p>No gates were evaluated.</p>")
    if metrics.get("metrics"):
        parts += [
            "<h2>Metrics</h2>",
            _table(["Metric", "Value"], [[k, _f(v)] for k, v in metrics["metrics"].items()]),
        ]
        parts.append(
            f"<p>{_e(metrics.get('n_rows', '?'))} test rows; positive class"
            f" {_e(metrics.get('positive_label', '?'))}.</p>"
        )
    for name, caption in (
        ("roc_curve.png", "ROC curve"),
        ("calibration.png", "Calibration"),
        ("confusion_matrix.png", "Confusion matrix"),
        ("selection_rate.png", "Selection rate by group"),
    ):
        if name in plots:
            data = base64.b64encode(plots[name]).decode("ascii")
            parts.append(
                f'<h2>{_e(caption)}</h2><figure><img alt="{_e(caption)}"'
                f' src="data:image/png;base64,{data}"><figcaption>'
                f'<a href="{_e(name)}">{_e(name)}</a></figcaption></figure>'
            )
    cal = metrics.get("calibration")
    if cal:
        parts.append(f"<p>Expected calibration error: {_f(cal.get('ece'))}.</p>")
    for attr, found in (metrics.get("groups") or {}).items():
        parts += [
            f"<h2>Groups: {_e(attr)}</h2>",
            _table(
                ["Group", "Count", "Accuracy", "Selection rate", "TPR", "FPR"],
                [
                    [
                        g.get("group"),
                        g.get("count"),
                        _f(g.get("accuracy")),
                        _f(g.get("selection_rate")),
                        _f(g.get("tpr")),
                        _f(g.get("fpr")),
                    ]
                    for g in found.get("groups", [])
                ],
            ),
            f"<p>Demographic parity difference {_f(found.get('demographic_parity_difference'))};"
            f" disparate impact ratio {_f(found.get('disparate_impact_ratio'))};"
            f" equalized odds difference {_f(found.get('equalized_odds_difference'))}.</p>",
        ]
    for source, report in (validation or {}).items():
        parts += [f"<h2>Validation: {_e(source)}</h2>", *_validation(report)]
        if isinstance(report, Mapping):
            if isinstance(report.get("pii"), Mapping):
                parts += [f"<h3>Personal data: {_e(source)}</h3>", *_pii(report["pii"])]
            if isinstance(report.get("screen"), Mapping):
                plot = plots.get(f"screen_{_slug(source)}.png")
                parts += [
                    f"<h3>Poisoning screen: {_e(source)}</h3>",
                    *_screen(report["screen"]),
                ]
                if plot is not None:
                    parts.append(f'<img alt="screen findings" src="screen_{_slug(source)}.png">')
    env = run.get("environment")
    if isinstance(env, Mapping):
        packages = env.get("packages") or {}
        rows = [[k, v] for k, v in env.items() if _scalar(v)]
        rows += [[k, v] for k, v in packages.items()] if isinstance(packages, Mapping) else []
        parts += ["<h2>Environment</h2>", _table(["", ""], rows)]
    return html_page(title, "\n".join(parts))


def _pii(report: Mapping[str, Any]) -> list[str]:
    hits = report.get("hits") or []
    applied = report.get("applied") or {}
    out = [
        f"<p>Scan {'ran' if report.get('scanned') else 'was skipped (unsafe_skip)'};"
        f" {len(hits)} column(s) hold personal data; {len(applied)} rule(s) applied.</p>"
    ]
    if applied:
        out.append(
            _table(
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
        out.append(_table(keys, [[h.get(k) for k in keys] for h in hits if isinstance(h, Mapping)]))
    return out


def _screen(report: Mapping[str, Any]) -> list[str]:
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
    out = [_table(["", ""], rows)]
    triggers = report.get("triggers") or []
    if triggers:
        keys = ["column", "value", "label", "rows", "observed", "expected", "surprise"]
        out += [
            "<h4>Suspected backdoor triggers</h4>",
            _table(keys, [[t.get(k) for k in keys] for t in triggers]),
        ]
    examples = report.get("examples") or {}
    ex_rows = [
        [f.get("row"), f.get("detector"), f.get("reason"), _f(f.get("score")), f.get("detail")]
        for fs in examples.values()
        for f in fs
    ]
    if ex_rows:
        out += [
            "<h4>Examples (strongest findings per detector)</h4>",
            _table(["row", "detector", "reason", "score", "detail"], ex_rows),
        ]
    return out


def _shift(report: Mapping[str, Any]) -> list[str]:
    if not report.get("ran"):
        why = "no earlier passed run to compare with" if not report.get("baseline") else "skipped"
        return [f"<p>Not measured: {why}.</p>"]
    found = report.get("findings") or []
    out = [
        f"<p>Against the last passed run: {len(found)} finding(s)"
        f" (policy {_e(report.get('policy'))}).</p>"
    ]
    if found:
        keys = ["column", "reason", "score", "detail"]
        out.append(_table(keys, [[f.get(k) for k in keys] for f in found]))
    cols = report.get("columns") or {}
    out.append(
        _table(
            ["column", "statistics"],
            [[c, ", ".join(f"{k}={_f(v)}" for k, v in st.items())] for c, st in cols.items()],
        )
    )
    return out


def _validation(report: Any) -> list[str]:
    if not isinstance(report, Mapping):
        return [f"<pre>{_e(_json(report))}</pre>"]
    rows = [[k, v] for k, v in report.items() if _scalar(v)]
    checks = report.get("checks")
    if isinstance(checks, Mapping):
        rows += [[f"check {k}", v] for k, v in checks.items() if v]
    out = [_table(["", ""], rows)]
    violations = report.get("violations") or []
    if violations and isinstance(violations, list):
        keys = sorted({k for v in violations if isinstance(v, Mapping) for k in v})
        out.append(
            _table(
                keys,
                [
                    [v.get(k) for k in keys]
                    for v in violations[:_MAX_VIOLATIONS]
                    if isinstance(v, Mapping)
                ],
            )
        )
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"
    )


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    css = {"pass": "pass", "FAIL": "fail"}.get(text)
    return f'<td class="{css}">{_e(text)}</td>' if css else f"<td>{_e(text)}</td>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _f(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _json(value: Any) -> str:
    """Canonical, readable JSON; a non-finite number (never expected) becomes null."""
    return json.dumps(
        _finite(value), sort_keys=True, indent=2, ensure_ascii=False, default=str, allow_nan=False
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- plots ------------------------------------------------------------------------------


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


def _plot_roc(metrics: Mapping[str, Any]) -> bytes | None:
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


def _plot_calibration(metrics: Mapping[str, Any]) -> bytes | None:
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


def _plot_confusion(metrics: Mapping[str, Any]) -> bytes | None:
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


def _plot_selection_rate(metrics: Mapping[str, Any]) -> bytes | None:
    groups = {a: g.get("groups", []) for a, g in (metrics.get("groups") or {}).items()}
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


def _slug(text: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


def _cached_png(cache: Path | None, key_doc: Any, draw: Callable[[], bytes | None]) -> bytes | None:
    """``draw()``, or what it gave for the same ``key_doc`` before (a no-change rerun draws
    nothing). A drawer that had nothing to draw is remembered too, as an empty marker."""
    if cache is None:
        return draw()
    key = hashlib.sha256(_json(key_doc).encode()).hexdigest()
    path, nothing = cache / f"{key}.png", cache / f"{key}.none"
    if path.exists():
        return path.read_bytes()
    if nothing.exists():
        return None
    png = draw()
    private_dir(cache)
    atomic_write(path if png is not None else nothing, png or b"")
    return png


def _plot_screen(report: Mapping[str, Any]) -> bytes | None:
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
