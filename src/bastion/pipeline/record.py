"""The run record: what happened to each stage and to the whole run.

A run's row in the ``runs`` table is written ``running`` when it starts and updated once
when it ends (passed, failed or error) with the full record: the environment, the pipeline
file's artifact, each stage's status, outputs and statement, the gates and the report.
``bastion run --json`` prints :meth:`RunResult.to_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import GateFailed
from bastion.store.db import runs

if TYPE_CHECKING:
    from bastion.store.artifacts import ArtifactStore

__all__ = [
    "RunResult",
    "StageRecord",
    "finish_run",
    "gate_failure",
    "last_passed_output",
    "now",
    "start_run",
]


@dataclass
class StageRecord:
    """What happened to one stage in one run."""

    name: str
    cached: bool = False
    status: str = "pending"  # pending | done | failed | skipped
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # output name → digest
    statement: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stage as the run record, the report and ``bastion run --json`` show it."""
        return {
            "name": self.name,
            "status": self.status,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "statement": self.statement,
            "error": self.error,
        }


@dataclass
class RunResult:
    """The run record ``bastion run --json`` prints."""

    run_id: str
    status: str  # passed | failed
    model: str | None
    gates: list[dict[str, Any]]
    report: Path | None
    stages: list[StageRecord]
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "model": self.model,
            "gates": self.gates,
            "report": str(self.report) if self.report else None,
            "stages": [s.to_json() for s in self.stages],
            "evaluation": self.record.get("evaluation"),
            "override": self.record.get("override"),
        }


def now() -> str:
    """The current time as the run record writes it (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def start_run(engine: sa.Engine, record: dict[str, Any]) -> None:
    """Insert the run's row, status ``running``, from its record."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(runs).values(
                id=record["run_id"],
                pipeline=record["pipeline"],
                config_digest=record["config_digest"],
                status="running",
                actor=record["actor"],
                started=record["started"],
                record=json.dumps(record, default=str),
            )
        )


def finish_run(engine: sa.Engine, record: dict[str, Any]) -> None:
    """Update the run's row with its final status and record."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == record["run_id"])
            .values(
                status=record["status"],
                finished=record["finished"],
                record=json.dumps(record, default=str),
            )
        )


def last_passed_output(
    engine: sa.Engine, store: ArtifactStore, pipeline: str, stage: str, output: str
) -> str | None:
    """The digest of ``stage``'s ``output`` in the newest passed run still in the store."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(runs.c.record)
            .where(runs.c.pipeline == pipeline, runs.c.status == "passed")
            .order_by(runs.c.started.desc())
            .limit(20)
        ).all()
    for (record,) in rows:
        for rec in json.loads(record).get("stages", []):
            digest = rec.get("outputs", {}).get(output) if rec.get("name") == stage else None
            if digest and store.exists(digest):
                return str(digest)
    return None


def gate_failure(result: RunResult) -> GateFailed:
    """The error a shell raises for a run whose gates failed."""
    failed = [g for g in result.gates if not g.get("passed")]
    return GateFailed(
        f"run {result.run_id}: {len(failed)} gate(s) failed",
        [f"{g.get('gate')}: {g.get('value')} vs {g.get('threshold')}" for g in failed],
    )
