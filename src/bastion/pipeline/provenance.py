"""Provenance: what the runner signs about a run — the predicates, each stage's materials,
the stage and release statements' bodies, and the environment the run happened in.

Two in-toto predicate types:

- :data:`STAGE_PREDICATE` — one statement per stage run: its outputs are the subjects; the
  body names the pipeline, run, stage, code version, the pipeline file's digest, the
  fingerprint of the stage's configuration, the materials (stored inputs and external
  sources it read) and the seed.
- :data:`RELEASE_PREDICATE` — one per released model version: the model, the pipeline
  file, the training table and the model card are the subjects; the body holds the
  version, the previous version's release statement, every stage's statement, the gates
  and the metrics. It is the source of truth for the model's version and contract.

Signing itself is the workspace's (``Workspace.attest``); this module only builds bodies.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from bastion._canonical import canonical_json
from bastion.spec.stage import Material

__all__ = [
    "RELEASE_PREDICATE",
    "STAGE_PREDICATE",
    "canonical",
    "environment",
    "release_predicate",
    "release_subjects",
    "stage_materials",
    "stage_predicate",
]

STAGE_PREDICATE = "https://bastion.dev/provenance/stage/v1"
RELEASE_PREDICATE = "https://bastion.dev/provenance/release/v1"
_PACKAGES = ("bastion-ml", "numpy", "pandas", "pyarrow", "scikit-learn", "skops", "cryptography")


def canonical(obj: Any) -> bytes:
    """The JSON the runner hashes (cache keys, fingerprints): sorted keys, no spaces."""
    return canonical_json(obj, ascii=True, allow_nan=True, default=str)


def stage_materials(
    inputs: Mapping[str, str], input_keys: Mapping[str, str], sources: Iterable[Material]
) -> list[dict[str, str]]:
    """The stored inputs (by their ``stage.output`` key) and the external sources read."""
    materials = [
        {"name": f"{input_keys[n]}", "sha256": d, "kind": "artifact"}
        for n, d in sorted(inputs.items())
    ]
    materials += [
        {"name": m.name, "sha256": m.sha256, "uri": m.uri, "kind": "source"} for m in sources
    ]
    return materials


def stage_predicate(
    *,
    pipeline: str,
    run_id: str,
    stage: str,
    version: str,
    config_digest: str,
    fingerprint: Mapping[str, Any],
    materials: list[dict[str, str]],
    seed: int,
) -> dict[str, Any]:
    """The body of a stage's statement."""
    return {
        "pipeline": pipeline,
        "run_id": run_id,
        "stage": stage,
        "version": version,
        "config_digest": config_digest,
        "fingerprint": hashlib.sha256(canonical(fingerprint)).hexdigest(),
        "materials": materials,
        "seed": seed,
    }


def release_subjects(
    ref: str, model: str, config: str, train_table: str, card: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(name, digest) of what a release signs: model, pipeline file, training table, card."""
    return [
        (ref, model),
        (f"{ref}/pipeline.yaml", config),
        (f"{ref}/train_table", train_table),
    ] + [(f"{ref}/{n}", d) for n, d in sorted(card.items())]


def release_predicate(
    *,
    ref: str,
    name: str,
    version: int,
    previous: str | None,
    run_id: str,
    pipeline: str,
    config_digest: str,
    stages: Mapping[str, str],
    metrics: Mapping[str, Any],
    evaluation: str | None = None,
) -> dict[str, Any]:
    """The body of a release statement; ``metrics`` is the combined verdict of the gating
    stages (``gates``, ``metrics``, ``passed``, ``override``), ``evaluation`` the signed
    evaluation statement of the model."""
    return {
        "model": ref,
        "name": name,
        "version": version,
        "previous": previous,
        "run_id": run_id,
        "pipeline": pipeline,
        "config_digest": config_digest,
        "stages": dict(stages),
        "gates": metrics.get("gates", []),
        "metrics": dict(metrics.get("metrics", {})),
        "passed": bool(metrics.get("passed")),
        "override": metrics.get("override"),
        "evaluation": evaluation,
    }


def environment(folder: Path) -> dict[str, Any]:
    """Python, platform, the versions of the packages that shape results, the git commit."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(folder),
    }


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
