"""The release stage: write the model card, in Markdown and HTML, and compile the model.

The fitted pipeline is also compiled (:mod:`bastion.spec.compiled`) and checked against
scikit-learn on the held-out test table (``split.test``): ``compiled`` is the compiled form
(``{"unsupported": reason}`` when the compiler does not support the estimator) and
``parity`` the result (``status`` passed / failed / unsupported, rows, largest probability
difference, label mismatches). Both are outputs of this stage, so the runner signs them
into the release statement as ``NAME:VERSION/compiled`` and ``NAME:VERSION/parity``; the
server uses the compiled form only when that signed parity passed. A failed or unsupported
parity does not fail the release.

Signing, registration and promotion belong to the runner, which decides the model's
``NAME:VERSION`` and passes it in ``ctx.summary["model_ref"]`` before it runs this stage
(the card says ``unregistered`` otherwise). This stage only reads: the fitted model, the
evaluation, the feature spec and the training record, plus from the context

- ``ctx.config.data.sources``: each source's name, format, path (never a SQL URL, which may
  hold credentials) and pinned SHA-256 — always available, even when ingest was cached;
- ``ctx.summary["ingest.<source>"]["rows"]``, ``ctx.summary.get("sources")`` (a mapping
  name → facts, or a list of dicts with ``name``) and ``ctx.materials``: extra facts
  (rows, the digest actually read) merged in by source name when present;
- ``ctx.summary["config_digest"]`` (else the SHA-256 of the canonical JSON of the config),
  ``ctx.summary.get("date")`` (else today, UTC), ``ctx.run_id``, ``ctx.seed``, ``ctx.actor``.

Because the card depends on ``model_ref``, the runner's cache key for this stage must
include it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bastion._canonical import canonical_json
from bastion.compliance.model_card import build_model_card
from bastion.errors import IntegrityError
from bastion.spec.compiler import TOLERANCE, Unsupported, check_parity, compile_model
from bastion.spec.config import ReleaseConfig
from bastion.spec.stage import Kind, Stage, StageContext

__all__ = ["ReleaseStage"]


class ReleaseStage(Stage):
    """Build the model card for the model the runner is registering."""

    name = "release"
    version = "4"  # 2: the card's data-defenses section; 3: its audits section; 4: compiled
    outputs: Mapping[str, Kind] = {
        "card_md": "text",
        "card_html": "text",
        "compiled": "json",
        "parity": "json",
    }
    releases: Mapping[str, str] | None = {"model": "train.model", "train_table": "split.train"}
    report_files: Mapping[str, str] = {"card_md": "model_card.md", "card_html": "model_card.html"}

    def __init__(
        self,
        release: ReleaseConfig,
        screened: Sequence[str] = (),
        pipeline: str = "",
        audits: Sequence[str] = (),
    ) -> None:
        """``screened``: the training sources whose screen and PII reports the card shows;
        ``pipeline``: the pipeline's name, which the card shows (default: the context's);
        ``audits``: the audits whose results the card summarises."""
        self.release = release
        self.screened = list(screened)
        self.pipeline = pipeline
        self.audits = list(audits)
        self.inputs: Mapping[str, str] = {
            "model": "train.model",
            "test": "split.test",
            "metrics": "evaluate.metrics",
            "spec": "features.spec",
            "training": "train.training",
            **{f"screen:{s}": f"screen.{s}.report" for s in self.screened},
            **{f"pii:{s}": f"pii.{s}.report" for s in self.screened},
            **{f"audit:{a}": f"audit.{a}.result" for a in self.audits},
        }

    def fingerprint(self) -> Mapping[str, Any]:
        # the card names the pipeline: a renamed pipeline gets a new card, not a cached one
        return {"release": self.release.model_dump(mode="json"), "pipeline": self.pipeline}

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        training = dict(inputs["training"])
        fitted = getattr(inputs["model"], "named_steps", {}).get("model")
        if fitted is not None:
            training.setdefault("estimator", type(fitted).__name__)
        card = build_model_card(
            name=self.release.name,
            model_ref=str(ctx.summary.get("model_ref") or "unregistered"),
            description=self.release.description,
            intended_use=self.release.intended_use,
            limitations=self.release.limitations,
            date=str(ctx.summary.get("date") or datetime.now(UTC).date().isoformat()),
            training=training,
            spec=inputs["spec"],
            metrics=inputs["metrics"],
            sources=_sources(ctx),
            provenance={
                "run_id": ctx.run_id,
                "pipeline": self.pipeline or ctx.config.name,
                "config_digest": ctx.summary.get("config_digest") or _config_digest(ctx),
                "seed": ctx.seed,
                "actor": ctx.actor,
            },
            defenses={
                s: {"screen": inputs.get(f"screen:{s}"), "pii": inputs.get(f"pii:{s}")}
                for s in self.screened
            },
            audits={a: inputs[f"audit:{a}"] for a in self.audits},
        )
        compiled, parity = _compile_and_check(inputs["model"], inputs["test"], ctx)
        return {
            "card_md": card.to_markdown(),
            "card_html": card.to_html(),
            "compiled": compiled,
            "parity": parity,
        }


def _compile_and_check(
    model: Any, test: Any, ctx: StageContext
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the compiled document or ``{"unsupported": reason}``, the parity record); a model
    that cannot predict the test table fails parity, not the release."""
    try:
        compiled = compile_model(model)
    except (Unsupported, IntegrityError, AttributeError, TypeError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return {"unsupported": reason}, check_parity(model, None, test, reason)
    try:
        with ctx.limit_threads():
            parity = check_parity(model, compiled, test)
    except (KeyError, TypeError, ValueError) as exc:
        why = f"could not predict the test table ({type(exc).__name__})"
        parity = {"status": "failed", "reason": why, "tolerance": TOLERANCE}
    return dict(compiled.doc), parity


def _sources(ctx: StageContext) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, src in ctx.config.data.sources.items():
        found[name] = {
            "name": name,
            "role": "test" if name == ctx.config.split.test_source else "training",
            "format": src.format,
            "uri": src.path if src.format != "sql" else "SQL query",
            "sha256": src.sha256 or "UNPINNED",
        }
        rows = (ctx.summary.get(f"ingest.{name}") or {}).get("rows")
        if rows is not None:
            found[name]["rows"] = rows
    extra = ctx.summary.get("sources") or {}
    items = extra.items() if isinstance(extra, Mapping) else [(e.get("name"), e) for e in extra]
    for name, facts in items:
        if name and isinstance(facts, Mapping):
            found.setdefault(str(name), {"name": str(name)}).update(
                {k: v for k, v in facts.items() if k in ("rows", "sha256", "format")}
            )
    for material in ctx.materials:
        name = material.name.removeprefix("source:")
        found.setdefault(name, {"name": name, "uri": material.uri})["sha256"] = material.sha256
    return list(found.values())


def _config_digest(ctx: StageContext) -> str:
    doc = ctx.config.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(canonical_json(doc, allow_nan=True)).hexdigest()
