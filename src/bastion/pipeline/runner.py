# Over 400 lines, because it is one class (_Run) whose steps share the run's state.
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

The runner only orchestrates; the pieces live beside it: :mod:`bastion.pipeline.cache`
(the key, lookup and insert), :mod:`bastion.pipeline.provenance` (predicates, materials,
statement bodies, the environment) and :mod:`bastion.pipeline.record` (the run record).
It reads each stage's optional hooks from :class:`~bastion.spec.stage.Stage` and never
names a stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion._fs import atomic_write, private_dir
from bastion.errors import Error
from bastion.pipeline import cache, provenance
from bastion.pipeline.provenance import RELEASE_PREDICATE, STAGE_PREDICATE
from bastion.pipeline.record import (
    RunResult,
    StageRecord,
    finish_run,
    gate_failure,
    last_passed_output,
    now,
    start_run,
)
from bastion.pipeline.verdict import combine, failed_gates, sign_evaluation
from bastion.spec.config import PipelineConfig
from bastion.spec.stage import KINDS, Kind, Stage, StageContext, decode, encode
from bastion.store.db import models

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

Progress = Callable[[str, str, int, int], None]
"""``progress(stage, state, index, total)`` with state in running | cached | done | failed."""
StepProgress = Callable[[str, int, int, str], None]
"""``steps(stage, done, total, what)``: progress inside a running stage (``total`` 0 when
unknown), as the stage reports it through ``StageContext.progress``."""


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


