"""The audit stages: one per audit in the pipeline file's ``audits:`` section, after
``evaluate``.

Each ``audit.<name>`` stage reads the fitted model, the rows it was trained on and the
held-out rows, runs the audit (:mod:`bastion.audits.suite`), and stores its result (json:
:meth:`bastion.audits.base.AuditResult.to_json`): the numbers with their intervals, the
data of its plots, the sanity checks and one result per gate. It is a gating stage like
``evaluate``: a failed gate stops the release (unless an approver overrides it; see
:mod:`bastion.pipeline.evaluation`). The audit's independent tasks run through a
:class:`~bastion.audits.executor.LocalExecutor` of ``audits.workers`` processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.audits.base import Audit, AuditData
from bastion.audits.executor import LocalExecutor
from bastion.audits.suite import audit_for
from bastion.errors import ConfigError
from bastion.spec.audits import AuditConfig
from bastion.spec.config import DataConfig, FairnessConfig
from bastion.spec.stage import ConfigProblem, Kind, Stage, StageContext

__all__ = ["AuditStage", "audit_data"]


class AuditStage(Stage):
    """Run one audit on the trained model and judge its gates."""

    version = "1"
    inputs: Mapping[str, str] = {
        "model": "train.model",
        "train": "split.train",
        "test": "split.test",
    }
    outputs: Mapping[str, Kind] = {"result": "json"}
    gates_output = "result"

    def __init__(
        self,
        audit: str,
        config: AuditConfig,
        data: DataConfig,
        *,
        fairness: FairnessConfig | None = None,
        workers: int | str = 1,
    ) -> None:
        self.audit = audit
        self.name = f"audit.{audit}"
        self.config = config
        self.data = data
        self.fairness = fairness
        self.workers = workers
        self.audit_result = (audit, "result")

    def fingerprint(self) -> Mapping[str, Any]:
        # workers never change a result (each task carries its own seed), so not in the key
        return {
            "audit": self.audit,
            "config": self.config.model_dump(mode="json"),
            "label": {"column": self.data.label.column, "positive": self.data.label.positive},
            "sensitive": list(self.data.sensitive),
            "schema": {k: v.model_dump(mode="json") for k, v in self.data.schema_.items()},
            "fairness": self.fairness.model_dump(mode="json") if self.fairness else None,
        }

    def _audit(self) -> Audit:
        return audit_for(self.audit, self.config)

    def load_problems(self, base_dir: Path) -> list[ConfigProblem]:
        found = self._audit().load_problems(list(self.data.schema_), list(self.data.sensitive))
        return [(("audits", self.audit, *path), what) for path, what in found]

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        data = audit_data(
            inputs["model"],
            inputs["train"],
            inputs["test"],
            self.data,
            seed=ctx.seed,
            fairness=self.fairness,
            workers=self.workers,
            progress=ctx.progress,
        )
        with ctx.limit_threads():
            result = self._audit().run(data)
        return {"result": result.to_json()}


def audit_data(
    model: Any,
    train: Any,
    test: Any,
    data: DataConfig,
    *,
    seed: int,
    fairness: FairnessConfig | None = None,
    workers: int | str = 1,
    progress: Any = None,
    sensitive: Sequence[str] | None = None,
) -> AuditData:
    """The audits' view of a model and its rows (used by the stage and ``bastion evaluate``)."""
    label = data.label.column
    for name, table in (("training", train), ("test", test)):
        if label not in table.columns:
            raise ConfigError(f"audits: the {name} table has no label column {label!r}")
        if len(table) == 0:
            raise ConfigError(f"audits: the {name} table is empty")
    extra: dict[str, Any] = {"progress": progress} if progress is not None else {}
    return AuditData(
        model=model,
        train=train,
        test=test,
        label=label,
        positive=data.label.positive,
        sensitive=tuple(sensitive if sensitive is not None else data.sensitive),
        schema=data.schema_,
        seed=seed,
        executor=LocalExecutor(workers),
        fairness=fairness,
        **extra,
    )
