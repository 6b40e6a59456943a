"""Finding a run: ``ws.runs.list()`` and ``ws.runs.show(run)``, the records behind
``bastion runs list`` and ``bastion runs show``.

A run's row (:mod:`bastion.pipeline.record`) holds its status, times and record: the
stages, the gates and the released model. :class:`RunRecord` is that row, typed, with the
absolute paths of what the run wrote into the home: the report (HTML and JSON) and the
model card (HTML and Markdown).

The rows are informational: no security decision reads them, and they carry no MAC. So
nothing here trusts them further than it has to. A path is never read from a row: it is
built from the home and the run id (which must have the runner's form), resolved
(following any link), and given only when it is a file inside the home's ``reports``
folder. A row whose record is not JSON is reported as an IntegrityError naming the run.

Both need ``model:read`` (``list(pipeline=...)`` and ``show`` on the run's pipeline as a
``model`` resource, so a token scoped to one model sees that pipeline's runs); a refusal is
audited by :meth:`~bastion.workspace.Workspace.authorize`, and ``show`` is audited as
``run.show``.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.errors import ConfigError, IntegrityError, NotFound
from bastion.store.db import runs

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "REPORT_FILES",
    "GateOutcome",
    "ReportFiles",
    "RunRecord",
    "Runs",
    "StageOutcome",
    "report_files",
]

_RUN_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}$")  # the runner's: UTC stamp, 8 hex digits
_PREFIX = re.compile(r"^[0-9A-Za-z-]{1,32}$")
_PIPELINE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

#: attribute of :class:`ReportFiles` → the file the runner writes in ``reports/RUN``
REPORT_FILES: dict[str, str] = {
    "report": "report.html",
    "report_json": "report.json",
    "model_card": "model_card.html",
    "model_card_md": "model_card.md",
}


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """One stage of a run: its status, whether it came from the cache, how long it took."""

    name: str
    status: str  # pending | done | failed | skipped
    cached: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "cached": self.cached,
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """One gate of a run: the stage that judged it (``evaluate``, ``audit.<name>``), the
    measured value, the threshold and the verdict."""

    gate: str
    value: float | None
    threshold: float | None
    passed: bool
    stage: str = "evaluate"

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "stage": self.stage,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The absolute paths of a run's report and model card, each None when absent."""

    report: Path | None = None  # report.html
    report_json: Path | None = None
    model_card: Path | None = None  # model_card.html
    model_card_md: Path | None = None

    def to_json(self) -> dict[str, str | None]:
        return {k: str(p) if (p := getattr(self, k)) else None for k in REPORT_FILES}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as its row records it, with the files it left in the home."""

    run_id: str
    pipeline: str
    status: str  # running | passed | failed | error
    actor: str
    started: str
    finished: str | None
    stages: tuple[StageOutcome, ...]
    gates: tuple[GateOutcome, ...]
    model: str | None  # NAME:VERSION when the run released a model
    error: str | None
    files: ReportFiles

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "actor": self.actor,
            "started": self.started,
            "finished": self.finished,
            "model": self.model,
            "error": self.error,
            "stages": [s.to_json() for s in self.stages],
            "gates": [g.to_json() for g in self.gates],
            **self.files.to_json(),
        }


def report_files(home: Path, run_id: str) -> ReportFiles:
    """The report and model card of ``run_id`` in ``home``: each an absolute path to a
    file inside ``home/reports`` (links resolved), or None."""
    if not _RUN_ID.fullmatch(run_id):
        return ReportFiles()
    reports = (home / "reports").resolve()
    found: dict[str, Path | None] = {}
    for attr, filename in REPORT_FILES.items():
        path = (reports / run_id / filename).resolve()
        inside = path.is_relative_to(reports) and path.parent.name == run_id
        found[attr] = path if inside and path.is_file() else None
    return ReportFiles(**found)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _stage(item: Any) -> StageOutcome | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    return StageOutcome(
        item["name"],
        str(item.get("status", "")),
        bool(item.get("cached")),
        _number(item.get("seconds")) or 0.0,
    )


def _gate(item: Any) -> GateOutcome | None:
    if not isinstance(item, dict) or not isinstance(item.get("gate"), str):
        return None
    return GateOutcome(
        item["gate"],
        _number(item.get("value")),
        _number(item.get("threshold")),
        item.get("passed") is True,
        _text(item.get("stage")) or "evaluate",
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Runs:
    """The runs of one workspace, newest first (``ws.runs``)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def list(
        self, *, limit: int | None = None, pipeline: str | None = None
    ) -> builtins.list[RunRecord]:
        """The newest ``limit`` runs (all when None), of one ``pipeline`` when given.
        Needs ``model:read`` (on ``pipeline`` as a model when given)."""
        if limit is not None and limit < 1:
            raise ConfigError(f"limit: expected a whole number of at least 1, got {limit}")
        self.ws.authorize("model:read", resource_type="model", resource=pipeline or None)
        query = sa.select(runs).order_by(runs.c.started.desc(), runs.c.id.desc())
        if pipeline:
            query = query.where(runs.c.pipeline == pipeline)
        if limit is not None:
            query = query.limit(limit)
        with self.ws.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def show(self, run: str) -> RunRecord:
        """The run whose id is ``run``, or starts with it when only one does; NotFound
        (exit 2) naming ``run`` when none does. Needs ``model:read`` on the run's
        pipeline (globally for an unknown or ambiguous id); audited ``run.show``."""
        if not _PREFIX.fullmatch(run):
            raise ConfigError(
                f"run: expected a run id or its start (letters, digits, '-'), got {run[:64]!r}"
            )
        with self.ws.engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs).where(runs.c.id.startswith(run, autoescape=True)).limit(6)
            ).all()
        exact = [row for row in rows if row.id == run]
        if exact or len(rows) == 1:
            row = (exact or rows)[0]
            scope = row.pipeline if _PIPELINE.fullmatch(row.pipeline) else None
            who = self.ws.authorize("model:read", resource_type="model", resource=scope)
            record = self._record(row)
            self.ws.audit.record(who.principal, "run.show", f"run:{record.run_id}", "ok", {})
            return record
        self.ws.authorize("model:read", resource_type="model")  # no oracle for ids
        if not rows:
            raise NotFound(f"run {run!r}: no such run (`bastion runs list` shows them)")
        shown = ", ".join(sorted(r.id for r in rows)[:5])
        raise ConfigError(f"run {run!r}: the start of more than one run ({shown}); give more")

    def files(self, run_id: str, *, model: str | None = None) -> ReportFiles:
        """The report and model card paths of ``run_id`` (None for each file absent).
        Needs ``model:read`` on ``model`` (the model whose record names the run, as
        ``models show`` passes it), else on the run's pipeline."""
        scope = model
        if scope is None:
            with self.ws.engine.connect() as conn:
                name = conn.execute(
                    sa.select(runs.c.pipeline).where(runs.c.id == run_id)
                ).scalar_one_or_none()
            scope = name if name and _PIPELINE.fullmatch(name) else None
        self.ws.authorize("model:read", resource_type="model", resource=scope)
        return report_files(self.ws.home, run_id)

    def _record(self, row: Any) -> RunRecord:
        try:
            doc = json.loads(row.record)
        except ValueError:
            raise IntegrityError(f"runs row {row.id!r}: its record is not valid JSON") from None
        if not isinstance(doc, dict):
            raise IntegrityError(f"runs row {row.id!r}: its record is not a JSON object")
        stages, gates = doc.get("stages"), doc.get("gates")
        stages = stages if isinstance(stages, builtins.list) else []
        gates = gates if isinstance(gates, builtins.list) else []
        return RunRecord(
            run_id=row.id,
            pipeline=row.pipeline,
            status=row.status,
            actor=row.actor,
            started=row.started,
            finished=row.finished,
            stages=tuple(s for s in map(_stage, stages) if s is not None),
            gates=tuple(g for g in map(_gate, gates) if g is not None),
            model=_text(doc.get("model")),
            error=(_text(doc.get("error")) or "")[:500] or None,  # as the audit entry keeps it
            files=report_files(self.ws.home, row.id),
        )
