"""The runner: turns a pipeline file into stages and runs them with every control on.

For each stage, in order, the runner — not the stage —

1. hashes the stage's identity: its name, code version, configuration fingerprint, the
   digests of its inputs, the seed and, for ingest stages, the digest of the source bytes;
2. reuses the stage from the cache when that key was seen before and every output is still
   in the store (a no-change rerun touches no data);
3. otherwise loads its inputs from the encrypted store (verified), runs it, stores each
   output encrypted, and signs an in-toto statement whose subjects are the output digests
   and whose materials are the input digests (and pinned sources);
4. audits start, finish, cache reuse and failure.

After the gating stage (``Stage.gates_output``, today ``evaluate``) the gates decide: a
failed gate ends the run ``failed`` (exit 1) with everything stored and reported, and
nothing released. The releasing stage (``Stage.releases``) registers the model as
``NAME:VERSION`` (a rerun that yields the same model bytes reuses its version) and signs a
release statement that names the statement of every stage — the provenance chain that
:mod:`bastion.pipeline.registry` checks before a model is ever deserialised.

The runner only orchestrates (start, the stages in order, the gates before the release,
report, finish); the pieces live beside it: :mod:`bastion.pipeline.run_state` (what the
steps share: outputs so far, queued audit entries), :mod:`bastion.pipeline.stage_steps`
(one stage: items 1-4 above), :mod:`bastion.pipeline.releasing` (verdicts, the signed
evaluation, the version and registration), :mod:`bastion.pipeline.run_report` (the
report), :mod:`bastion.pipeline.cache` (the key, lookup and insert),
:mod:`bastion.pipeline.provenance` (predicates, materials, statement bodies, the
environment) and :mod:`bastion.pipeline.record` (the run record). It reads each stage's
optional hooks from :class:`~bastion.spec.stage.Stage` and never names a stage.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import Error
from bastion.pipeline import provenance
from bastion.pipeline.provenance import RELEASE_PREDICATE, STAGE_PREDICATE
from bastion.pipeline.record import (
    RunResult,
    StageRecord,
    finish_run,
    gate_failure,
    now,
    start_run,
)
from bastion.pipeline.releasing import ReleaseSteps
from bastion.pipeline.run_report import write_report
from bastion.pipeline.run_state import Progress, StepProgress
from bastion.pipeline.stage_steps import StageSteps
from bastion.spec.config import PipelineConfig
from bastion.spec.stage import Stage

if TYPE_CHECKING:
    from bastion.workspace import Workspace


log = logging.getLogger("bastion.pipeline")
__all__ = [
    "RELEASE_PREDICATE",
    "STAGE_PREDICATE",
    "Pipeline",
    "RunResult",
    "StageRecord",
    "gate_failure",
]


class Pipeline:
    """A validated pipeline file, ready to run in a workspace."""

    def __init__(self, config: PipelineConfig, raw: bytes, path: Path) -> None:
        self.config = config
        self.raw = raw
        self.path = path
        self.config_digest = hashlib.sha256(raw).hexdigest()

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Load and validate a pipeline file (errors name the file, line and key), then
        each stage's load-time checks (``Stage.load_problems``): no secret, no data read."""
        from bastion.spec.loader import config_error_at, load_pipeline

        path = Path(path)
        config, raw = load_pipeline(path)
        pipeline = cls(config, raw, path)
        problems = [p for stage in pipeline.stages() for p in stage.load_problems(path.parent)]
        if problems:
            raise config_error_at(raw, str(path), problems)
        return pipeline

    # -- the stage graph --------------------------------------------------------------

    def stages(self) -> list[Stage]:
        """The stages in run order."""
        from bastion.stages.audit import AuditStage
        from bastion.stages.evaluate import EvaluateStage
        from bastion.stages.features import FeaturesStage
        from bastion.stages.ingest import IngestStage
        from bastion.stages.pii import PiiStage
        from bastion.stages.release import ReleaseStage
        from bastion.stages.screen import ScreenStage, ShiftStage
        from bastion.stages.split import SplitStage
        from bastion.stages.train import TrainStage
        from bastion.stages.validate import ValidateStage

        cfg = self.config
        names = list(cfg.data.sources)
        training = [n for n in names if n != cfg.split.test_source]
        out: list[Stage] = [IngestStage(n, cfg.data.sources[n]) for n in names]
        out += [ValidateStage(n, cfg.data) for n in names]
        out += [PiiStage(n, cfg.data) for n in names]
        out += [ScreenStage(n, cfg.data) for n in training]
        out += [ShiftStage(n, cfg.data) for n in training]
        tables = {n: f"screen.{n}.table" if n in training else f"pii.{n}.table" for n in names}
        quarantine = None
        if cfg.split.test_source is None and len(names) == 1:  # split after the screen:
            tables = {names[0]: f"pii.{names[0]}.table"}  # the test part stays unscreened
            quarantine = f"screen.{names[0]}.quarantine"
        out += [
            SplitStage(cfg.split, cfg.data.label.column, names, tables, quarantine),
            FeaturesStage(cfg.features, cfg.data),
            TrainStage(cfg.model, cfg.data.label),
            EvaluateStage(cfg.evaluate, cfg.data.label, list(cfg.data.sensitive)),
        ]
        audits = cfg.audits.enabled()
        fairness, workers = cfg.evaluate.fairness, cfg.audits.workers
        out += [
            AuditStage(name, audit, cfg.data, fairness=fairness, workers=workers)
            for name, audit in audits.items()
        ]
        out.append(ReleaseStage(cfg.release, training, cfg.name, audits=list(audits)))
        return out

    # -- running ----------------------------------------------------------------------

    def run(
        self,
        workspace: Workspace,
        *,
        progress: Progress | None = None,
        force: bool = False,
        steps: StepProgress | None = None,
        override_gates: str | None = None,
    ) -> RunResult:
        """Run every stage (reusing cached ones unless ``force``); return the run record.

        Needs ``pipeline:run`` (checked by ``workspace.authorize``, a refusal audited); the
        run is recorded, signed and audited as the workspace's authenticated principal.
        A failed gate gives a result with status ``failed``; other failures raise.
        ``progress`` hears each stage start and end, ``steps`` the steps inside a stage.

        ``override_gates``: an approver's reason to release even if gates fail; the caller
        must also hold ``model:approve`` on the model (checked before anything runs). The
        override is audited (``gates.override``) and signed into the evaluation and the
        release; with every gate passed it is not used.
        """
        from bastion.pipeline.verdict import check_reason

        actor = workspace.authorize("pipeline:run").principal
        if override_gates is not None:
            override_gates = check_reason(override_gates)
            name = self.config.release.name
            workspace.authorize("model:approve", resource_type="model", resource=name)
        run = _Run(self, workspace, actor, progress, force)
        run.steps = steps
        run.override_gates = override_gates
        return run.execute()


