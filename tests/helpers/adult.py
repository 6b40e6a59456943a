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
