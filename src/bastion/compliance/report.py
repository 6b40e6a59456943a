"""The run report: one self-contained HTML page, its JSON twin, and the plots as PNG files.

:func:`render_run_report` draws four plots with matplotlib's Agg canvas (no pyplot, no
global state, no display): ``roc_curve.png``, ``calibration.png``, ``confusion_matrix.png``
and ``selection_rate.png`` (per-group selection rate, one panel per sensitive attribute,
groups too small to score left out).
A plot whose data is missing (a failed run, an estimator without probabilities) is left out.
Each file is written atomically (temporary file, fsync, rename); ``report.json`` comes next
and ``report.html`` last, so a complete HTML file means a complete report. The HTML embeds
the PNGs as ``data:`` URIs, so it can be mailed on its own, and also links the files.
Every value from the run, the config or the data is HTML-escaped, and the page carries a
Content-Security-Policy that forbids scripts.

``audits`` maps each audit's name to its result JSON (``AuditResult.to_json()``): each gets
a section with its gates and plots (:mod:`bastion.compliance.audit_sections`, files named
``audit_*.png``), and the results go into ``report.json`` under ``audits``.

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

import hashlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bastion._fs import atomic_write, private_dir
from bastion.compliance.audit_sections import audit_plots, audit_sections
from bastion.compliance.page import html_page
from bastion.compliance.plots import (
    plot_calibration,
    plot_confusion,
    plot_roc,
    plot_screen,
    plot_selection_rate,
)
from bastion.compliance.sections import (
    esc,
    fairness_section,
    figure,
    num,
    pii_section,
    report_json,
    scalar,
    screen_section,
    slug,
    table,
    validation_section,
)

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
_PLOT_VERSION = "3"  # bump when a drawer changes, so cached plots are redrawn


def render_run_report(
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    out_dir: Path,
    *,
    plot_cache: Path | None = None,
    audits: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``report.html``, ``report.json`` and the PNG plots into ``out_dir``.

    Returns the path of ``report.html``. ``out_dir`` is created (0700) if missing. With
    ``plot_cache``, each plot is drawn once per distinct input (the metrics, or a screen's
    counts and policies, an audit's details) and reused: a no-change rerun draws nothing.
    ``audits`` (audit name → result JSON) adds a section per audit and goes into the JSON.
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
        "roc_curve.png": plot_roc,
        "calibration.png": plot_calibration,
        "confusion_matrix.png": plot_confusion,
        "selection_rate.png": plot_selection_rate,
    }
    for name, draw in drawers.items():
        plot(name, metrics, partial(draw, metrics))
    for source, report in (validation or {}).items():
        screen = report.get("screen") if isinstance(report, Mapping) else None
        if isinstance(screen, Mapping) and screen.get("counts"):
            shown = {k: screen.get(k) for k in ("counts", "policies")}  # all the plot uses
            plot(f"screen_{slug(source)}.png", shown, partial(plot_screen, screen))
    for name, inputs, draw_audit in audit_plots(audits or {}):
        plot(name, inputs, draw_audit)
    gates = run.get("gates") or metrics.get("gates") or []
    document = {
        "run": dict(run),
        "gates": gates,
        "metrics": dict(metrics),
        "validation": dict(validation) if validation else None,
        "plots": sorted(plots),
        "audits": dict(audits) if audits is not None else None,
    }
    atomic_write(out_dir / "report.json", report_json(document).encode("utf-8"))
    page = _html(run, metrics, validation, gates, plots, audits or {})
    atomic_write(out_dir / "report.html", page.encode("utf-8"))
    return out_dir / "report.html"


# -- HTML -------------------------------------------------------------------------------


def _html(
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    gates: Sequence[Mapping[str, Any]],
    plots: Mapping[str, bytes],
    audits: Mapping[str, Any],
) -> str:
    title = f"Run report: {run.get('pipeline', '?')} {run.get('run_id', '')}".strip()
    status = str(run.get("status", "unknown"))
    css = "pass" if status == "passed" else "fail"
    parts = [f"<h1>{esc(title)}</h1>", f'<p>Status: <span class="{css}">{esc(status)}</span></p>']
    keys = [k for k in _RUN_KEYS if run.get(k) is not None]
    keys += [k for k in run if k not in _RUN_KEYS and scalar(run[k])]
    parts += ["<h2>Run</h2>", table(["", ""], [[k, run[k]] for k in keys])]
    if run.get("stages"):
        parts += [
            "<h2>Stages</h2>",
            table(
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
            table(
                ["Gate", "Metric", "Threshold", "Value", "Result"],
                [
                    [
                        g.get("gate"),
                        g.get("metric"),
                        num(g.get("threshold")),
                        num(g.get("value")),
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
            table(["Metric", "Value"], [[k, num(v)] for k, v in metrics["metrics"].items()]),
        ]
        parts.append(
            f"<p>{esc(metrics.get('n_rows', '?'))} test rows; positive class"
            f" {esc(metrics.get('positive_label', '?'))}.</p>"
        )
    for name, caption in (
        ("roc_curve.png", "ROC curve"),
        ("calibration.png", "Calibration"),
        ("confusion_matrix.png", "Confusion matrix"),
        ("selection_rate.png", "Selection rate by group"),
    ):
        if name in plots:
            parts += [f"<h2>{esc(caption)}</h2>", figure(name, caption, plots[name])]
    cal = metrics.get("calibration")
    if cal:
        parts.append(f"<p>Expected calibration error: {num(cal.get('ece'))}.</p>")
    for attr, found in (metrics.get("groups") or {}).items():
        parts += fairness_section(attr, found)
    parts += audit_sections(audits, plots)
    for source, report in (validation or {}).items():
        parts += [f"<h2>Validation: {esc(source)}</h2>", *validation_section(report)]
        if isinstance(report, Mapping):
            if isinstance(report.get("pii"), Mapping):
                parts += [f"<h3>Personal data: {esc(source)}</h3>", *pii_section(report["pii"])]
            if isinstance(report.get("screen"), Mapping):
                plot = plots.get(f"screen_{slug(source)}.png")
                parts += [
                    f"<h3>Poisoning screen: {esc(source)}</h3>",
                    *screen_section(report["screen"]),
                ]
                if plot is not None:
                    name = f"screen_{slug(source)}.png"
                    parts.append(figure(name, f"Poisoning screen findings: {source}", plot))
    env = run.get("environment")
    if isinstance(env, Mapping):
        packages = env.get("packages") or {}
        rows = [[k, v] for k, v in env.items() if scalar(v)]
        rows += [[k, v] for k, v in packages.items()] if isinstance(packages, Mapping) else []
        parts += ["<h2>Environment</h2>", table(["", ""], rows)]
    return html_page(title, "\n".join(parts))


# -- plot cache ---------------------------------------------------------------------


def _cached_png(cache: Path | None, key_doc: Any, draw: Callable[[], bytes | None]) -> bytes | None:
    """``draw()``, or what it gave for the same ``key_doc`` before (a no-change rerun draws
    nothing). A drawer that had nothing to draw is remembered too, as an empty marker."""
    if cache is None:
        return draw()
    key = hashlib.sha256(report_json(key_doc).encode()).hexdigest()
    path, nothing = cache / f"{key}.png", cache / f"{key}.none"
    if path.exists():
        return path.read_bytes()
    if nothing.exists():
        return None
    png = draw()
    private_dir(cache)
    atomic_write(path if png is not None else nothing, png or b"")
    return png
