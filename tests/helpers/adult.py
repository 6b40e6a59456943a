"""The Adult example as tests see it: one source of truth, the example pipeline file."""

from __future__ import annotations

from pathlib import Path

from bastion.pipeline.loader import load_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adult-income" / "pipeline.yaml"
DATA = EXAMPLE.parent / "data"

#: column name → declared type, in file order, from the example's schema
ADULT_TYPES: dict[str, str] = {
    name: spec.type for name, spec in load_pipeline(EXAMPLE)[0].data.schema_.items()
}

_CONFIG = load_pipeline(EXAMPLE)[0]
#: (stage, gate) of every gate the example declares: evaluate's and each audit's
ADULT_GATES: set[tuple[str, str]] = {("evaluate", g) for g in _CONFIG.evaluate.gates} | {
    (f"audit.{name}", g) for name, audit in _CONFIG.audits.enabled().items() for g in audit.gates
}
#: the example's stages in run order
ADULT_STAGES: list[str] = [
    "ingest.train",
    "ingest.test",
    "validate.train",
    "validate.test",
    "pii.train",
    "pii.test",
    "screen.train",
    "shift.train",
    "split",
    "features",
    "train",
    "evaluate",
    *(f"audit.{name}" for name in _CONFIG.audits.enabled()),
    "release",
]