class _Run(StageSteps, ReleaseSteps):
    """One run: started, its stages in order (the release only past the gates), reported
    and finished; the steps are :class:`StageSteps`' and :class:`ReleaseSteps`'."""

    def _start(self) -> dict[str, Any]:
        """Audit the start, store the pipeline file, insert the run's row; its record."""
        cfg = self.p.config
        record: dict[str, Any] = {
            "run_id": self.run_id,
            "pipeline": cfg.name,
            "pipeline_file": str(self.p.path),
            "config_digest": self.p.config_digest,
            "actor": self.actor,
            "started": now(),
            "seed": cfg.seed,
            "environment": provenance.environment(self.p.path.parent),
        }
        self.audit(
            "run.start", f"pipeline:{cfg.name}", "started", {"config_digest": self.p.config_digest}
        )
        self.settle()
        self.config_ref = self.ws.store.put(
            self.p.raw,
            actor=self.actor,
            media_type="application/yaml",
            name=f"{cfg.name}/pipeline.yaml",
        ).digest
        record["config_artifact"] = self.config_ref
        start_run(self.ws.engine, record)
        return record

    def _announce_unsafe(self, stages: list[Stage]) -> None:
        """Log and audit every ``unsafe_`` setting, on every run, cached or not."""
        for stage in stages:
            for setting in stage.unsafe():
                log.warning("%s: running with %s", stage.name, setting)
                self.audit("unsafe.setting", f"stage:{stage.name}", "ok", {"setting": setting})

    def _run_stages(self, stages: list[Stage]) -> tuple[Mapping[str, Any], str | None]:
        """Run the stages in order; (the gates' verdict, the released model's ref).

        Before the releasing stage, every gating stage's verdict is combined and signed as
        the model's evaluation; the release runs only when it passed or was overridden."""
        verdict: dict[str, Any] = {"passed": True, "gates": [], "metrics": {}}
        model_ref = None
        for i, stage in enumerate(stages):
            released = stage.releases
            if released is not None:
                verdict = self.combined_verdict()
                if not verdict["passed"] and self.override is None:
                    self.attest_evaluation(released, verdict, None)
                    self.records.append(StageRecord(stage.name, status="skipped"))
                    continue
                model = self.model_version(released)
                self.summary["model_ref"] = f"{model[0]}:{model[1]}"
                self.attest_evaluation(released, verdict, self.summary["model_ref"])
            self.records.append(self.run_stage(stage, i, len(stages)))
            if stage.gates_output is not None:
                self.keep_verdict(stage, stage.gates_output)
            if released is not None:
                model_ref = self.register(released, model, verdict)
        return verdict, model_ref

    def execute(self) -> RunResult:
        record = self._start()
        stages = self.stages = self.p.stages()
        self._announce_unsafe(stages)
        try:
            metrics, model_ref = self._run_stages(stages)
            status = "passed" if metrics.get("passed") or self.override else "failed"
            record["evaluation"] = self.evaluation
            record["override"] = self.override
        except Error as exc:
            record["error"] = str(exc)
            self._finish(record, "error", None, self.gates)
            raise
        except BaseException as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            self._finish(record, "error", None, self.gates)
            raise
        first = next(iter(self.verdicts.values()), {})  # the first gating stage's whole output
        report = write_report(self, record, first, status, model_ref, self.gates)
        self._finish(record, status, model_ref, self.gates, report)
        return RunResult(self.run_id, status, model_ref, self.gates, report, self.records, record)

    def _finish(
        self,
        record: dict[str, Any],
        status: str,
        model_ref: str | None,
        gates: list[dict[str, Any]],
        report: Path | None = None,
    ) -> None:
        record.update(
            finished=now(),
            status=status,
            model=model_ref,
            gates=gates,
            report=str(report) if report else None,
            stages=[r.to_json() for r in self.records],
        )
        finish_run(self.ws.engine, record)
        self.audit(
            "run.finish",
            f"pipeline:{self.p.config.name}",
            {"passed": "ok", "failed": "failed"}.get(status, "error"),
            {"status": status, "model": model_ref},
        )
        self.settle()
