"""Model cards: one structured card, rendered as Markdown and as self-contained HTML.

:func:`build_model_card` gathers what the pipeline knows — the release text, the training
record, the feature spec, the evaluation (gates, per-group metrics, calibration), the
pinned sources and the run's provenance — into a :class:`ModelCard`. The card is a list
of sections made of three kinds of block (paragraph, table, code), and the two renderers
walk the same list, so both say the same thing.

Everything in a card comes from config or data, which may be hostile (a description
holding ``<script>``, a category value holding Markdown). The HTML renderer passes every
value through :func:`html.escape` and ships a Content-Security-Policy that forbids scripts
anyway; the Markdown renderer escapes HTML and the Markdown characters that could open a
link, an image, a code span, emphasis, a heading or a table cell. Code blocks use a fence
longer than any run of backticks in their text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.compliance.audit_summary import audit_summary
from bastion.compliance.page import html_page
from bastion.compliance.sections import fairness_text

__all__ = ["Block", "ModelCard", "Section", "build_model_card"]

_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")
_MD_HEADING = re.compile(r"^(\s*)#", re.MULTILINE)
_SCORES = {"probability": "probabilities", "decision_function": "decision-function values"}
_PROVENANCE = {
    "run_id": "Run id",
    "pipeline": "Pipeline",
    "config_digest": "Config digest",
    "seed": "Seed",
    "actor": "Actor",
}


@dataclass(frozen=True)
class Block:
    """One paragraph (``text``), table (``headers`` + ``rows``) or code block (``code``)."""

    kind: str  # "text" | "table" | "code"
    text: str = ""
    headers: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()


@dataclass(frozen=True)
class Section:
    """A titled list of blocks."""

    title: str
    blocks: Sequence[Block] = field(default_factory=tuple)


@dataclass(frozen=True)
class ModelCard:
    """A model card: a title and sections, rendered by :meth:`to_markdown`/:meth:`to_html`."""

    title: str
    sections: Sequence[Section]

    def to_markdown(self) -> str:
        out = [f"# {_md(self.title)}", ""]
        for section in self.sections:
            out += [f"## {_md(section.title)}", ""]
            for block in section.blocks:
                out += [*_md_block(block), ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{_esc(self.title)}</h1>"]
        for section in self.sections:
            body.append(f"<h2>{_esc(section.title)}</h2>")
            body += [_html_block(block) for block in section.blocks]
        return html_page(self.title, "\n".join(body))


def build_model_card(
    *,
    name: str,
    model_ref: str,
    description: str,
    intended_use: str,
    limitations: str,
    date: str,
    training: Mapping[str, Any],
    spec: Mapping[str, Any],
    metrics: Mapping[str, Any],
    sources: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    defenses: Mapping[str, Mapping[str, Any]] | None = None,
    audits: Mapping[str, Mapping[str, Any]] | None = None,
) -> ModelCard:
    """Assemble a card from the pipeline's records (see :mod:`bastion.stages.release`).

    ``training`` is the train stage's ``training`` output, ``spec`` the features stage's
    ``spec``, ``metrics`` the evaluate stage's ``metrics``; ``sources`` holds dicts with
    ``name``, ``sha256`` and optionally ``role``, ``uri``, ``format``, ``rows``;
    ``provenance`` any of ``run_id``, ``pipeline``, ``config_digest``, ``seed``, ``actor``;
    ``defenses`` maps each training source to ``{"screen": report, "pii": report}``;
    ``audits`` each audit's name to its result JSON (``AuditResult.to_json()``)."""
    version = model_ref.partition(":")[2] if ":" in model_ref else "unregistered"
    params = training.get("params") or {}
    details = [
        ("Name", name),
        ("Version", version),
        ("Registered as", model_ref),
        ("Estimator", training.get("estimator", "")),
        ("Date", date),
        ("Parameters", ", ".join(f"{k}={params[k]!r}" for k in sorted(params)) or "defaults"),
    ]
    sections = [
        Section("Model details", [_kv(details), Block("text", description or "No description.")]),
        Section("Intended use", [Block("text", intended_use or "Not stated.")]),
        Section("Limitations", [Block("text", limitations or "Not stated.")]),
        Section("Training data", _training_blocks(training, sources)),
        Section("Data defenses", _defense_blocks(defenses or {})),
        Section("Features", _feature_blocks(spec)),
        Section("Evaluation", _evaluation_blocks(metrics)),
        Section("Per-group metrics", _group_blocks(metrics.get("groups") or {})),
        Section("Calibration", _calibration_blocks(metrics.get("calibration"))),
        Section("Audits", [Block(*b) for b in audit_summary(audits or {})]),
        Section("Provenance", [_kv([(_PROVENANCE.get(k, k), v) for k, v in provenance.items()])]),
        Section(
            "How to verify",
            [
                Block(
                    "text",
                    "Check the model's signature and its whole provenance chain"
                    " (every stage's statement, the pinned sources) before use:",
                ),
                Block("code", f"bastion verify --model {model_ref}"),
            ],
        ),
    ]
    return ModelCard(f"Model card: {name} {version}", sections)


