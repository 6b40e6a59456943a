"""The stage cache: a stage whose key was seen before, with every output still in the
store, is reused instead of run.

The key is the SHA-256 of the canonical JSON of the stage's name, code version,
fingerprint (its configuration), input digests, seed, the external bytes it reads (a file
source's digest; the active pseudonym key's id for a pseudonymizing stage) and, for the
releasing stage, the model's ``NAME:VERSION`` (the card names it). SQL sources and
unpinned files have no key: they are re-read, and re-audited, on every run.

Rows live in the ``stage_cache`` table: key → outputs (name → digest) and the statement
signed when they were made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bastion.errors import ConfigError
from bastion.pipeline.provenance import canonical
from bastion.spec.stage import Stage
from bastion.store.db import stage_cache

if TYPE_CHECKING:
    from bastion.store.artifacts import ArtifactStore

__all__ = ["cache_key", "external_digest", "insert", "lookup", "sha256_file"]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def external_digest(stage: Stage, pipeline_file: Path) -> str | None:
    """A file source's digest, so a changed file is never cached (None: no file source)."""
    source = stage.source
    if source is None or source.format not in ("csv", "parquet") or source.path is None:
        return None
    path = (pipeline_file.parent / source.path).resolve()
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{pipeline_file}: data source file {source.path} not found (looked in {path})"
        ) from None


def cache_key(
    stage: Stage,
    inputs: Mapping[str, str],
    *,
    pipeline_file: Path,
    seed: int,
    pseudonym_key: str | None,
    model_ref: str | None,
) -> str | None:
    """The stage's cache key, or None when it must run every time (SQL, unpinned).

    ``pseudonym_key``: the active pseudonym key's id, used when the stage pseudonymizes;
    ``model_ref``: the version being released, used by the releasing stage."""
    source = stage.source
    if source is not None and (source.format == "sql" or source.sha256 is None):
        return None  # SQL and unsafe_unpinned sources are re-read (and re-audited) each run
    external = external_digest(stage, pipeline_file)
    if stage.uses_pseudonym_key:
        external = f"{external}|pseudonym:{pseudonym_key}"
    return hashlib.sha256(
        canonical(
            {
                "stage": stage.name,
                "version": stage.version,
                "config": stage.fingerprint(),
                "inputs": dict(inputs),
                "external": external,
                "seed": seed,
                "model_ref": model_ref if stage.releases is not None else None,
            }
        )
    ).hexdigest()


def lookup(
    engine: sa.Engine, store: ArtifactStore, key: str | None
) -> tuple[dict[str, str], str] | None:
    """(outputs, statement id) cached under ``key``, if every output is still stored."""
    if key is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(stage_cache).where(stage_cache.c.key == key)).first()
    if row is None:
        return None
    outputs: dict[str, str] = json.loads(row.outputs)
    if not all(store.exists(d) for d in outputs.values()):
        return None
    return outputs, row.statement_id


def insert(
    engine: sa.Engine,
    key: str,
    stage: str,
    outputs: Mapping[str, str],
    statement: str | None,
    run_id: str,
) -> None:
    """Remember ``outputs`` and their statement under ``key`` (replacing an older row)."""
    with engine.begin() as conn:
        conn.execute(sa.delete(stage_cache).where(stage_cache.c.key == key))
        conn.execute(
            sa.insert(stage_cache).values(
                key=key,
                stage=stage,
                outputs=json.dumps(dict(outputs)),
                statement_id=statement,
                run_id=run_id,
                created=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
        )
