"""Verdicts and evaluation statements: the gating stages' results combined, and signed.

:func:`combine` merges the gates of every gating stage (``evaluate``, each
``audit.<name>``); :func:`sign_evaluation` signs the model's evaluation statement
(:data:`EVALUATION_PREDICATE`) and audits it as ``model.evaluate``. The runner calls both
before a release; :mod:`bastion.pipeline.evaluation` reads them back (which evaluation
counts, overrides, the server's check) and re-evaluates registered models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "EVALUATION_PREDICATE",
    "MIN_REASON",
    "OVERRIDE_PREDICATE",
    "Evaluation",
    "EvaluationReport",
    "check_reason",
    "combine",
    "failed_gates",
    "sign_evaluation",
]

EVALUATION_PREDICATE = "https://bastion.dev/provenance/evaluation/v1"
OVERRIDE_PREDICATE = "https://bastion.dev/provenance/override/v1"
MIN_REASON = 10


def combine(outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The verdict of several gating stages: every gate tagged with its stage, and
    ``passed`` only when every stage passed."""
    gates = [{**g, "stage": name} for name, out in outputs.items() for g in out.get("gates", [])]
    return {
        "passed": all(bool(out.get("passed")) for out in outputs.values()),
        "gates": gates,
        "stages": {name: bool(out.get("passed")) for name, out in outputs.items()},
    }


def failed_gates(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    """``stage: gate (value vs threshold)`` for each failed gate."""
    out = []
    for g in gates:
        if not g.get("passed"):
            value = g.get("value")
            shown = "not measured" if value is None else f"{value:.4g}"
            out.append(f"{g.get('stage', '?')}: {g.get('gate')} {shown} vs {g.get('threshold')}")
    return out


def check_reason(reason: str | None) -> str:
    """An override's reason: required, and more than a word."""
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ConfigError(
            f"--reason: an override needs a reason of at least {MIN_REASON} characters,"
            " saying why the failed gates are acceptable"
        )
    return text[:2000]


@dataclass
class Evaluation:
    """A verified evaluation of one model, and its override if any."""

    statement: str
    model: str | None
    digest: str
    passed: bool
    gates: list[dict[str, Any]]
    run_id: str | None
    results: dict[str, str]  # gating stage → digest of its stored result
    override: dict[str, Any] | None = None  # {"by", "reason", "statement"?}
    seq: int = 0  # its model.evaluate entry in the audit log
    failed: list[str] = field(default_factory=list)

    @property
    def allows_serving(self) -> bool:
        return self.passed or self.override is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "model": self.model,
            "digest": self.digest,
            "passed": self.passed,
            "overridden": self.override is not None,
            "override": self.override,
            "failed": self.failed,
            "gates": self.gates,
            "run_id": self.run_id,
            "results": self.results,
        }


def sign_evaluation(
    ws: Workspace,
    actor: str,
    *,
    digest: str,
    ref: str | None,
    pipeline: str,
    results: Mapping[str, str],
    verdict: Mapping[str, Any],
    run_id: str | None,
    override: Mapping[str, Any] | None = None,
) -> str:
    """Sign and audit an evaluation of the model with ``digest``; its statement id.

    ``results``: gating stage → digest of its stored result; ``verdict``: :func:`combine`.
    """
    subjects = [("model", digest)] + [(f"{s}.result", d) for s, d in sorted(results.items())]
    passed = bool(verdict.get("passed"))
    predicate = {
        "model": ref,
        "model_digest": digest,
        "pipeline": pipeline,
        "run_id": run_id,
        "passed": passed,
        "gates": list(verdict.get("gates", [])),
        "stages": dict(verdict.get("stages", {})),
        "results": dict(results),
        "override": dict(override) if override else None,
    }
    sid = ws.attest(subjects, EVALUATION_PREDICATE, predicate, actor=actor)
    ws.audit.record(
        actor,
        "model.evaluate",
        f"model:{ref}" if ref else f"pipeline:{pipeline}",
        "ok" if passed else "failed",
        {"statement": sid, "passed": passed, "overridden": bool(override), "run": run_id},
    )
    return sid


@dataclass
class EvaluationReport:
    """What ``bastion evaluate`` did: the model, the new statement, the verdict, results."""

    model: str
    statement: str
    passed: bool
    gates: list[dict[str, Any]]
    results: dict[str, dict[str, Any]]  # gating stage → its result JSON
    report: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "statement": self.statement,
            "passed": self.passed,
            "failed": failed_gates(self.gates),
            "gates": self.gates,
            "report": str(self.report) if self.report else None,
        }