# -- sections ---------------------------------------------------------------------------


def _training_blocks(
    training: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]
) -> list[Block]:
    rows = [
        [s.get(k, "") for k in ("name", "role", "format", "uri", "rows", "sha256")] for s in sources
    ]
    balance = training.get("class_balance") or {}
    blocks = [
        Block(
            "table",
            headers=["Source", "Role", "Format", "Location", "Rows", "SHA-256 (pinned)"],
            rows=rows,
        )
        if rows
        else Block("text", "No source recorded."),
        _kv(
            [
                ("Training rows", training.get("n_rows", "")),
                ("Features after encoding", training.get("n_features", "")),
                ("Positive class", balance.get("positive_label", "")),
                ("Positive rate", _fmt(balance.get("positive_rate"))),
                ("Seed", training.get("seed", "")),
                ("Fit seconds", training.get("fit_seconds", "")),
            ]
        ),
    ]
    if training.get("warnings"):
        blocks.append(Block("text", "Warnings while fitting: " + "; ".join(training["warnings"])))
    return blocks


def _defense_blocks(defenses: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    rows = []
    for source, found in defenses.items():
        screen = found.get("screen") or {}
        pii = found.get("pii") or {}
        counts = screen.get("counts") or {}
        flagged = ", ".join(
            f"{det}:{reason} {k} ({(screen.get('policies') or {}).get(det, '?')})"
            for det, reasons in counts.items()
            for reason, k in reasons.items()
        )
        applied = pii.get("applied") or {}
        rows.append(
            [
                source,
                screen.get("rows", ""),
                screen.get("rows_quarantined", ""),
                flagged or "none",
                ", ".join(screen.get("skipped") or []) or "none",
                ", ".join(f"{c}: {r.get('policy')}" for c, r in applied.items()) or "none",
            ]
        )
    if not rows:
        return [Block("text", "No poisoning screen or PII scan recorded.")]
    return [
        Block(
            "table",
            headers=[
                "Source",
                "Rows screened",
                "Quarantined",
                "Findings (policy)",
                "Detectors not run",
                "PII columns",
            ],
            rows=rows,
        ),
        Block(
            "text",
            "Quarantined rows were left out of training and are kept, encrypted, with their"
            " reasons; the run report lists examples.",
        ),
    ]


def _feature_blocks(spec: Mapping[str, Any]) -> list[Block]:
    def names(key: str) -> str:
        return ", ".join(str(c) for c in spec.get(key) or []) or "none"

    return [
        _kv(
            [
                ("Numeric inputs", names("numeric")),
                ("Categorical inputs", names("categorical")),
                ("Encoded features", spec.get("n_output_features", "")),
                ("Sensitive attributes kept aside (not features)", names("sensitive_kept_aside")),
                ("Sensitive attributes used as features", names("sensitive_used")),
                ("PII columns excluded", names("pii_excluded")),
                ("Columns dropped", names("dropped")),
            ]
        )
    ]


def _evaluation_blocks(metrics: Mapping[str, Any]) -> list[Block]:
    values = metrics.get("metrics") or {}
    blocks = [
        Block(
            "text",
            f"On {metrics.get('n_rows', '?')} held-out rows; scores are"
            f" {_SCORES.get(str(metrics.get('score')), '?')}; positive class"
            f" {metrics.get('positive_label', '?')!s}.",
        ),
        Block("table", headers=["Metric", "Value"], rows=[[k, _fmt(values[k])] for k in values]),
    ]
    gates = metrics.get("gates") or []
    if gates:
        blocks.append(
            Block(
                "table",
                headers=["Gate", "Threshold", "Value", "Result"],
                rows=[
                    [
                        g.get("gate"),
                        _fmt(g.get("threshold")),
                        _fmt(g.get("value")),
                        "pass" if g.get("passed") else "FAIL",
                    ]
                    for g in gates
                ],
            )
        )
        verdict = "All release gates passed." if metrics.get("passed") else "A gate FAILED."
        blocks.append(Block("text", verdict))
    else:
        blocks.append(Block("text", "No release gates were configured."))
    cm = metrics.get("confusion_matrix")
    if cm:
        neg, pos = cm["labels"]
        (tn, fp), (fn, tp) = cm["matrix"]
        blocks.append(
            Block(
                "table",
                headers=["Actual / predicted", neg, pos],
                rows=[[neg, tn, fp], [pos, fn, tp]],
            )
        )
    return blocks


def _group_blocks(groups: Mapping[str, Any]) -> list[Block]:
    if not groups:
        return [Block("text", "No sensitive attributes were declared.")]
    blocks = []
    for attr, found in groups.items():
        blocks.append(
            Block(
                "text",
                f"{attr}: demographic parity difference"
                f" {_fmt(found.get('demographic_parity_difference'))},"
                f" disparate impact ratio"
                f" {_fmt(found.get('disparate_impact_ratio'))},"
                f" equalized odds difference"
                f" {_fmt(found.get('equalized_odds_difference'))}.",
            )
        )
        blocks += [Block("text", sentence) for sentence in fairness_text(found)]
        blocks.append(
            Block(
                "table",
                headers=[attr, "Count", "Accuracy", "Selection rate", "TPR", "FPR"],
                rows=[
                    [g["group"], g["count"], "too small", "", "", ""]
                    if g.get("too_small")
                    else [
                        g["group"],
                        g["count"],
                        _fmt(g.get("accuracy")),
                        _fmt(g.get("selection_rate")),
                        _fmt(g.get("tpr")),
                        _fmt(g.get("fpr")),
                    ]
                    for g in found.get("groups", [])
                ],
            )
        )
    return blocks


def _calibration_blocks(cal: Mapping[str, Any] | None) -> list[Block]:
    if not cal:
        return [Block("text", "Not available: the estimator gives scores, not probabilities.")]
    rows = [
        [_fmt(p), _fmt(t), n]
        for p, t, n in zip(cal["prob_pred"], cal["prob_true"], cal["counts"], strict=False)
    ]
    return [
        Block(
            "text",
            f"Expected calibration error: {_fmt(cal.get('ece'))}"
            f" ({cal.get('n_bins')} {cal.get('strategy')} bins).",
        ),
        Block("table", headers=["Mean predicted", "Observed rate", "Rows"], rows=rows),
    ]


def _kv(pairs: Sequence[tuple[str, Any]]) -> Block:
    return Block("table", headers=["", ""], rows=[[k, v] for k, v in pairs])


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# -- renderers --------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _md(value: Any) -> str:
    """Text safe inside Markdown: HTML escaped, link/emphasis/table characters escaped."""
    text = _MD_HEADING.sub(r"\1\\#", _MD_SPECIAL.sub(r"\\\1", str(value)))
    return html.escape(text, quote=False)


def _md_cell(value: Any) -> str:
    return _md(value).replace("\r", " ").replace("\n", " ")


def _md_block(block: Block) -> list[str]:
    if block.kind == "code":
        longest = max((len(m) for m in re.findall(r"`+", block.text)), default=0)
        fence = "`" * max(3, longest + 1)
        return [fence, block.text, fence]
    if block.kind == "table":
        headers = [_md_cell(h) for h in block.headers]
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return lines
    return [_md(line) if line.strip() else "" for line in block.text.splitlines()]


def _html_block(block: Block) -> str:
    if block.kind == "code":
        return f"<pre><code>{_esc(block.text)}</code></pre>"
    if block.kind == "table":
        head = "".join(f"<th>{_esc(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
        thead = f"<thead><tr>{head}</tr></thead>" if any(block.headers) else ""
        return f"<table>{thead}<tbody>{body}</tbody></table>"
    return "".join(f"<p>{_esc(p)}</p>" for p in block.text.split("\n\n") if p.strip())


def _html_cell(value: Any) -> str:
    css = {"pass": "pass", "PASS": "pass", "FAIL": "fail"}.get(text := str(value))
    return f'<td class="{css}">{_esc(text)}</td>' if css else f"<td>{_esc(text)}</td>"