class _Run:
    def __init__(
        self, pipeline: Pipeline, ws: Workspace, actor: str, progress: Progress | None, force: bool
    ) -> None:
        self.p = pipeline
        self.ws = ws
        self.actor = actor
        self.progress = progress or (lambda _n, _s, _i, _t: None)
        self.steps: StepProgress | None = None
        self.force = force
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_id = f"{stamp}-{secrets.token_hex(4)}"
        self.produced: dict[str, tuple[str, Kind]] = {}  # "stage.output" → (digest, kind)
        self.values: dict[str, Any] = {}
        self.records: list[StageRecord] = []
        self.summary: dict[str, Any] = {"config_digest": pipeline.config_digest}
        self.materials: dict[str, list[dict[str, str]]] = {}
        self.config_ref = ""  # digest of the pipeline file, stored at the start of the run
        self.previous_release: str | None = None  # release statement of the version before
        self.gates: list[dict[str, Any]] = []  # every gating stage's gates, once they ran
        self.override_gates: str | None = None  # an approver's reason to pass failed gates
        self.verdicts: dict[str, Mapping[str, Any]] = {}  # gating stage → its gates output
        self.evaluation: str | None = None  # the signed evaluation statement
        self.override: dict[str, Any] | None = None  # the override used, if any
        self.stages: list[Stage] = []  # the pipeline's stages, once the run started
        self._pseudo: Any = None
        self._pending: list[Future[int]] = []  # audit entries queued, not yet confirmed

    # -- helpers ----------------------------------------------------------------------

    def _audit(
        self,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # queued, not awaited: the writer group-commits them while the stage works;
        # :meth:`_settle` confirms them before the run writes anything else (a stage's
        # outputs, a registration, the run's end), so an audit failure still stops the run
        self._pending.append(
            self.ws.audit.submit(
                self.actor, action, resource, outcome, {"run": self.run_id, **(details or {})}
            )
        )

    def _settle(self) -> None:
        """Wait until every queued audit entry is durable; AuditError if one is not."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _value(self, key: str) -> Any:
        if key not in self.values:
            digest, kind = self.produced[key]
            self.values[key] = decode(kind, self.ws.store.read_bytes(digest))
        return self.values[key]

    def _pseudonymizer(self) -> Any:
        if self._pseudo is None:
            from bastion.defenses.pii import KeyringPseudonymizer

            self._pseudo = KeyringPseudonymizer(self.ws.keyring)
        return self._pseudo

    # -- one stage --------------------------------------------------------------------

    def _inputs(self, stage: Stage) -> tuple[dict[str, str], dict[str, str]]:
        """(input name → digest, input name → "stage.output" key), the baseline included."""
        inputs = {name: self.produced[key][0] for name, key in stage.inputs.items()}
        input_keys = dict(stage.inputs)
        if stage.baseline_output is not None:
            baseline = last_passed_output(
                self.ws.engine,
                self.ws.store,
                self.p.config.name,
                stage.name,
                stage.baseline_output,
            )
            if baseline is not None:
                inputs["baseline"] = baseline
                input_keys["baseline"] = f"{stage.name}.{stage.baseline_output}@last-passed-run"
                self.produced[input_keys["baseline"]] = (baseline, "json")
        return inputs, input_keys

    def _cache_key(self, stage: Stage, inputs: Mapping[str, str]) -> str | None:
        return cache.cache_key(
            stage,
            inputs,
            pipeline_file=self.p.path,
            seed=self.p.config.seed,
            pseudonym_key=self._pseudonymizer().key_id if stage.uses_pseudonym_key else None,
            model_ref=self.summary.get("model_ref"),
        )

    def _reuse(self, stage: Stage, key: str | None, index: int, total: int) -> StageRecord | None:
        """The stage's record from the cache, or None when it must run."""
        hit = None if self.force else cache.lookup(self.ws.engine, self.ws.store, key)
        if hit is None:
            return None
        rec = StageRecord(stage.name, cached=True, status="done")
        rec.outputs, rec.statement = hit
        for name, digest in rec.outputs.items():
            self.produced[f"{stage.name}.{name}"] = (digest, stage.outputs[name])
        self._audit(
            "stage.cached", f"stage:{stage.name}", "ok", {"key": key, "outputs": rec.outputs}
        )
        self.progress(stage.name, "cached", index, total)
        return rec

    def _context(self, stage: Stage) -> StageContext:
        return StageContext(
            config=self.p.config,
            base_dir=self.p.path.parent,
            seed=self.p.config.seed,
            actor=self.actor,
            run_id=self.run_id,
            event=lambda action, outcome, details: self._audit(
                action, f"stage:{stage.name}", outcome, details
            ),
            summary=self.summary,
            pseudonymizer=self._pseudonymizer() if stage.uses_pseudonym_key else None,
            on_progress=self._steps_of(stage.name),
            pipeline_file=str(self.p.path),
            pipeline_raw=self.p.raw,
        )

    def _steps_of(self, stage: str) -> Callable[[int, int, str], None] | None:
        steps = self.steps
        if steps is None:
            return None
        return lambda done, total, what: steps(stage, done, total, what)

    def _store_outputs(
        self,
        stage: Stage,
        outputs: Mapping[str, Any],
        values: Mapping[str, Any],
        inputs: Mapping[str, str],
        input_keys: Mapping[str, str],
    ) -> dict[str, str]:
        """Store each output encrypted; output name → digest."""
        missing = set(stage.outputs) - set(outputs)
        if missing:
            raise Error(f"stage {stage.name} did not produce {sorted(missing)}")
        # an output that IS one of the inputs (a stage that changed nothing) keeps the
        # input's digest: it is already stored and verified, no need to encode it again
        passed = {id(values[n]): (inputs[n], self.produced[k][1]) for n, k in input_keys.items()}
        stored: dict[str, str] = {}
        for name, kind in stage.outputs.items():
            same = passed.get(id(outputs[name]))
            if same is not None and same[1] == kind:
                digest = same[0]
            else:
                digest = self.ws.store.put(
                    encode(kind, outputs[name]),
                    actor=self.actor,
                    media_type=KINDS[kind],
                    name=f"{self.p.config.name}/{stage.name}/{name}",
                ).digest
            stored[name] = digest
            self.produced[f"{stage.name}.{name}"] = (digest, kind)
            self.values[f"{stage.name}.{name}"] = outputs[name]
        return stored

    def _attest_stage(self, stage: Stage, rec: StageRecord, materials: list[dict[str, str]]) -> str:
        """Sign the stage's statement: its outputs, from its materials."""
        self.materials[stage.name] = materials
        return self.ws.attest(
            [(f"{stage.name}.{n}", d) for n, d in sorted(rec.outputs.items())],
            STAGE_PREDICATE,
            provenance.stage_predicate(
                pipeline=self.p.config.name,
                run_id=self.run_id,
                stage=stage.name,
                version=stage.version,
                config_digest=self.p.config_digest,
                fingerprint=stage.fingerprint(),
                materials=materials,
                seed=self.p.config.seed,
            ),
            actor=self.actor,
        )

    def _fail(self, stage: Stage, rec: StageRecord, exc: Error, t0: float, i: int, n: int) -> None:
        rec.status, rec.error = "failed", str(exc)
        rec.seconds = time.perf_counter() - t0
        self._audit(
            "stage.fail",
            f"stage:{stage.name}",
            "failed",
            {"error": str(exc)[:500], "kind": type(exc).__name__},
        )
        self._settle()
        self.progress(stage.name, "failed", i, n)

    def _run_stage(self, stage: Stage, index: int, total: int) -> StageRecord:
        inputs, input_keys = self._inputs(stage)
        key = self._cache_key(stage, inputs)
        t0 = time.perf_counter()
        reused = self._reuse(stage, key, index, total)
        if reused is not None:
            return reused
        rec = StageRecord(stage.name)
        self.progress(stage.name, "running", index, total)
        self._audit("stage.start", f"stage:{stage.name}", "started", {"inputs": inputs})
        ctx = self._context(stage)
        try:
            values = {name: self._value(k) for name, k in input_keys.items()}
            outputs = stage.run(ctx, values)
            self._settle()  # entries so far are durable before anything else is written
            rec.outputs = self._store_outputs(stage, outputs, values, inputs, input_keys)
        except Error as exc:
            self._fail(stage, rec, exc, t0, index, total)
            raise
        materials = provenance.stage_materials(inputs, input_keys, ctx.materials)
        rec.statement = self._attest_stage(stage, rec, materials)
        if key is not None:
            cache.insert(self.ws.engine, key, stage.name, rec.outputs, rec.statement, self.run_id)
        rec.status, rec.seconds = "done", time.perf_counter() - t0
        self._audit(
            "stage.finish",
            f"stage:{stage.name}",
            "ok",
            {"outputs": rec.outputs, "statement": rec.statement, "seconds": round(rec.seconds, 3)},
        )
        self.progress(stage.name, "done", index, total)
        return rec

    # -- registration -----------------------------------------------------------------

    def _model_ref(self, released: Mapping[str, str]) -> tuple[str, int, bool]:
        """(name, version, new?) for the model just trained: same bytes → same version.

        Numbered from the signed, audited history of the name (a damaged one is refused);
        the release statement before it is kept for :meth:`_register` to chain onto."""
        name = self.p.config.release.name
        digest = self.produced[released["model"]][0]
        version, new, self.previous_release = self.ws.models.next_release(name, digest)
        return name, version, new

    def _register(
        self,
        released: Mapping[str, str],
        model: tuple[str, int, bool],
        metrics: Mapping[str, Any],
    ) -> str:
        """Sign the release statement, the source of truth for the model's version and
        contract; a new version's row and its audit entry commit in one transaction."""
        self._settle()
        name, version, new = model
        digest = self.produced[released["model"]][0]
        train_table = self.produced[released["train_table"]][0]
        ref = f"{name}:{version}"
        chain = {r.name: r.statement for r in self.records if r.statement}
        card = self.records[-1].outputs  # the releasing stage's own outputs
        statement = self.ws.attest(
            provenance.release_subjects(ref, digest, self.config_ref, train_table, card),
            RELEASE_PREDICATE,
            provenance.release_predicate(
                ref=ref,
                name=name,
                version=version,
                previous=self.previous_release,
                run_id=self.run_id,
                pipeline=self.p.config.name,
                config_digest=self.p.config_digest,
                stages=chain,
                metrics=metrics,
                evaluation=self.evaluation,
            ),
            actor=self.actor,
        )
        if new:
            record = {  # shown by `bastion models list`; the contract is read from the release
                "metrics": dict(metrics.get("metrics", {})),
                "gates": metrics.get("gates", []),
                "card": card,
                "estimator": self.p.config.model.estimator,
                "stages": chain,
                "config": self.config_ref,
                "train_table": train_table,
            }
            self._insert_model(ref, name, version, digest, statement, record)
        return ref

    def _insert_model(
        self,
        ref: str,
        name: str,
        version: int,
        digest: str,
        statement: str,
        record: Mapping[str, Any],
    ) -> None:
        """The model's sealed row and its ``model.register`` entry, in one transaction."""
        with self.ws.engine.begin() as conn:
            row = {
                "name": name,
                "version": version,
                "digest": digest,
                "statement_id": statement,
                "run_id": self.run_id,
                "status": "registered",
                "created": now(),
                "record": json.dumps(record, default=str),
            }
            conn.execute(sa.insert(models).values(**self.ws.rows.sealed("models", row)))
            self.ws.audit.record_in(
                conn,
                self.actor,
                "model.register",
                f"model:{ref}",
                "ok",
                {"run": self.run_id, "digest": digest, "statement": statement},
            )

    # -- the whole run ----------------------------------------------------------------

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
        self._audit(
            "run.start", f"pipeline:{cfg.name}", "started", {"config_digest": self.p.config_digest}
        )
        self._settle()
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
                self._audit("unsafe.setting", f"stage:{stage.name}", "ok", {"setting": setting})

    def _gates(self, stage: Stage, output: str) -> None:
        """Keep the gating stage's verdict; a failed gate is audited."""
        verdict: Mapping[str, Any] = self._value(f"{stage.name}.{output}")
        self.verdicts[stage.name] = verdict
        self.gates = combine(self.verdicts)["gates"]
        if not verdict.get("passed"):
            self._audit(
                "gates.fail",
                f"pipeline:{self.p.config.name}",
                "failed",
                {
                    "stage": stage.name,
                    "failed": [g for g in verdict.get("gates", []) if not g.get("passed")],
                },
            )

    def _verdict(self) -> dict[str, Any]:
        """Every gating stage's verdict in one (``passed``, ``gates``, ``metrics``: each
        stage's numbers), the override applied when gates failed and one was given."""
        verdict = combine(self.verdicts)
        metrics: dict[str, Any] = {}
        for out in self.verdicts.values():
            metrics.update(out.get("metrics") or out.get("values") or {})
        verdict["metrics"] = metrics
        if not verdict["passed"] and self.override_gates is not None and self.override is None:
            self.override = {"by": self.actor, "reason": self.override_gates}
            self._audit(
                "gates.override",
                f"pipeline:{self.p.config.name}",
                "ok",
                {
                    "failed": failed_gates(verdict["gates"]),
                    "reason": self.override_gates,
                },
            )
        verdict["override"] = self.override
        return verdict

    def _sign_evaluation(
        self, released: Mapping[str, str], verdict: Mapping[str, Any], ref: str | None
    ) -> None:
        """The signed evaluation of the model about to be released (or held back)."""
        self._settle()
        results = {
            name: self.produced[f"{name}.{stage.gates_output}"][0]
            for stage in self.stages
            if (name := stage.name) in self.verdicts and stage.gates_output is not None
        }
        self.evaluation = sign_evaluation(
            self.ws,
            self.actor,
            digest=self.produced[released["model"]][0],
            ref=ref,
            pipeline=self.p.config.name,
            results=results,
            verdict=verdict,
            run_id=self.run_id,
            override=self.override,
        )

    def _run_stages(self, stages: list[Stage]) -> tuple[Mapping[str, Any], str | None]:
        """Run the stages in order; (the gates' verdict, the released model's ref).

        Before the releasing stage, every gating stage's verdict is combined and signed as
        the model's evaluation; the release runs only when it passed or was overridden."""
        verdict: dict[str, Any] = {"passed": True, "gates": [], "metrics": {}}
        model_ref = None
        for i, stage in enumerate(stages):
            released = stage.releases
            if released is not None:
                verdict = self._verdict()
                if not verdict["passed"] and self.override is None:
                    self._sign_evaluation(released, verdict, None)
                    self.records.append(StageRecord(stage.name, status="skipped"))
                    continue
                model = self._model_ref(released)
                self.summary["model_ref"] = f"{model[0]}:{model[1]}"
                self._sign_evaluation(released, verdict, self.summary["model_ref"])
            self.records.append(self._run_stage(stage, i, len(stages)))
            if stage.gates_output is not None:
                self._gates(stage, stage.gates_output)
            if released is not None:
                model_ref = self._register(released, model, verdict)
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
        report = self._report(record, first, status, model_ref, self.gates)
        self._finish(record, status, model_ref, self.gates, report)
        return RunResult(self.run_id, status, model_ref, self.gates, report, self.records, record)

    def _report(
        self,
        record: dict[str, Any],
        metrics: Mapping[str, Any],
        status: str,
        model_ref: str | None,
        gates: list[dict[str, Any]],
    ) -> Path | None:
        from bastion.compliance.report import render_run_report

        validation: dict[str, Any] = {}  # per source: its base report + the other sections
        audits: dict[str, Any] = {}  # audit name → its result
        for stage in self.stages:  # in run order: the base report of a source comes first
            if (
                stage.audit_result is not None
                and f"{stage.name}.{stage.audit_result[1]}" in self.produced
            ):
                audits[stage.audit_result[0]] = self._value(f"{stage.name}.{stage.audit_result[1]}")
            key = f"{stage.name}.report"
            if stage.data_report is None or key not in self.produced:
                continue
            source, section = stage.data_report
            if section:
                validation.setdefault(source, {})[section] = self._value(key)
            else:
                validation[source] = dict(self._value(key))
        run = dict(
            record,
            evaluation=self.evaluation,
            override=self.override,
            status=status,
            model=model_ref,
            gates=gates,
            stages=[r.to_json() for r in self.records],
        )
        out_dir = self.ws.home / "reports" / self.run_id
        private_dir(out_dir)
        for stage in self.stages:  # e.g. the model card beside the report
            for output, filename in stage.report_files.items():
                if f"{stage.name}.{output}" in self.produced:
                    atomic_write(out_dir / filename, self._value(f"{stage.name}.{output}").encode())
        return render_run_report(
            run,
            metrics,
            validation,
            out_dir,
            plot_cache=self.ws.home / "reports" / ".plots",
            audits=audits,
        )

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
        self._audit(
            "run.finish",
            f"pipeline:{self.p.config.name}",
            {"passed": "ok", "failed": "failed"}.get(status, "error"),
            {"status": status, "model": model_ref},
        )
        self._settle()
