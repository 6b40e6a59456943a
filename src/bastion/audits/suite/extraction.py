"""The ``extraction`` audit: how many queries copy the model as it is served.

Runs :func:`bastion.audits.extraction.extraction_audit` with the section's strategies,
query counts and output (``label``, or ``probability`` rounded to ``round`` decimals), and
reports

- ``extraction_queries_90pct``: the fewest queries at which any strategy's surrogate agreed
  with the model on at least 90% of the evaluation rows; when none did, the largest count
  tried, with ``details["lower_bound"] = True`` and a warning (the model resisted that many
  queries; more might still copy it);
- ``extraction_fidelity``: the highest fidelity any strategy reached at its largest count,
  with its interval.

``details`` holds each strategy's curve (``queries``, ``fidelity``, ``fidelity_ci``,
``queries_90pct``), which the report draws as fidelity against queries, and
``constant_fidelity``: what a surrogate that always answers the model's commonest label
scores (a curve near it has copied nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from bastion.audits.base import Audit, AuditData, AuditResult
from bastion.audits.extraction import TARGET, extraction_audit
from bastion.spec.audits import ExtractionAuditConfig

__all__ = ["CONFIDENCE", "RESAMPLES", "ExtractionAudit"]

RESAMPLES = 1000
"""Bootstrap resamples of each fidelity interval (at :data:`CONFIDENCE`)."""
CONFIDENCE = 0.95
"""Level of each fidelity interval."""


class ExtractionAudit(Audit):
    """Surrogate fidelity against query count, per strategy (see the module docstring)."""

    name: ClassVar[str] = "extraction"
    config_type: ClassVar[type[ExtractionAuditConfig]] = ExtractionAuditConfig
    config: ExtractionAuditConfig

    def load_problems(
        self, columns: Sequence[str], sensitive: Sequence[str]
    ) -> list[tuple[tuple[str, ...], str]]:
        """Gates no measurement can pass, and ``round`` without scores to round."""
        cfg = self.config
        most, least = max(cfg.queries), min(cfg.queries)
        problems: list[tuple[tuple[str, ...], str]] = []
        floor = cfg.gates.get("min_extraction_queries_90pct")
        if floor is not None and floor > most:
            problems.append(
                (
                    ("gates", "min_extraction_queries_90pct"),
                    f"{floor:g} is above the largest query count ({most}), so it can never be"
                    f" measured; expected at most {most}, or add a larger count to queries",
                )
            )
        ceiling = cfg.gates.get("max_extraction_queries_90pct")
        if ceiling is not None and ceiling < least:
            problems.append(
                (
                    ("gates", "max_extraction_queries_90pct"),
                    f"{ceiling:g} is below the smallest query count ({least}), so it can never"
                    f" pass; expected at least {least}",
                )
            )
        for gate, bad in (("min_extraction_fidelity", 1.0), ("max_extraction_fidelity", 0.0)):
            value = cfg.gates.get(gate)
            if value is not None and (value > bad if gate.startswith("min") else value < bad):
                problems.append(
                    (("gates", gate), f"{value:g} can never pass; expected a fidelity in [0, 1]")
                )
        if cfg.round is not None and cfg.output == "label":
            problems.append(
                (
                    ("round",),
                    "rounds scores, but output: label serves none; expected output: probability,"
                    " or no round",
                )
            )
        return problems

    def measure(self, data: AuditData) -> AuditResult:
        """Extract the model as served; numbers, curves and warnings, no verdict."""
        cfg = self.config
        found = extraction_audit(
            data.model,
            features=data.features,
            train=data.train,
            test=data.test,
            schema=data.schema,
            strategies=cfg.strategies,
            queries=cfg.queries,
            output=cfg.output,
            round=cfg.round,
            resamples=RESAMPLES,
            confidence=CONFIDENCE,
            seed=data.seed,
            executor=data.executor,
            progress=data.progress,
        )
        curves = found.strategies
        reached = [c.queries_90pct for c in curves.values() if c.queries_90pct is not None]
        warnings = list(found.warnings)
        most = max(cfg.queries)
        lower_bound = not reached
        if lower_bound:
            warnings.append(
                f"no strategy reached {TARGET:.0%} agreement within {most} queries:"
                f" extraction_queries_90pct = {most} is a lower bound"
            )
        finals = [(c.fidelity[-1], c.fidelity_ci[-1]) for c in curves.values() if c.fidelity]
        best = max(finals, key=lambda f: f[0]) if finals else None
        return AuditResult(
            audit=self.name,
            values={
                "extraction_queries_90pct": float(min(reached) if reached else most),
                "extraction_fidelity": best[0] if best else None,
            },
            intervals={"extraction_fidelity": list(best[1])} if best else {},
            details={
                "strategies": {
                    name: {
                        "queries": c.queries,
                        "fidelity": c.fidelity,
                        "fidelity_ci": c.fidelity_ci,
                        "queries_90pct": c.queries_90pct,
                    }
                    for name, c in curves.items()
                },
                "output": found.output,
                "round": found.round,
                "evaluation_rows": found.evaluation_rows,
                "pool_rows": found.pool_rows,
                "lower_bound": lower_bound,
                "constant_fidelity": found.constant_fidelity,
                "soft_labels": found.soft_labels,
                "resamples": found.resamples,
                "confidence": found.confidence,
            },
            warnings=warnings,
        )
